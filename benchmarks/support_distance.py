"""How close each method's samples on VALIDATION contexts lie to their buckets' human support.

For each pipeline workdir (one per training seed, e.g. from benchmarks/experiment.py), samples SFT, Bucket-SFT,
DPO (from SFT) and HDPO (from Bucket-SFT) on a bucket-stratified set of validation prompts with the pipeline's
one decoding config, and scores the samples with that workdir's learned critic and with the closed-form band and
Mahalanobis distances to the train references (docs/hdpo.md §1). Prints mean ± sd over workdirs, with the
validation humans' own distances as the reference point. Lower is closer to human support.

    python benchmarks/support_distance.py --workdirs runs/experiment/seed0,runs/experiment/seed1,runs/experiment/seed2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hdpo_forms import distances  # noqa: E402

METHODS = ("sft", "bucket_sft", "dpo", "hdpo")
SHOWN = (("critic_mean", "critic d mean"), ("critic_median", "critic d median"), ("band_median", "band median"),
         ("mahalanobis_median", "Mahalanobis median"), ("empty", "empty"), ("mean_chars", "chars"))


def score_workdir(workdir: Path, records: list[Any], decoding: Any, methods: list[str]) -> dict[str, dict]:
    """Distances of the validation humans and of each method's samples, for one workdir."""
    from polyalign.critic.distance import SupportDistance, bucket_stats_from_references
    from polyalign.critic.model import load_critic
    from polyalign.data.references import References
    from polyalign.generate import generate_predictions
    from polyalign.io import read_jsonl

    critic = load_critic(workdir / "critic")
    support = SupportDistance(bucket_stats_from_references(References.load(workdir / "data" / "references.json")))
    rows = {"human": distances([r.response for r in records], records, critic, support)}
    for method in methods:
        path = generate_predictions(workdir / method / "model", records, workdir / "support_val" / method,
                                    decoding, device="cpu")
        predictions = {row["id"]: row["prediction"] for row in read_jsonl(path) if row["sample"] == 0}
        rows[method] = distances([predictions[r.id] for r in records], records, critic, support)
        print(f"  {workdir.name} {method}: critic mean {rows[method]['critic_mean']:.3f}, "
              f"band median {rows[method]['band_median']:.3f}", flush=True)
    return rows


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", required=True, help="comma-separated pipeline workdirs (one per seed)")
    parser.add_argument("--config", default=str(REPO / "configs" / "pipeline" / "demo.yaml"),
                        help="pipeline config whose decoding section is used")
    parser.add_argument("--per-bucket", type=int, default=5, help="validation prompts per bucket")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt sample")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    from polyalign.progress import quiet_libraries
    from polyalign.pipeline.config import load_pipeline_config
    from polyalign.data.build import load_records
    from polyalign.data.stratify import stratified_records
    from polyalign.generate import DecodingConfig

    quiet_libraries()
    workdirs = [Path(w) for w in args.workdirs.split(",") if w]
    methods = [m for m in args.methods.split(",") if m]
    decoding = DecodingConfig(**load_pipeline_config(args.config).decoding)
    records = stratified_records(load_records(workdirs[0] / "data", "val"), args.per_bucket, args.seed)
    languages = sorted({r.language for r in records})
    print(f"{len(records)} validation prompts ({args.per_bucket} per bucket, {', '.join(languages)}); decoding "
          f"{decoding.model_dump()}", flush=True)
    per_workdir = [score_workdir(w, records, decoding, methods) for w in workdirs]
    print()
    print(f"| samples on validation prompts ({len(workdirs)} seed(s)) | "
          + " | ".join(label for _, label in SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    for method in ["human", *methods]:
        cells = [mean_sd([float(rows[method][key]) for rows in per_workdir]) for key, _ in SHOWN]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
