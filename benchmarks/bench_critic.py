"""Critic fit time and scoring throughput on the bundled human responses.

    .venv/bin/python benchmarks/bench_critic.py [--data DIR] [--repeat 3] [--threads 1]

Reads every assistant turn of DIR/*.jsonl (default ../shared/data) with a stand-in bucket per turn
(language|single-or-multi|source track; a benchmark needs no data build), makes one synthetic "model-like"
response per human one (shuffled, truncated or repeated text, the test fixtures' recipe), fits the learned critic
on human vs model-like responses (fit time: standardization + MLP training with early stopping, features
precomputed, and the feature extraction timed apart), then scores every human response: `Critic.score` end to end
(features + MLP, batched), the MLP alone, and the closed-form distances. Prints responses/s (median of --repeat)
and the held-out AUC of the fitted critic.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_rows(data_dir: Path) -> list[dict]:
    """Every assistant turn with a stand-in record id, language and bucket."""
    rows = []
    files = sorted(data_dir.glob("*.jsonl"))
    if not files:
        sys.exit(f"no *.jsonl files in {data_dir}")
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                conv = json.loads(line)
                for i, m in enumerate(conv["messages"]):
                    if m["role"] == "assistant":
                        track = "single" if i == 1 else "multi"
                        rows.append({"id": f"{conv['id']}#{i}", "language": conv["lang"], "track": track,
                                     "bucket_id": f"{conv['lang']}|{track}|{conv['meta']['track']}",
                                     "response": m["content"]})
    return rows


def model_like(text: str, language: str, rng: random.Random) -> str:
    """Shuffled, truncated or repeated human text."""
    kind = rng.choice(["shuffle", "truncate", "repeat"])
    units = list(text) if language == "zh" else text.split()
    joiner = "" if language == "zh" else " "
    if kind == "shuffle" and len(units) > 2:
        rng.shuffle(units)
        return joiner.join(units)
    if kind == "truncate" and len(units) > 3:
        return joiner.join(units[:max(2, len(units) // 4)])
    stop = "。" if language == "zh" else ". "
    return stop.join([text.split(stop)[0]] * 4).strip()


def median_time(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for scoring")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from polyalign.critic.distance import bucket_stats_from_matrix, group_rows
    from polyalign.critic.featurize import linguistic_feature_names, linguistic_features
    from polyalign.critic.fit import CriticConfig, assemble_critic_data, closed_form_critic, fit_critic_data

    rows = load_rows(args.data)
    texts = [r["response"] for r in rows]
    langs = [r["language"] for r in rows]
    buckets = [r["bucket_id"] for r in rows]
    rng = random.Random(0)
    preds = [{"id": r["id"], "prediction": model_like(r["response"], r["language"], rng)} for r in rows]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch threads "
          f"{torch.get_num_threads()}; {len(rows)} human responses, {len(set(buckets))} stand-in buckets")

    start = time.perf_counter()
    human_x = linguistic_features(texts, langs)
    t_feat_h = time.perf_counter() - start
    stats = {b: bucket_stats_from_matrix(x) for b, x in group_rows(human_x, buckets).items() if len(x) >= 2}
    start = time.perf_counter()
    data = assemble_critic_data(rows, human_x, preds, linguistic_features)
    t_feat_m = time.perf_counter() - start
    config = CriticConfig(data="unused", out="unused", seed=0, baseline=False)
    start = time.perf_counter()
    critic, metrics = fit_critic_data(data, stats, config, linguistic_feature_names())
    t_fit = time.perf_counter() - start
    print(f"features for the fit: {len(rows)} human in {t_feat_h:.2f} s, {len(preds)} model-like in "
          f"{t_feat_m:.2f} s")
    print(f"critic fit on {len(data)} responses ({metrics['n_fit']} fit rows, {metrics['training']['epochs']} "
          f"epochs, incl. closed-form comparison on the held-out rows): {t_fit:.2f} s; held-out AUC "
          f"{metrics['heldout_auc']:.4f} (within bucket {metrics['within_bucket_auc']:.4f})")

    t_score, scores = median_time(lambda: critic.score(texts, langs, buckets), args.repeat)
    t_mlp, _ = median_time(lambda: critic.score_features(human_x, buckets), args.repeat)
    print(f"learned critic score (features + MLP, batched): {len(texts) / t_score:,.0f} responses/s "
          f"({t_score:.2f} s for {len(texts)})")
    print(f"learned critic MLP only (precomputed features):  {len(texts) / t_mlp:,.0f} responses/s")
    assert np.all(np.isfinite(scores))
    train_rows = group_rows(human_x, buckets)
    for method in ("band", "mahalanobis", "knn"):
        start = time.perf_counter()
        cf = closed_form_critic(method, stats, train_rows, linguistic_feature_names(), k=10)
        t_setup = time.perf_counter() - start
        t_cf, _ = median_time(lambda c=cf: c.score_features(human_x, buckets), args.repeat)
        print(f"closed-form {method:<12} (precomputed features): {len(texts) / t_cf:,.0f} responses/s"
              + (f" (setup {t_setup:.2f} s)" if method == "knn" else ""))


if __name__ == "__main__":
    main()
