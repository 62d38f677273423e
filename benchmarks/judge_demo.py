"""A judge run over a demo-style run's methods through a local `transformers serve` (docs/judge.md).

    python benchmarks/judge_demo.py --run runs/experiment/seed0 --judge-model PATH [--limit 8] [--out runs/judge_demo]

Serves the judge model on localhost (tests/served.py), judges gen_<method>/predictions.jsonl of every method on
the run's suite, prints the composite table and the counted failures. A tiny judge's quality is not the point:
its answers are mostly not valid JSON, and those failures are the result."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from served import TransformersServer  # noqa: E402

from polyalign.endpoint.config import EndpointConfig  # noqa: E402
from polyalign.judge.run import JudgeConfig, run_judge  # noqa: E402
from polyalign.judge.summary import composite_rows  # noqa: E402

METHODS = ("base", "sft", "bucket_sft", "dpo", "hdpo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a pipeline run folder (suite/, gen_<method>/)")
    parser.add_argument("--judge-model", required=True, help="a local chat model folder to serve as the judge")
    parser.add_argument("--limit", type=int, default=8, help="suite items judged (one per bucket first)")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("runs/judge_demo"))
    args = parser.parse_args()
    methods = {m: args.run / f"gen_{m}" / "predictions.jsonl" for m in METHODS
               if (args.run / f"gen_{m}" / "predictions.jsonl").exists()}
    args.out.mkdir(parents=True, exist_ok=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    started = time.time()
    server = TransformersServer(args.judge_model, args.out / "serve.log").wait(300)
    print(f"transformers serve up in {time.time() - started:.1f} s")
    try:
        judge = EndpointConfig(url=server.url, model_name=args.judge_model, concurrency=2, timeout_s=300)
        t0 = time.time()
        summary = run_judge([judge], methods, args.run / "suite", args.out, JudgeConfig(max_tokens=args.max_tokens),
                            per_bucket=1, limit=args.limit)
        print(f"judged in {time.time() - t0:.1f} s; requests: {json.dumps(summary['requests'])}")
    finally:
        server.stop()
    header, rows = composite_rows(summary)
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(row))
    print("failure kinds:", summary["per_judge"][0]["failure_kinds"])
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
