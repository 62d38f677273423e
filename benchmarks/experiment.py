"""The attributable comparison over several training seeds: every method of a pipeline config (by default
configs/pipeline/ladder.yaml: Base, SFT, Bucket-SFT, DPO and HDPO from both inits, and the ablation ladder
DPO -> + pair weights -> + regularizer -> + anchor = HDPO from Bucket-SFT on one pair set).

Runs the pipeline once per seed (cached and resumable: rerun the same command to finish an interrupted run). The
data, the base model and the evaluation suite do not depend on the training seed, so they are built once and
shared: every seed trains, samples, fits the critic, builds pairs, trains the preference methods, generates and
scores anew. Prints (and writes as Markdown) the context view's headline metrics per method (the config's
`methods:`, in order), overall, per language and per track: mean ± seed sd with a 95% CI that covers both the
items (paired bootstrap draws, the same for every method and seed) and the seeds; the held-out and same-prompt
human ceilings; the config's contrasts as paired tests with Holm's correction; and, for methods trained in
rounds, the per-round table (critic AUCs, distances, lengths) as mean ± seed sd.

    python benchmarks/experiment.py --seeds 0,1,2 --root runs/experiment --out runs/experiment/results.md
    python benchmarks/experiment.py --config configs/pipeline/demo.yaml   # the demo's five methods only
    python benchmarks/experiment.py --config configs/pipeline/choose.yaml --split val \
        --choose hdpo_r1,hdpo_r2,hdpo,hdpo_op            # choose a setting on the validation suite
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polyalign.cli.pipeline import _log  # noqa: E402
from polyalign.config import deep_update, parse_override  # noqa: E402
from polyalign.progress import quiet_libraries  # noqa: E402
from polyalign.errors import ConfigError  # noqa: E402
from polyalign.eval.headline import HEADLINE_METRICS  # noqa: E402
from polyalign.eval.registry import load_all  # noqa: E402
from polyalign.eval.rounds import seed_length_rows, seed_rounds_rows  # noqa: E402
from polyalign.eval.selection import SelectionRule, choose_setting  # noqa: E402
from polyalign.eval.tables import md_table  # noqa: E402
from polyalign.eval.significance import holm, seed_pooled_difference  # noqa: E402
from polyalign.io import read_json, write_text  # noqa: E402
from polyalign.pipeline.run import finished_pipeline, run_pipeline  # noqa: E402
from polyalign.pipeline.stages import rounds_methods  # noqa: E402

SHARED_STAGES = ("data", "base", "suite", "val_suite")
SLICES = [("overall", "all"), ("by_language/en", "EN"), ("by_language/zh", "ZH"), ("by_track/single", "single"),
          ("by_track/multi", "multi")]
TEST_SLICES = ("overall", "by_language/en", "by_language/zh")


def share_stages(first: Path, target: Path) -> None:
    """Point the seed-independent stages of `target` at those of the first seed (symlinks)."""
    target.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        link = target / stage
        if not link.exists() and (first / stage).exists():
            os.symlink((first / stage).resolve(), link)


def _array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def seed_cell(blocks: list[dict], metric: str, slice_name: str) -> dict | None:
    """Mean over seeds of one headline number, its seed sd, and a 95% CI with SE² = SE²_items(seed mean) +
    Var_seeds / S (the draws are the same items for every seed, so they are averaged draw by draw)."""
    values = [b["summary"][metric][slice_name]["value"] for b in blocks]
    if any(v is None for v in values):
        return None
    reps = np.array([_array(b["replicates"][metric][slice_name]) for b in blocks])
    mean_draws = np.nanmean(reps, axis=0)
    se_items = float(np.nanstd(mean_draws, ddof=1))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    se = math.sqrt(se_items ** 2 + sd ** 2 / len(values))
    mean = float(np.mean(values))
    return {"mean": mean, "sd": sd, "ci": [mean - 1.96 * se, mean + 1.96 * se]}


def fmt_cell(cell: dict | None, with_sd: bool = True) -> str:
    if cell is None:
        return "n/a"
    sd = f" ± {cell['sd']:.3f}" if with_sd and cell["sd"] else ""
    return f"{cell['mean']:.3f}{sd} [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}]"


def headline_blocks(evals: dict[str, list[dict]], side: str, view: str = "context") -> dict[str, list[dict]]:
    """method → the per-seed headline blocks of one side ('model', 'ceiling', ...)."""
    return {m: [r["headline"][view][side] for r in runs if side in r["headline"][view]] for m, runs in evals.items()}


def read_stages(wiring) -> list[str]:
    """The stages whose files this script reads: every listed method's evaluation and every rounds table."""
    return ([wiring.eval_stage(f"eval_{m}") for m in wiring.config.methods]
            + [f"rounds_{m}" for m in rounds_methods(wiring.config)])


def recorded_seconds(stage_dirs) -> float:
    """The wall seconds the stage records (stage.json) of these folders say their stages took when built (a
    resumed stage's record holds its last run only, a reused one's its copy: a lower bound)."""
    return sum(read_json(Path(d) / "stage.json").get("wall_time_s", 0.0) for d in stage_dirs)


def results_tables(evals: dict[str, list[dict]], labels: dict[str, str], contrasts: list[tuple[str, str]],
                   seeds: list[int], wall: dict[int, tuple[float, float]]) -> str:
    """Markdown: the context view per slice (methods × headline metrics, mean ± seed sd [95% CI]) with the
    held-out humans, the same-prompt items, and the paired tests of the contrasts, Holm-corrected per slice."""
    registry = load_all()
    lines = [f"Seeds: {', '.join(map(str, seeds))}. Wall time per seed, this run / recorded in the seed's stage "
             "records (each stage's wall time when it was built, summed; a resumed stage counts its last run only and "
             "a stage reused from a twin its copy, so this is a lower bound): "
             + ", ".join(f"seed {s} {wall[s][0] / 60:.1f} / {wall[s][1] / 60:.1f} min" for s in seeds) + ".", "",
             "Context view (groups = language | track | family; length scored inside each group). Cells: mean over "
             "seeds ± seed sd [95% CI, item bootstrap + seed variance]. Held-out humans = the suite items' own "
             "gold responses against the same train pool (the attainable ceiling).", ""]
    model = headline_blocks(evals, "model")
    ceiling = next(iter(headline_blocks(evals, "ceiling").values()))
    header = "| method | " + " | ".join(f"{m} {registry[m].arrow}" for m in HEADLINE_METRICS) + " |"
    present = set(next(iter(next(iter(model.values()))[0]["summary"].values())))  # slices this suite has
    for key, label in SLICES:
        if key not in present:  # e.g. no by_language/zh on an English-only suite
            continue
        lines += [f"**{label}**", "", header, "|---|" + "---|" * len(HEADLINE_METRICS)]
        for method, blocks in model.items():
            lines.append(f"| {labels[method]} | " + " | ".join(fmt_cell(seed_cell(blocks, m, key))
                                                            for m in HEADLINE_METRICS) + " |")
        lines.append("| held-out humans | " + " | ".join(fmt_cell(seed_cell(ceiling, m, key), with_sd=False)
                                                      for m in HEADLINE_METRICS) + " |")
        lines.append("")
    same = next(iter(headline_blocks(evals, "same_prompt").values()), [])
    if same:
        on_items = headline_blocks(evals, "model_same_prompt_items")
        gold = next(iter(headline_blocks(evals, "ceiling_same_prompt_items").values()))
        n = sum(g["n"] for g in same[0]["groups"].values())
        lines += [f"**Items with a same-prompt human reply** ({n} OASST items; the same-prompt row is another "
                  "human answering the same prompt, scored like a method)", "", header,
                  "|---|" + "---|" * len(HEADLINE_METRICS)]
        for method, blocks in on_items.items():
            lines.append(f"| {labels[method]} | " + " | ".join(fmt_cell(seed_cell(blocks, m, "overall"))
                                                            for m in HEADLINE_METRICS) + " |")
        for name, blocks in (("held-out humans (same items)", gold), ("same-prompt humans", same)):
            lines.append(f"| {name} | " + " | ".join(fmt_cell(seed_cell(blocks, m, "overall"), with_sd=False)
                                                     for m in HEADLINE_METRICS) + " |")
        lines.append("")
    lines += ["**Paired tests** (badness(A) − badness(B), negative = A better; seed-mean difference with SE² = "
              "SE²_items + Var_seeds/S; two-sided p; Holm over every row of a slice; seeds = how many seeds "
              "agree in sign)", ""]
    for key in (k for k in TEST_SLICES if k in present):
        rows = []
        for a, b in contrasts:
            for metric in HEADLINE_METRICS:
                ba, bb = model[a], model[b]
                if any(x["summary"][metric][key]["value"] is None for x in ba + bb):
                    continue
                human = seed_cell(ceiling, metric, key)
                test = seed_pooled_difference(
                    registry[metric], [x["summary"][metric][key]["value"] for x in ba],
                    [x["summary"][metric][key]["value"] for x in bb],
                    [x["replicates"][metric][key] for x in ba], [x["replicates"][metric][key] for x in bb],
                    human["mean"] if human else None, ceiling[0]["replicates"][metric].get(key) if human else None)
                rows.append((a, b, metric, test))
        adjusted = holm([t["p"] for *_, t in rows])
        lines += [f"*{dict(SLICES)[key]}*", "", "| A − B | metric | diff [95% CI] | p (Holm) | significant | seeds |",
                  "|---|---|---|---|---|---|"]
        for (a, b, metric, t), p in zip(rows, adjusted):
            if t["diff"] is None:
                continue
            agree = sum(np.sign(d) == np.sign(t["diff"]) for d in t["seed_diffs"])
            ci = f" [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]" if t["ci"] else ""
            sig = "**yes**" if p is not None and p < 0.05 else "no"
            lines.append(f"| {labels[a]} − {labels[b]} | {metric} | {t['diff']:+.3f}{ci} | "
                         f"{'–' if p is None else f'{p:.3g}'} | {sig} | {agree}/{len(t['seed_diffs'])} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "pipeline" / "ladder.yaml"),
                        help="pipeline config; every method in its `methods:` is trained and scored")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", default="runs/experiment")
    parser.add_argument("--out", default=None, help="Markdown results file (default ROOT/results.md, "
                                                     "ROOT/results_val.md with --split val)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the suite's split: val scores every method on the validation suite (its own stages, "
                             "val_*, next to the test ones) to choose settings; test once, at the end")
    parser.add_argument("--choose", default=None,
                        help="comma-separated candidate methods: apply the selection rule (polyalign.eval.selection: "
                             "lowest C2ST badness among those within the utility guards of --reference) and "
                             "append its table")
    parser.add_argument("--reference", default="bucket_sft", help="the reference method of the utility guards")
    parser.add_argument("--read-only", action="store_true",
                        help="build nothing and take no lock: combine seeds whose stages are all up to date (e.g. "
                             "while another process trains other stages in a seed's folder); errors otherwise")
    parser.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, as `polyalign run --set` (e.g. 'methods=[bucket_sft,hdpo]')")
    args = parser.parse_args()
    quiet_libraries(tqdm=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.root)
    wall: dict[int, tuple[float, float]] = {}
    evals: dict[str, list[dict]] = {}
    labels: dict[str, str] = {}
    contrasts: list[tuple[str, str]] = []
    rounds: dict[str, list[dict]] = {}
    started = time.time()
    for i, seed in enumerate(seeds):
        workdir = root / f"seed{seed}"
        if i > 0 and not args.read_only:
            share_stages(root / f"seed{seeds[0]}", workdir)
        t0 = time.time()
        print(f"== seed {seed}: {workdir}", flush=True)
        overrides = deep_update(parse_override(args.set_), {"workdir": str(workdir), "seed": seed,
                                                            "suite": {"split": args.split}})
        if args.read_only:
            try:
                wiring, stage_dirs = finished_pipeline(args.config, overrides, read_stages)
            except ConfigError as e:
                raise SystemExit(f"--read-only: {e}") from None
        else:
            wiring, results = run_pipeline(args.config, overrides=overrides, log=_log)
            stage_dirs = [r.out_dir for r in results]
        config = wiring.config
        labels = {m: config.label(m) for m in config.methods}
        contrasts = config.listed_contrasts()
        if contrasts is None:
            contrasts = [(b, a) for a, b in zip(config.methods, config.methods[1:])]
        wall[seed] = (time.time() - t0, recorded_seconds(stage_dirs))
        for method in config.methods:
            evals.setdefault(method, []).append(read_json(wiring.dir(wiring.eval_stage(f"eval_{method}"))
                                                          / "metrics.json"))
        for method in rounds_methods(config):
            rounds.setdefault(method, []).append(read_json(workdir / f"rounds_{method}" / "rounds.json"))
        # written after every seed, so that an interrupted experiment still leaves the seeds it finished
        text = results_text(evals, labels, contrasts, seeds[: i + 1], wall, args.config, started, rounds,
                            split=args.split)
        if args.choose:
            text += "\n" + selection_text(evals, labels, args.choose.split(","), args.reference)
        out = Path(args.out) if args.out else root / ("results.md" if args.split == "test" else "results_val.md")
        write_text(out, text)
        print(f"written: {out} ({i + 1} of {len(seeds)} seeds)", flush=True)
    print(text)


def selection_text(evals: dict[str, list[dict]], labels: dict[str, str], candidates: list[str],
                   reference: str, rule: SelectionRule = SelectionRule()) -> str:
    """Markdown: the selection rule applied to the seeds' context-view values (a row per candidate, the chosen
    one), and the chosen setting against the runner-up on the criterion (seed-pooled paired test)."""
    model = headline_blocks(evals, "model")
    values = {m: {metric: [b["summary"][metric][rule.slice]["value"] for b in blocks]
                  for metric in (rule.metric, *(g for g, _ in rule.guards))} for m, blocks in model.items()}
    selection = choose_setting(values, candidates, reference, rule)
    guards = ", ".join(f"{g} at most {a:g} worse than {labels[reference]}" for g, a in rule.guards)
    lines = [f"**Selection** (rule fixed before the run: lowest seed-mean {rule.metric} badness, {rule.slice}, "
             f"among the candidates with {guards})", "",
             f"| candidate | {rule.metric} | badness | " + " | ".join(f"{g} − {labels[reference]}"
                                                                   for g, _ in rule.guards) + " | eligible |",
             "|---|---|---|" + "---|" * len(rule.guards) + "---|"]
    for row in selection.rows:
        lines.append(f"| {labels[row['method']]} | {row['value']:.3f} | {row['badness']:.3f} | "
                     + " | ".join(f"{row[f'{g} vs reference']:+.3f}" for g, _ in rule.guards)
                     + f" | {'yes' if row['eligible'] else 'no'} |")
    lines += ["", f"Chosen: **{labels[selection.chosen]}**." if selection.chosen else
              "Chosen: none (no candidate passes the guards).", ""]
    ranked = sorted((r for r in selection.rows if r["eligible"]), key=lambda r: r["badness"])
    if len(ranked) > 1:
        registry = load_all()
        a, b = ranked[0]["method"], ranked[1]["method"]
        key = rule.slice
        t = seed_pooled_difference(registry[rule.metric], values[a][rule.metric], values[b][rule.metric],
                                   [x["replicates"][rule.metric][key] for x in model[a]],
                                   [x["replicates"][rule.metric][key] for x in model[b]])
        ci = f" [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]" if t["ci"] else ""
        lines += [f"Chosen against the runner-up ({labels[b]}) on {rule.metric}: badness difference "
                  f"{t['diff']:+.3f}{ci}, p {t['p']:.3g} (not Holm-corrected; a margin, not a claim).", ""]
    return "\n".join(lines)


def rounds_tables(rounds: dict[str, list[dict]], labels: dict[str, str]) -> str:
    """Markdown: each multi-round method's per-round table (critic AUCs, distances, lengths), mean ± seed sd."""
    lines = []
    for method, tables in rounds.items():
        lines += [f"**Rounds: {labels[method]}** (row k = the policy entering round k, scored by round k's critic; "
                  f"row K + 1 = the last model; mean ± seed sd over {len(tables)} seed(s); per seed: "
                  f"rounds_{method}/rounds.md)", "", md_table(*seed_rounds_rows(tables)), "",
                  "*Output length per context group, model / human (seed means)*", "",
                  md_table(*seed_length_rows(tables)), ""]
    return "\n".join(lines)


def results_text(evals: dict[str, list[dict]], labels: dict[str, str], contrasts: list[tuple[str, str]],
                 seeds: list[int], wall: dict[int, tuple[float, float]], config: str, started: float,
                 rounds: dict[str, list[dict]] | None = None, split: str = "test") -> str:
    """The whole results.md: command, config, load average, the tables of `results_tables` and, for methods
    with rounds, those of `rounds_tables`."""
    command = " ".join(["python", "benchmarks/experiment.py", *sys.argv[1:]])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"# PolyAlign experiment\n\nCommand: `{command}`\n\nConfig: `{config}` (methods: "
            f"{', '.join(labels.values())}). Suite items from the **{split}** split. Wall time so far "
            f"{(time.time() - started) / 60:.1f} min on this "
            f"machine (load average at the end {load}).\n\n{results_tables(evals, labels, contrasts, seeds, wall)}\n"
            + (f"\n{rounds_tables(rounds, labels)}\n" if rounds else ""))


if __name__ == "__main__":
    main()
