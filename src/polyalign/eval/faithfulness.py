"""Distributional faithfulness: MAUVE in a shared embedding space, length distributions, bucket-match rate.

Every function is score(X, R): R is a bucket's (or the whole suite's) human reference pool from the TRAIN split,
X is either a model's responses or the held-out test humans of the same items (the ceiling).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

from ..text import DEFAULT_LENGTH_EDGES, DEFAULT_LENGTH_LABELS, length_bin
from .naturalness import MIN_SIZE, robust_scale
from .registry import register_metric
from .threads import single_threaded

MAUVE_MIN_SIZE = 20        # C-MAUVE only for buckets with at least this many responses on each side
MAUVE_MAX_CLUSTERS = 50    # k-means clusters: round(min(n_p, n_q) / 10), clipped to [2, 50]
MAUVE_KMEANS_REDO = 2
MAUVE_KMEANS_ITER = 100


def mauve_clusters(n_p: int, n_q: int) -> int:
    """Number of MAUVE quantization clusters for sample sizes n_p, n_q (mauve's n/10 rule, clipped)."""
    return int(np.clip(round(min(n_p, n_q) / 10), 2, MAUVE_MAX_CLUSTERS))


@register_metric("mauve", "faithfulness", "higher", "MAUVE (mauve-text) between all of the suite's responses and "
                 "the whole human reference pool, in the shared featurizer space (default: char n-gram TF-IDF + "
                 "SVD fit once on the pool).", "MAUVE = mauve.compute_mauve(p_features=φ(R), q_features=φ(X), "
                 "num_buckets=clip(round(min(|R|,|X|)/10), 2, 50), seed).mauve", scope="global",
                 headline="value", ideal=1.0)
@register_metric("c_mauve", "faithfulness", "higher", "Conditional MAUVE: MAUVE per bucket (buckets with ≥ "
                 f"{MAUVE_MIN_SIZE} responses), same space and settings.",
                 "C-MAUVE_b = MAUVE(φ(R_b), φ(X_b)); headline = macro over buckets", ideal=1.0,
                 score=lambda g, take: group_mauve(g))
def mauve_score(p_features: np.ndarray, q_features: np.ndarray, *, seed: int = 0,
                num_buckets: int | None = None) -> float:
    """MAUVE between reference features p and candidate features q (1 = same distribution)."""
    # deferred: mauve-text imports torch and faiss (4.1 s measured); compare, the docs generator and the suite
    # verb load this module (the metric registry) without computing MAUVE
    import mauve

    p = np.asarray(p_features, dtype=np.float32)
    q = np.asarray(q_features, dtype=np.float32)
    if len(p) < 2 or len(q) < 2:
        return float("nan")
    k = num_buckets or mauve_clusters(len(p), len(q))
    # single-threaded: faiss k-means is deterministic only then; silenced: faiss prints "WARNING clustering N
    # points to K centroids" from C++ for small buckets
    with single_threaded(), _silence_native_output():
        result = mauve.compute_mauve(p_features=p, q_features=q, num_buckets=k, seed=seed, verbose=False,
                                     kmeans_num_redo=MAUVE_KMEANS_REDO, kmeans_max_iter=MAUVE_KMEANS_ITER)
    return float(result.mauve)


@contextlib.contextmanager
def _silence_native_output() -> Iterator[None]:
    """Send the process's C-level stdout/stderr to /dev/null for the duration (Python-level output is flushed
    first and restored after)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


@register_metric("length_w1", "faithfulness", "lower", "Wasserstein-1 between the bucket's response lengths and "
                 "the pool's (bilingual length-rule tokens).", "W1(len(X), len(R))  (scipy.stats."
                 "wasserstein_distance); headline = median over buckets (unbounded)", value_range="[0, ∞) tokens",
                 headline="median", ideal=0.0, score=lambda g, take: group_lengths(g)["length_w1"])
@register_metric("length_w1_norm", "faithfulness", "lower", "length_w1 divided by the pool's robust length scale "
                 "(comparable across buckets).", "W1(len(X), len(R)) / s,  s = IQR(len R)/1.349 (else std, else 1); "
                 "headline = median over buckets (unbounded)", value_range="[0, ∞)", headline="median", ideal=0.0,
                 score=lambda g, take: length_w1_norm_at(g, take), resample=True, min_items=MIN_SIZE,
                 min_pool=2 * MIN_SIZE)
@register_metric("length_ks", "faithfulness", "lower", "Two-sample Kolmogorov–Smirnov statistic between the "
                 "bucket's response lengths and the pool's.", "KS = sup_t |F_len(X)(t) − F_len(R)(t)|  "
                 "(scipy.stats.ks_2samp)", ideal=0.0, score=lambda g, take: group_lengths(g)["length_ks"])
def length_distances(x_lengths: Sequence[float], r_lengths: Sequence[float]) -> dict[str, float]:
    """length_w1, length_w1_norm and length_ks between two samples of lengths."""
    x = np.asarray(x_lengths, dtype=float)
    r = np.asarray(r_lengths, dtype=float)
    if len(x) == 0 or len(r) == 0:
        return {"length_w1": float("nan"), "length_w1_norm": float("nan"), "length_ks": float("nan")}
    w1 = float(wasserstein_distance(x, r))
    scale = float(robust_scale(r[:, None])[0])
    return {"length_w1": w1, "length_w1_norm": w1 / (scale if scale > 0 else 1.0),
            "length_ks": float(ks_2samp(x, r).statistic)}


def bucket_bins(bucket_id: str, labels: Sequence[str] = DEFAULT_LENGTH_LABELS,
                fallback: Sequence[str] = ()) -> tuple[str, ...]:
    """The length bins a bucket admits: its id's last field split on '+' (e.g. 'long+xlong'), when those are
    known bin labels; otherwise `fallback` (e.g. the bins seen among the bucket's human responses)."""
    parts = tuple(bucket_id.split("|")[-1].split("+"))
    return parts if all(p in labels for p in parts) else tuple(fallback)


@register_metric("bucket_match", "faithfulness", "higher", "Bucket-match rate: share of responses whose own "
                 "length bin (length rule, the suite's bin edges) is one of their bucket's bins (a merged bucket "
                 "such as `long+xlong` admits both). Human ceiling = 1 by construction.",
                 "match_b = mean_i 1[length_bin(len(x_i)) ∈ bins(b)]", ideal=1.0,
                 score=lambda g, take: group_bucket_match(g))
def bucket_match_rate(lengths: Sequence[int], bins: Sequence[str], edges: Sequence[int] = DEFAULT_LENGTH_EDGES,
                      labels: Sequence[str] = DEFAULT_LENGTH_LABELS) -> float:
    """Share of lengths whose length bin is in `bins`."""
    if len(lengths) == 0:
        return float("nan")
    allowed = set(bins)
    return float(np.mean([length_bin(int(n), edges, labels) in allowed for n in lengths]))


def group_mauve(group) -> float:
    """Per-bucket C-MAUVE of a group (polyalign.eval.group.Group), when both sides hold MAUVE_MIN_SIZE."""
    if min(group.n, len(group.pool_rows)) < MAUVE_MIN_SIZE:
        return float("nan")
    return mauve_score(group.human.pool_embeddings[group.pool_rows], group.side.embeddings[group.rows],
                       seed=group.seed)


def group_lengths(group) -> dict[str, float]:
    """length_w1, length_w1_norm and length_ks of a group's responses against its pool."""
    return group.cached("lengths", lambda: length_distances(group.lengths, group.pool_lengths))


def length_w1_norm_at(group, take: np.ndarray) -> float:
    """length_w1_norm of a group on its responses at positions `take` (the pool's robust scale, else 1)."""
    if len(take) == 0 or len(group.pool_rows) == 0:
        return float("nan")
    scale = group.cached("length_scale", lambda: float(robust_scale(group.pool_lengths[:, None])[0]))
    return float(wasserstein_distance(group.lengths[take], group.pool_lengths)) / (scale if scale > 0 else 1.0)


def group_bucket_match(group) -> float:
    """bucket_match of a group of the oracle-length view (its id is a bucket id)."""
    suite = group.suite
    seen = sorted({suite.items[i].length_bin for i in suite.view(group.view).items[group.name]})
    bins = bucket_bins(group.name, suite.length_labels, fallback=seen)
    return bucket_match_rate(group.lengths, bins, suite.length_edges, suite.length_labels)
