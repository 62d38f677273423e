"""Bucket-Aware SFT against plain SFT on the bundled data with the tiny model: same base model, same steps, same
seed; the only difference is the `balance:` section. Prints the per-bucket validation loss of both, the spread
(max − min), the worst bucket, the macro mean and the token-weighted mean.

  python benchmarks/sft_balance.py --data runs/data --model runs/tiny-base [--steps 120] [--set key=value ...]

Without --model it builds the tiny model (init-tiny + a short pretraining) in the work folder first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_base(data: Path, work: Path, pretrain_steps: int) -> Path:
    """init-tiny + pretrain into WORK (reused when present)."""
    from polyalign.data.build import load_records
    from polyalign.models.pretrain import PretrainConfig, pretrain
    from polyalign.models.tiny import init_tiny

    base = work / "tiny-base"
    if (base / "config.json").exists():
        return base
    records = load_records(data, "train")
    init = init_tiny(records, work / "tiny-init")
    return pretrain(init, records, base, PretrainConfig(max_steps=pretrain_steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/data", help="data directory from `polyalign data build`")
    parser.add_argument("--model", help="base model folder (default: build the tiny one in --work)")
    parser.add_argument("--work", default="runs/sft_balance", help="output folder for both runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the configs')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--plain-config", default=str(REPO / "configs/train/sft.yaml"))
    parser.add_argument("--bucket-config", default=str(REPO / "configs/train/bucket_sft.yaml"))
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="override for BOTH runs, e.g. --set max_eval_samples=1000")
    parser.add_argument("--bucket-set", action="append", default=[], help="override for the Bucket-SFT run only")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import torch

    from polyalign.cli.common import console, make_table
    from polyalign.progress import quiet_libraries
    from polyalign.config import parse_override
    from polyalign.train.sft import load_sft_config, run_sft

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    data, work = Path(args.data), Path(args.work)
    if not (data / "records" / "train.jsonl").exists():
        sys.exit(f"no data directory at {data}: run `polyalign data build configs/data/bundled.yaml --out {data}`")
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else build_base(data, work, args.pretrain_steps)

    results = {}
    for name, config_path, extra in (("sft", args.plain_config, []), ("bucket_sft", args.bucket_config,
                                                                        args.bucket_set)):
        overrides = parse_override([*args.sets, *extra, f"model={model}", f"data={data}",
                                    f"output_dir={work / name}", f"seed={args.seed}", "final_eval=true"])
        if args.steps:
            overrides.setdefault("training", {})["max_steps"] = args.steps
        cfg = load_sft_config(config_path, overrides)
        started = time.time()
        out = run_sft(cfg)
        manifest = json.loads((out / "manifest.json").read_text())
        results[name] = {"val": manifest["final_bucket_losses"]["val"], "steps": manifest["global_steps"],
                         "wall_s": round(time.time() - started, 1), "balance": cfg.balance.model_dump()}
        console.print(f"{name}: {manifest['global_steps']} steps in {results[name]['wall_s']} s")

    plain, bucket = results["sft"]["val"], results["bucket_sft"]["val"]
    names = sorted(set(plain["buckets"]) | set(bucket["buckets"]))
    rows = []
    for b in names:
        p, q = plain["buckets"].get(b), bucket["buckets"].get(b)
        rows.append([b, p["tokens"] if p else None, p["loss"] if p else None, q["loss"] if q else None,
                     (q["loss"] - p["loss"]) if p and q else None])
    table = make_table("Per-bucket validation loss (token mean), same base, steps and seed",
                       ["bucket", "val tokens", "plain SFT", "Bucket-SFT", "diff"], rows)
    table.columns[0].no_wrap = True
    console.print(table)
    summary = make_table("Summary over buckets", ["", "plain SFT", "Bucket-SFT"], [
        ["spread (max - min)", plain["spread"], bucket["spread"]],
        ["worst bucket", plain["worst_bucket"], bucket["worst_bucket"]],
        ["worst bucket loss", plain["worst_loss"], bucket["worst_loss"]],
        ["macro mean", plain["macro"], bucket["macro"]],
        ["token-weighted mean", plain["token_mean"], bucket["token_mean"]],
    ])
    console.print(summary)
    smaller = bucket["spread"] < plain["spread"]
    console.print(f"spread {'SMALLER' if smaller else 'NOT smaller'} with Bucket-SFT: "
                  f"{bucket['spread']:.4f} vs {plain['spread']:.4f}; worst bucket loss "
                  f"{bucket['worst_loss']:.4f} vs {plain['worst_loss']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
