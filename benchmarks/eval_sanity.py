"""Sanity check of the metrics on real data: score three pseudo-methods made from human text on a suite and
compare them with the human-vs-human ceiling.

    polyalign data build configs/data/bundled.yaml --out runs/data
    polyalign suite --data runs/data --out runs/suite
    python benchmarks/eval_sanity.py --data runs/data --suite runs/suite --out runs/eval-sanity

Pseudo-methods (no model needed):
* ``other_humans`` — for each item, a different human response of the same bucket from the VAL split (drawn
  without replacement while the bucket lasts): should score close to the ceiling on every naturalness metric;
* ``echo_prompt`` — the user turn repeated back: fluent human text, wrong shape;
* ``char_shuffled`` — the gold response with its characters shuffled: right length, not language.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

from polyalign.data.build import load_records
from polyalign.eval.compare import compare_runs, table_rows
from polyalign.eval.runner import evaluate
from polyalign.eval.suite import load_suite


def other_humans(items, val, seed: int):
    by_bucket = defaultdict(list)
    for r in val:
        by_bucket[r.bucket_id].append(r.response)
    rng = random.Random(seed)
    queues = {b: rng.sample(v, len(v)) for b, v in by_bucket.items()}
    out = {}
    for r in items:
        queue = queues.get(r.bucket_id)
        if not queue:  # bucket exhausted: start a new shuffled round
            queue = queues[r.bucket_id] = rng.sample(by_bucket[r.bucket_id], len(by_bucket[r.bucket_id]))
        out[r.id] = queue.pop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    suite = load_suite(args.suite)
    val = load_records(args.data, "val")
    missing = {r.bucket_id for r in suite.items} - {r.bucket_id for r in val}
    if missing:
        print(f"val has no responses for {len(missing)} suite buckets: {sorted(missing)}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    methods = {
        "other_humans": other_humans(suite.items, val, args.seed),
        "echo_prompt": {r.id: r.prompt for r in suite.items},
        "char_shuffled": {r.id: "".join(rng.sample(r.response, len(r.response))) for r in suite.items},
    }
    runs = []
    for name, predictions in methods.items():
        path = args.out / "predictions" / name / "predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"id": r.id, "sample": 0, "bucket_id": r.bucket_id,
                                            "language": r.language, "prediction": predictions[r.id]},
                                           ensure_ascii=False) + "\n" for r in suite.items), encoding="utf-8")
        evaluate(path, args.suite, args.out / "runs" / name, name=name, seed=args.seed)
        runs.append(args.out / "runs" / name)
    result = compare_runs(runs, args.out / "compare")
    header, rows = table_rows(result["tables"]["overall"], result["metrics"])
    width = max(len(h) for h in header)
    for j, h in enumerate(header):
        print(f"{h:{width}s} " + " ".join(f"{row[j]:>15s}" for row in rows))
    print(f"report: {args.out / 'compare' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
