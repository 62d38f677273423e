"""The comparison of the paper, reproduced here: Base, SFT, Bucket-SFT, DPO and HDPO over several training seeds.

Runs the pipeline (configs/pipeline/demo.yaml by default) once per seed. The data, the base model and the
evaluation suite do not depend on the training seed, so they are built once and shared: every seed trains,
samples, fits the critic, builds pairs, trains DPO/HDPO, generates and scores anew. Prints (and writes as
Markdown) mean ± sd over seeds per method, overall, per language (EN, ZH) and per track (single, multi), with the
human-vs-human ceiling.

    python benchmarks/experiment.py --seeds 0,1,2 --root runs/experiment --out runs/experiment/results.md
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

from polyalign.cli.pipeline import _log, quiet_libraries  # noqa: E402
from polyalign.io import read_json, write_text  # noqa: E402
from polyalign.pipeline.run import run_pipeline  # noqa: E402

SHARED_STAGES = ("data", "base", "suite")
# (metric key in comparison.json, column label, better)
COLUMNS = [
    ("c2st_acc", "C2ST acc", "→0.5"), ("feature_gap", "feature gap", "↓"), ("coverage_joint", "joint cov.", "→ceil"),
    ("c_mauve", "C-MAUVE", "↑"), ("length_w1_norm", "length W1", "↓"), ("f1", "F1", "↑"), ("chrf", "chrF", "↑"),
]
SLICES = [("overall", "all"), ("by_language/en", "EN"), ("by_language/zh", "ZH"), ("by_track/single", "single"),
          ("by_track/multi", "multi")]


def share_stages(first: Path, target: Path) -> None:
    """Point the seed-independent stages of `target` at those of the first seed (symlinks)."""
    target.mkdir(parents=True, exist_ok=True)
    for stage in SHARED_STAGES:
        link = target / stage
        if not link.exists() and (first / stage).exists():
            os.symlink((first / stage).resolve(), link)


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def results_table(comparisons: list[dict], seeds: list[int], wall: dict[int, float]) -> str:
    """Markdown: one table per slice, methods × metrics, mean ± sd over seeds, with the human ceiling row."""
    methods = comparisons[0]["methods"]
    lines = [f"Seeds: {', '.join(map(str, seeds))}. Wall time per seed: "
             + ", ".join(f"seed {s} {wall[s] / 60:.1f} min" for s in seeds) + ".", ""]
    for key, label in SLICES:
        if key not in comparisons[0]["tables"]:
            continue
        lines.append(f"**{label}**")
        lines.append("")
        lines.append("| method | " + " | ".join(f"{c[1]} {c[2]}" for c in COLUMNS) + " |")
        lines.append("|---|" + "---|" * len(COLUMNS))
        for method in [*methods, "human ceiling"]:
            cells = []
            for metric, _, _ in COLUMNS:
                cells.append(mean_sd([c["tables"][key].get(method, {}).get(metric) for c in comparisons]))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "pipeline" / "demo.yaml"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", default="runs/experiment")
    parser.add_argument("--out", default=None, help="Markdown results file (default ROOT/results.md)")
    args = parser.parse_args()
    quiet_libraries()
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.root)
    wall: dict[int, float] = {}
    comparisons = []
    started = time.time()
    for i, seed in enumerate(seeds):
        workdir = root / f"seed{seed}"
        if i > 0:
            share_stages(root / f"seed{seeds[0]}", workdir)
        t0 = time.time()
        print(f"== seed {seed}: {workdir}", flush=True)
        run_pipeline(args.config, overrides={"workdir": str(workdir), "seed": seed}, log=_log)
        wall[seed] = time.time() - t0
        comparisons.append(read_json(workdir / "compare" / "comparison.json"))
    table = results_table(comparisons, seeds, wall)
    command = " ".join(["python", "benchmarks/experiment.py", *sys.argv[1:]])
    text = (f"# PolyAlign experiment\n\nCommand: `{command}`\n\nConfig: `{args.config}`. Total wall time "
            f"{(time.time() - started) / 60:.1f} min on this machine.\n\n{table}\n")
    out = Path(args.out) if args.out else root / "results.md"
    write_text(out, text)
    print(text)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
