"""`compare_runs`: several evaluated methods (base, SFT, Bucket-SFT, DPO, HDPO, …) in one table and one report."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PolyAlignError
from ..io import make_manifest, read_json, write_json, write_text
from . import browser, headline_report, plots, report, rounds_report
from .contrasts import contrast_tests, headline_tables, parse_contrasts
from .tables import fmt, html_table, md_table
from .headline import HEADLINE_METRICS
from .registry import all_metrics, load_all
from .runner import frontier_buckets, frontier_points
from .registry import closeness
from .suite import load_suite


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json of an evaluated run (InputError naming the folder when it is not one)."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise InputError("not an evaluation run (no metrics.json; run `polyalign eval` first)", file=run_dir)
    result = read_json(path)
    if not isinstance(result, dict) or "metrics" not in result or "metadata" not in result:
        raise InputError("not a PolyAlign metrics.json (no 'metrics'/'metadata')", file=path)
    return result


def _check_same_frame(runs: Sequence[dict[str, Any]], dirs: Sequence[Path]) -> None:
    first = runs[0]["metadata"]
    for run, run_dir in zip(runs[1:], dirs[1:]):
        meta = run["metadata"]
        for key in ("suite_version", "featurizer", "seed"):
            if meta.get(key) != first.get(key):
                raise InputError(f"{key} {meta.get(key)!r} differs from {first.get(key)!r} of {dirs[0]}: methods "
                                 "can only be compared when scored on the same suite with the same featurizer and "
                                 "seed", file=run_dir / "metrics.json", field=key)


def _cell(block: dict[str, Any] | None, group: str | None = None, key: str | None = None) -> float | None:
    if not block:
        return None
    if group is not None:
        block = block.get(group, {}).get(key)
        if not block:
            return None
    return block.get("headline")


def comparison_table(runs: dict[str, dict[str, Any]], metrics: Sequence[str] | None = None,
                     group: str | None = None, key: str | None = None) -> dict[str, dict[str, float | None]]:
    """{method or 'human ceiling': {metric: headline}} overall, or for one language / track (group, key)."""
    first = next(iter(runs.values()))["metrics"]
    metrics = metrics or all_metrics()
    table: dict[str, dict[str, float | None]] = {}
    for name, run in runs.items():
        table[name] = {m: _cell(run["metrics"].get(m, {}).get("model"), group, key) for m in metrics}
    table["human ceiling"] = {m: _cell((first.get(m) or {}).get("ceiling"), group, key) for m in metrics}
    return table


def _best(spec: Any, values: dict[str, float | None], human: float | None) -> str | None:
    scored = {k: closeness(spec, v, human) for k, v in values.items() if v is not None}
    scored = {k: v for k, v in scored.items() if v is not None}
    return min(scored, key=scored.get) if scored else None


def table_rows(table: dict[str, dict[str, float | None]], metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    registry = load_all()
    names = [m for m in metrics if any(row.get(m) is not None for row in table.values())]
    methods = [k for k in table if k != "human ceiling"]
    best = {m: _best(registry[m], {k: table[k][m] for k in methods}, table["human ceiling"].get(m)) for m in names}
    header = ["method"] + [f"{m} {registry[m].arrow}" for m in names]
    rows = []
    for k in [*methods, "human ceiling"]:
        rows.append([k] + [fmt(table[k].get(m)) + ("*" if best.get(m) == k else "") for m in names])
    return header, rows


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, names: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, contrasts: Sequence[str] | None = None,
                 rounds: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Write comparison.json, report.md and report.html for several evaluated runs of the same suite; the
    headline (context view, CIs, ceilings) comes first, with paired tests of `contrasts` ('A:B' method names;
    default: each method against the one before it). `rounds` ({method name: rounds_<method> folder}) adds the
    per-round tables and plots of multi-round methods."""
    started = time.time()
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise InputError("give at least one evaluation run folder")
    loaded = [load_run(d) for d in dirs]
    if names is None:
        names = [r["metadata"].get("name") or d.name for r, d in zip(loaded, dirs)]
    names = list(names)
    if len(names) != len(dirs):
        raise InputError(f"{len(names)} names for {len(dirs)} runs", field="names")
    if len(set(names)) != len(names):
        raise InputError(f"method names must be unique, got {names}", field="names")
    _check_same_frame(loaded, dirs)
    for run, run_dir in zip(loaded, dirs):
        if "headline" not in run:
            raise InputError("metrics.json has no headline block (scored by an older PolyAlign): run `polyalign "
                             "eval` again", file=run_dir / "metrics.json", field="headline")
    runs = dict(zip(names, loaded))
    pairs = parse_contrasts(contrasts, names)
    unknown = [n for n in (rounds or {}) if n not in names]
    if unknown:
        raise InputError(f"rounds tables for {unknown}, which are not among the methods {names}", field="rounds")
    round_tables = rounds_report.load_rounds(rounds or {})
    buckets = loaded[0]["buckets"]
    groups = report.group_keys(buckets)
    metrics = metrics or all_metrics()
    tables = {"overall": comparison_table(runs, metrics)}
    for group, key in groups:
        tables[f"{group}/{key}"] = comparison_table(runs, metrics, group, key)
    figures = compare_figures(runs, dirs, metrics)
    samples, samples_info = compare_samples(runs, dirs)
    out_dir = Path(out_dir)
    result = {"methods": names, "runs": [str(d) for d in dirs], "suite_version": loaded[0]["metadata"]["suite_version"],
              "split": loaded[0]["metadata"].get("split", "test"),
              "context_key": loaded[0].get("context_key"),
              "contrasts": [list(p) for p in pairs],
              "headline": {view: {"tables": headline_tables(runs, view), "tests": contrast_tests(runs, pairs, view)}
                           for view in ("context", "oracle")},
              "reach": {n: r.get("reach") for n, r in runs.items()},
              "metrics": list(metrics), "tables": tables,
              "gaps": {n: r["metadata"].get("gaps", {}) for n, r in runs.items()},
              "samples": samples_info, "rounds": {n: str(got["dir"]) for n, got in round_tables.items()}}
    write_json(out_dir / "comparison.json", result)
    blocks = compare_blocks(runs, result["headline"])
    write_text(out_dir / "report.md", render_compare_markdown(result, blocks)
               + "\n".join(rounds_report.render_md(round_tables, out_dir)))
    write_text(out_dir / "report.html", render_compare_html(result, figures, blocks, samples=samples,
                                                            rounds=rounds_report.render_html(round_tables)))
    write_json(out_dir / "manifest.json", make_manifest(stage="compare", config={"names": names},
                                                        inputs={n: str(d) for n, d in zip(names, dirs)},
                                                        started=started))
    return result


def _section_title(key: str) -> str:
    return "Overall" if key == "overall" else key.replace("by_language/", "Language: ").replace("by_track/", "Track: ")


def compare_blocks(runs: dict[str, dict[str, Any]], headline: dict[str, Any]) -> list:
    """The headline sections of a comparison: context view with tests, oracle-length view, decoding reach."""
    return (headline_report.view_blocks(runs, "context", tests=headline["context"]["tests"])
            + headline_report.view_blocks(runs, "oracle", tests=headline["oracle"]["tests"], slices=["overall"])
            + headline_report.reach_blocks(runs))


NOTE = ("Every metric, oracle-length buckets (items grouped by the gold length bin). Headline aggregate per metric (see docs/metrics.md); '*' marks the best method per column (closest to the "
        "ideal, or to the human value for ≈H). The human ceiling row is held-out {split} humans scored against the "
        "same TRAIN pool.")


def suite_line(result: dict[str, Any]) -> str:
    """'Suite <version> (<split> split)': which suite, and which split its items come from."""
    return f"Suite {result['suite_version']} ({result.get('split', 'test')} split)"


def render_compare_markdown(result: dict[str, Any], blocks: Sequence = ()) -> str:
    """report.md of a comparison."""
    lines = ["# PolyAlign comparison", "", f"{suite_line(result)}; methods: "
             + ", ".join(f"{n} ({d})" for n, d in zip(result["methods"], result["runs"])), ""]
    lines += headline_report.render_md(blocks)
    lines += ["## Every metric, oracle-length buckets", "", NOTE.format(split=result.get("split", "test").upper()),
              ""]
    for key, table in result["tables"].items():
        header, rows = table_rows(table, result["metrics"])
        lines += [f"### {_section_title(key)}", "", md_table(header, rows), ""]
    gaps = [f"- {n}: missing {g.get('missing', 0)}, empty {g.get('empty_predictions', 0)}"
            for n, g in result["gaps"].items()]
    return "\n".join(lines + ["## Gaps", "", *gaps, ""])


def render_compare_html(result: dict[str, Any], figures: dict[str, str | None], blocks: Sequence = (),
                        samples: str = "", rounds: Sequence[str] = ()) -> str:
    """Self-contained report.html of a comparison; `rounds` (rounds_report.render_html) after the figures,
    `samples` (browser.render_section) last."""
    body = ["<h1>PolyAlign comparison</h1>",
            f'<div class="meta">{html.escape(suite_line(result))}; methods: '
            + html.escape(", ".join(result["methods"])) + "</div>",
            '<section id="headline">', *headline_report.render_html(blocks), "</section>",
            '<section id="tables"><h2>Every metric, oracle-length buckets</h2>',
            f'<p class="note">{html.escape(NOTE.format(split=result.get("split", "test").upper()))}</p>']
    for key, table in result["tables"].items():
        header, rows = table_rows(table, result["metrics"])
        body += [f"<h3>{html.escape(_section_title(key))}</h3>", html_table(header, rows)]
    body.append("</section>")
    body += report._figure_sections(figures)
    body += rounds
    body.append(samples)
    return report.page("PolyAlign comparison", "\n".join(body))


def compare_samples(runs: dict[str, dict[str, Any]], dirs: Sequence[Path]) -> tuple[str, dict[str, Any]]:
    """The sample browser's section of a comparison and what it holds ({"shown": methods, "missing": {method:
    why}}, or {"unavailable": why}): the suite's items from the suite folder the runs name, each method's answers
    from the predictions file it scored (checked by sha256)."""
    meta = next(iter(runs.values()))["metadata"]
    suite_path = browser.locate(meta["suite_dir"], dirs[0])
    why = None
    if suite_path is None:
        why = f"suite folder {meta['suite_dir']} not found"
    else:
        try:
            suite = load_suite(suite_path)
        except PolyAlignError as exc:
            why = str(exc)
        else:
            if suite.version != meta["suite_version"]:
                why = f"{suite_path} holds suite {suite.version}, the runs were scored on {meta['suite_version']}"
    if why is not None:
        return browser.render_section(None, unavailable=why), {"unavailable": why}
    answers, missing = {}, {}
    for (name, run), run_dir in zip(runs.items(), dirs):
        got, reason = browser.run_answers(run, run_dir, suite)
        if got is None:
            missing[name] = f"answers not shown: {reason}"
        else:
            answers[name] = got
    info = {"shown": list(answers), "missing": missing}
    if not answers:
        return browser.render_section(None, unavailable="; ".join(f"{k}: {v}" for k, v in missing.items())), info
    data = browser.browser_data(suite.items, answers, context_key=suite.context_key, notes=missing)
    return browser.render_section(data), info


def compare_figures(runs: dict[str, dict[str, Any]], dirs: Sequence[Path],
                    metrics: Sequence[str]) -> dict[str, str | None]:
    """Side-by-side figures: metric bars with the ceiling, frontiers, length distributions, projections."""
    overall = comparison_table(runs, metrics)
    ceiling = overall.pop("human ceiling")
    first = next(iter(runs.values()))
    bars = [m for m in HEADLINE_METRICS if m in metrics]  # one bar group per headline metric
    figures: dict[str, str | None] = {"bars_overall": plots.method_bars(overall, ceiling, bars)}
    figures["frontier"] = plots.frontier_plot({n: frontier_points(r["metrics"]) for n, r in runs.items()},
                                              {n: frontier_buckets(r["metrics"]) for n, r in runs.items()},
                                              first["buckets"])
    data = {}
    for name, run_dir in zip(runs, dirs):
        path = run_dir / "plot_data.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as npz:
                data[name] = {k: npz[k] for k in npz.files}
    if data:
        ref = next(iter(data.values()))
        sides = {n: d["model_xy"][np.isfinite(d["model_xy"][:, 0])] for n, d in data.items()}
        langs = {n: d["item_language"][np.isfinite(d["model_xy"][:, 0])] for n, d in data.items()}
        figures["projection"] = plots.projection_plot(ref["pool_xy"], ref["human_xy"], sides, languages=langs,
                                                      pool_languages=ref["pool_language"],
                                                      human_languages=ref["item_language"], per_method=True)
        figures["lengths_by_language"] = plots.length_overlay(
            {lang: ref["pool_lengths"][ref["pool_language"] == lang] for lang in np.unique(ref["pool_language"])},
            {n: {lang: d["model_lengths"][(d["item_language"] == lang) & np.isfinite(d["model_lengths"])]
                 for lang in np.unique(d["item_language"])} for n, d in data.items()})
    return figures
