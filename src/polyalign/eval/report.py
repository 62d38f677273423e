"""report.md and a self-contained report.html (inline CSS, figures embedded as data: URIs) for one run."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .registry import FAMILIES, all_metrics, load_all
from . import headline_report
from .tables import fmt, html_table, md_table

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafafa}
td.ceil{color:#1f5fa0}.meta{color:#555;font-size:13px}.note{color:#666;font-size:12px}
img{max-width:100%;border:1px solid #eee;margin:6px 0}figure{margin:0 0 18px}
figcaption{font-size:12px;color:#555}
"""


def group_keys(buckets: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(group, key) pairs for the per-language and per-track columns: by_language/en, …, by_track/single, …"""
    return ([("by_language", k) for k in sorted({b["language"] for b in buckets.values()})]
            + [("by_track", k) for k in sorted({b["track"] for b in buckets.values()})])


def headline_rows(metrics: Mapping[str, Any], groups: Sequence[tuple[str, str]],
                  names: Sequence[str] | None = None) -> list[list[str]]:
    """Rows: metric, direction, aggregate, model headline, ceiling headline, then the model headline per
    language and per track (`groups`)."""
    registry = load_all()
    rows = []
    for name in names or all_metrics():
        if name not in metrics:
            continue
        block = metrics[name]
        model, ceiling = block["model"], block.get("ceiling")
        row = [name, registry[name].arrow, block["headline_aggregate"], fmt(model.get("headline")),
               fmt(ceiling.get("headline")) if ceiling else "–"]
        row += [fmt(model.get(group, {}).get(key, {}).get("headline")) for group, key in groups]
        rows.append(row)
    return rows


def bucket_rows(metrics: Mapping[str, Any], family: str, buckets: Sequence[str],
                n: Mapping[str, int]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-bucket table of one family: 'model (ceiling)' cells."""
    names = [k for k, m in metrics.items() if m["family"] == family and m["scope"] == "bucket"]
    registry = load_all()
    header = ["bucket", "n"] + [f"{k} {registry[k].arrow}" for k in names]
    rows = []
    for b in buckets:
        row = [b, str(n.get(b, 0))]
        for k in names:
            value = metrics[k]["model"]["per_bucket"].get(b)
            ceil = (metrics[k].get("ceiling") or {}).get("per_bucket", {}).get(b)
            row.append(fmt(value) + (f" ({fmt(ceil)})" if ceil is not None else ""))
        rows.append(row)
    return header, rows


def _headline_header(groups: Sequence[tuple[str, str]]) -> list[str]:
    return ["metric", "dir", "aggregate", "model", "human ceiling"] + [key for _, key in groups]


def _meta_lines(result: Mapping[str, Any]) -> list[str]:
    meta = result["metadata"]
    gaps = meta.get("gaps", {})
    return [f"suite `{meta['suite_version']}` ({meta['suite_dir']}, {meta.get('split', 'test')} split); "
            f"predictions `{meta['predictions']}` "
            f"(sha256 {meta['predictions_sha256'][:12]}…, sample {meta['sample']})",
            f"scored {gaps.get('scored')} of {meta['n_items']} items in {len(result['buckets'])} buckets; "
            f"missing {gaps.get('missing', 0)}, empty predictions {gaps.get('empty_predictions', 0)}, rows of "
            f"other samples {gaps.get('rows_of_other_samples', 0)}",
            f"featurizer `{meta['featurizer']['name']}`; seed {meta['seed']}; "
            f"wall time {meta.get('wall_time_s', 0):.1f} s"]


CEILING_NOTE = ("The human ceiling is the same metric computed on the suite items' own gold responses (held-out "
                "{split} humans, same items) against the same TRAIN reference pool: the references split in two. "
                "Naturalness and faithfulness scores should be read against it.")


def ceiling_note(result: Mapping[str, Any]) -> str:
    """CEILING_NOTE with the split the suite items come from (TEST, or VAL for a validation suite)."""
    return CEILING_NOTE.format(split=str(result["metadata"].get("split", "test")).upper())


def headline_blocks(result: Mapping[str, Any]) -> list[headline_report.Block]:
    """The context view (headline), the oracle-length view and the decoding reach of one run."""
    runs = {result["metadata"].get("name") or "model": result}
    return (headline_report.view_blocks(runs, "context") + headline_report.view_blocks(runs, "oracle",
                                                                                      slices=["overall"])
            + headline_report.reach_blocks(runs))


def render_markdown(result: Mapping[str, Any]) -> str:
    """report.md of one evaluation run."""
    metrics, buckets = result["metrics"], sorted(result["buckets"])
    n = {b: info["n_scored"] for b, info in result["buckets"].items()}
    lines = [f"# PolyAlign evaluation: {result['metadata'].get('name') or 'run'}", ""]
    lines += [f"- {line}" for line in _meta_lines(result)] + [""]
    lines += headline_report.render_md(headline_blocks(result))
    lines += ["## Every metric, oracle-length buckets", "", ceiling_note(result), ""]
    groups = group_keys(result["buckets"])
    lines += [md_table(_headline_header(groups), headline_rows(metrics, groups)), ""]
    lines += ["Directions: ↑ higher is better, ↓ lower is better, →0.5 closest to 0.5, ≈H closest to the human "
              "value. Definitions: docs/metrics.md.", ""]
    for family in FAMILIES:
        header, rows = bucket_rows(metrics, family, buckets, n)
        if len(header) > 2:
            lines += [f"## Per bucket: {family} (model (human ceiling))", "", md_table(header, rows), ""]
    return "\n".join(lines)


def render_html(result: Mapping[str, Any], figures: Mapping[str, str | None], *, title: str | None = None,
                samples: str = "") -> str:
    """Self-contained report.html: inline CSS, every figure a base64 data: URI, the sample browser's section
    (`samples`, from browser.render_section) last; no external resource."""
    metrics, buckets = result["metrics"], sorted(result["buckets"])
    n = {b: info["n_scored"] for b, info in result["buckets"].items()}
    title = title or f"PolyAlign evaluation: {result['metadata'].get('name') or 'run'}"
    groups = group_keys(result["buckets"])
    body = [f"<h1>{html.escape(title)}</h1>", '<div class="meta">']
    body += [f"<div>{html.escape(line)}</div>" for line in _meta_lines(result)]
    body += ["</div>", '<section id="headline">', *headline_report.render_html(headline_blocks(result)), "</section>",
             '<section id="all-metrics"><h2>Every metric, oracle-length buckets</h2>',
             f'<p class="note">{html.escape(ceiling_note(result))}</p>',
             html_table(_headline_header(groups), headline_rows(metrics, groups), left=3,
                        classes=["", "", "", "", "ceil"]), "</section>"]
    body += _figure_sections(figures)
    body.append('<section id="buckets"><h2>Per bucket (model (human ceiling))</h2>')
    for family in FAMILIES:
        header, rows = bucket_rows(metrics, family, buckets, n)
        if len(header) > 2:
            body += [f"<h3>{html.escape(family)}</h3>", html_table(header, rows)]
    body += ["</section>", samples]
    return page(title, "\n".join(body))


FIGURE_SECTIONS = (
    ("heatmaps", "Per-bucket heatmaps by metric family", "heatmap_"),
    ("bars", "Headline metrics by method (dashed: human ceiling)", "bars"),
    ("lengths", "Length distributions, human vs model", "lengths"),
    ("frontier", "Utility–naturalness frontier", "frontier"),
    ("projection", "2-D projection of human and model responses", "projection"),
)


def _figure_sections(figures: Mapping[str, str | None]) -> list[str]:
    out = []
    for section_id, heading, prefix in FIGURE_SECTIONS:
        keys = [k for k in figures if k.startswith(prefix) and figures[k]]
        if not keys:
            continue
        out.append(f'<section id="{section_id}"><h2>{html.escape(heading)}</h2>')
        for key in keys:
            out.append(f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{figures[key]}">'
                       f"<figcaption>{html.escape(key)}</figcaption></figure>")
        out.append("</section>")
    return out


def page(title: str, body: str) -> str:
    """A complete HTML page with inline CSS."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
