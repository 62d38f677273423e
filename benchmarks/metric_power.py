"""Metric power: can each headline metric tell held-out humans from known-bad "methods" made of human text, at
the suite's own sample sizes?

    python benchmarks/metric_power.py                       # builds runs/metric_power/{data,suite} if missing
    python benchmarks/metric_power.py --split test          # the same ladder on a test-split suite

The suite is drawn like the demo's (configs/pipeline/demo.yaml: cap_per_bucket, ref_pool), from the VAL split by
default — the metric settings (e.g. the shared quantization's number of cells) are chosen there, never on test.

The ladder (every "method" answers every suite item):
* held_out        — the item's own gold response (the ceiling; ranked first by a working metric);
* first_half      — the gold cut to its first half (characters; at a word boundary for English);
* first_sentence  — the gold's first sentence;
* other_group     — a human response from another context group of the same language (val split);
* other_language  — a human response of the other language (same track and family where there is one);
* char_shuffled   — the gold with its characters shuffled;
* template        — one fixed answer per language for every prompt;
* prompt_blind    — a random human response of the item's own bucket from the reference pool (drawn without
                    replacement): human text with the right marginal distribution, blind to the prompt.

For every headline metric (context view, all groups) it prints value [95% CI] per method, and whether the method
is separated from held_out: the paired-bootstrap test of badness(method) − badness(held_out) > 0 after Holm's
correction over the ladder. Per group it counts the groups where the two values differ by more than 1.96 times
the combined standard error. The old per-bucket C-MAUVE (k = n/10 cells per bucket, oracle-length buckets) is
shown next to it as "before".
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from polyalign.config import load_yaml
from polyalign.data.build import build_dataset, load_records
from polyalign.data.sources import load_data_config
from polyalign.eval import conditional
from polyalign.eval.contrasts import contrast_tests
from polyalign.eval.headline import HEADLINE_METRICS
from polyalign.eval.registry import load_all
from polyalign.eval.runner import evaluate
from polyalign.eval.suite import build_suite, load_suite
from polyalign.eval.tables import fmt, md_table

ROOT = Path(__file__).resolve().parent.parent
LADDER = ("held_out", "first_half", "first_sentence", "other_group", "other_language", "char_shuffled", "template",
          "prompt_blind")
TEMPLATE = {"en": "Thank you for your question. I am happy to help you with that.",
            "zh": "谢谢你的问题，我很乐意帮助你。"}
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def first_half(text: str, language: str) -> str:
    """The first half of a text (at a word boundary for English)."""
    cut = text[: max(1, len(text) // 2)]
    if language == "en" and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.strip() or text[:1]


def first_sentence(text: str) -> str:
    """The text up to its first sentence end."""
    parts = [p for p in SENTENCE_END.split(text.strip()) if p.strip()]
    return parts[0].strip() if parts else text


def char_shuffled(text: str, rng: random.Random) -> str:
    """The text's characters in a random order."""
    chars = list(text)
    rng.shuffle(chars)
    return "".join(chars)


def ladder_texts(suite, val, seed: int) -> dict[str, dict[str, str]]:
    """method → {item id: response} for every rung of the ladder."""
    rng = random.Random(seed)
    view = suite.view("context")
    group_of = {suite.items[i].id: g for g in view.groups for i in view.items[g]}
    val_by_group, val_by_language = defaultdict(list), defaultdict(list)
    for r in val:
        key = f"{r.language}|{r.track}|{r.family}"
        val_by_group[key].append(r)
        val_by_language[r.language].append(r)
    pool_by_bucket = defaultdict(list)
    for r in suite.pool:
        pool_by_bucket[r.bucket_id].append(r.response)
    queues = {b: rng.sample(v, len(v)) for b, v in pool_by_bucket.items()}
    out = {m: {} for m in LADDER}
    for r in suite.items:
        group = group_of[r.id]
        out["held_out"][r.id] = r.response
        out["first_half"][r.id] = first_half(r.response, r.language)
        out["first_sentence"][r.id] = first_sentence(r.response)
        others = [x for x in val_by_language[r.language] if f"{x.language}|{x.track}|{x.family}" != group]
        out["other_group"][r.id] = rng.choice(others).response
        other_lang = "zh" if r.language == "en" else "en"
        same_shape = val_by_group.get(f"{other_lang}|{r.track}|{r.family}") or val_by_language[other_lang]
        out["other_language"][r.id] = rng.choice(same_shape).response
        out["char_shuffled"][r.id] = char_shuffled(r.response, rng)
        out["template"][r.id] = TEMPLATE[r.language]
        queue = queues[r.bucket_id]
        if not queue:
            queue = queues[r.bucket_id] = rng.sample(pool_by_bucket[r.bucket_id], len(pool_by_bucket[r.bucket_id]))
        out["prompt_blind"][r.id] = queue.pop()
    return out


def ensure_suite(work: Path, split: str, cap: int, ref_pool: int) -> Path:
    """Build the bundled data and a suite from `split` under `work` unless they exist."""
    data_dir, suite_dir = work / "data", work / f"suite_{split}_cap{cap}_pool{ref_pool}"
    if not (data_dir / "manifest.json").exists():
        build_dataset(load_data_config(ROOT / "configs" / "data" / "bundled.yaml"), data_dir, progress=False)
    if not (suite_dir / "manifest.json").exists():
        build_suite(data_dir, suite_dir, cap_per_bucket=cap, ref_pool=ref_pool, split=split)
    return suite_dir


def group_separation(bad: dict, held: dict, metric: str) -> tuple[int, int]:
    """(groups where the two differ beyond 1.96 combined SE, groups where both have a value)."""
    hits = total = 0
    for group, info in held["groups"].items():
        other = bad["groups"].get(group, {})
        a, b = info["values"].get(metric), other.get("values", {}).get(metric)
        sa, sb = info["se"].get(metric), other.get("se", {}).get(metric)
        if a is None or b is None or sa is None or sb is None:
            continue
        total += 1
        hits += abs(a - b) > 1.96 * np.hypot(sa, sb)
    return hits, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "metric_power")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=None,
                        help=f"cells of the shared quantization (default {conditional.SHARED_CLUSTERS})")
    args = parser.parse_args(argv)
    if args.clusters:
        conditional.SHARED_CLUSTERS = args.clusters  # part of the human-side cache key
    started = time.time()
    demo, _ = load_yaml(ROOT / "configs" / "pipeline" / "demo.yaml")
    cap, ref_pool = demo["suite"]["cap_per_bucket"], demo["suite"]["ref_pool"]
    suite_dir = ensure_suite(args.work, args.split, cap, ref_pool)
    suite = load_suite(suite_dir)
    val = load_records(args.work / "data", "val" if args.split == "test" else "test")
    texts = ladder_texts(suite, val, args.seed)
    runs = {}
    for method in LADDER:
        out = args.work / f"{suite_dir.name}_k{conditional.SHARED_CLUSTERS}_{method}"
        pred = out / "predictions.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        with open(pred, "w", encoding="utf-8") as fh:
            for r in suite.items:
                fh.write(json.dumps({"id": r.id, "sample": 0, "prediction": texts[method][r.id]},
                                    ensure_ascii=False) + "\n")
        runs[method] = evaluate(pred, suite_dir, out / "eval", name=method, figures=False, seed=args.seed)
    registry = load_all()
    tests = contrast_tests(runs, [(m, "held_out") for m in LADDER[1:]], "context")["overall"]
    verdict = {(t["a"], t["metric"]): t for t in tests}
    sizes = [g["n"] for g in runs["held_out"]["headline"]["context"]["ceiling"]["groups"].values()]
    print(f"shared quantization: {conditional.SHARED_CLUSTERS} cells; bootstrap draws per group: "
          f"{runs['held_out']['headline']['context']['model']['draws']}")
    print(f"suite {suite.version} from the {args.split} split: {len(suite.items)} items in "
          f"{len(suite.view('context').groups)} context groups (items per group: min {min(sizes)}, median "
          f"{int(np.median(sizes))}, max {max(sizes)}); pool {len(suite.pool)}")
    header = ["metric", *LADDER]
    rows, summary = [], {}
    for metric in HEADLINE_METRICS:
        row = [f"{metric} {registry[metric].arrow}"]
        summary[metric] = {}
        held = runs["held_out"]["headline"]["context"]["model"]["summary"][metric]["overall"]
        for method in LADDER:
            cell = runs[method]["headline"]["context"]["model"]["summary"][metric]["overall"]
            text = fmt(cell["value"]) + (f" [{fmt(cell['ci'][0])}, {fmt(cell['ci'][1])}]" if cell["ci"] else "")
            if method != "held_out":
                t = verdict.get((method, metric))
                separated = bool(t and t["significant"] and t["diff"] > 0)
                hits, total = group_separation(runs[method]["headline"]["context"]["model"],
                                               runs["held_out"]["headline"]["context"]["model"], metric)
                text += (" ✓" if separated else " ✗") + f" {hits}/{total}"
                summary[metric][method] = {"value": cell["value"], "ci": cell["ci"], "separated": separated,
                                           "groups_separated": int(hits), "groups": int(total),
                                           "diff": t["diff"] if t else None, "p_holm": t["p_holm"] if t else None}
            else:
                summary[metric][method] = {"value": held["value"], "ci": held["ci"]}
            row.append(text)
        rows.append(row)
    old = ["c_mauve (before: k = n/10 per bucket, oracle buckets) ↑"]
    for method in LADDER:
        block = runs[method]["metrics"].get("c_mauve", {}).get("model", {})
        old.append(fmt(block.get("headline")))
    rows.append(old)
    print(md_table(header, rows))
    print("cells: value [95% CI]; ✓ = separated from held_out (paired bootstrap, Holm over the ladder), ✗ = not; "
          "k/K = groups separated beyond 1.96 combined SE, of the groups with a value")
    first = {m: [k for k in LADDER[1:] if (verdict.get((k, m)) or {}).get("diff") is not None
                 and verdict[(k, m)]["diff"] <= 0] for m in HEADLINE_METRICS}
    print("held_out ranked first (no bad method at or above it): " + ", ".join(
        f"{m} {'yes' if not v else 'NO (' + ', '.join(v) + ')'}" for m, v in first.items()))
    counts = {m: sum(v.get("separated", False) for v in summary[m].values()) for m in HEADLINE_METRICS}
    print("bad methods separated per metric (of 7): " + ", ".join(f"{m} {c}" for m, c in counts.items()))
    caught = {m: [k for k in HEADLINE_METRICS if summary[k][m].get("separated")] for m in LADDER[1:]}
    print("metrics separating each bad method: " + "; ".join(f"{m}: {len(v)}" for m, v in caught.items()))
    (args.work / f"power_{args.split}_k{conditional.SHARED_CLUSTERS}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(f"wall time {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
