"""Closed-form distances of a response's feature vector to its bucket's human support.

Three distances, each a pure, vectorized numpy function of the features and the bucket's statistics (formulas
in docs/hdpo.md):

* band:        mean over features of the exceedance beyond [q10, q90], scaled by max(q90 - q10, std, eps)
               (the reference implementation's target, kept for comparison);
* mahalanobis: sqrt(d^2 / F) with the bucket's mean and shrunk covariance (d^2 / F ~ 1 for typical humans);
* knn:         mean Euclidean distance to the k nearest reference humans in the bucket's standardized space,
               divided by the median of the same statistic for the reference humans themselves (leave-one-out;
               the mean where that median is 0), so 1 means "as far as a typical human is from the others".

`human_baseline` gives each distance's distribution for held-out human responses, so a value can be read
against what humans themselves score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from ..errors import PolyAlignError
from ..data.references import robust_scale, shrunk_covariance

METHODS = ("band", "mahalanobis", "knn")
BASELINE_QUANTILES = (0.10, 0.50, 0.90, 0.99)
DEFAULT_EPS = 1e-6


@dataclass
class BucketStats:
    """What the distances need from one bucket's human reference (train split): arrays of length F, cov F×F."""

    count: int
    mean: np.ndarray
    std: np.ndarray
    q10: np.ndarray
    q50: np.ndarray
    q90: np.ndarray
    scale: np.ndarray
    cov: np.ndarray
    _chol: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as lists)."""
        return {k: (getattr(self, k).tolist() if isinstance(getattr(self, k), np.ndarray) else getattr(self, k))
                for k in ("count", "mean", "std", "q10", "q50", "q90", "scale", "cov")}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BucketStats:
        """Inverse of to_json."""
        arrays = {k: np.asarray(obj[k], dtype=np.float64) for k in ("mean", "std", "q10", "q50", "q90", "scale",
                                                                      "cov")}
        return cls(count=int(obj["count"]), **arrays)

    def cholesky(self) -> Any:
        """Cached Cholesky factor of the covariance (raises PolyAlignError when it is not positive definite)."""
        if self._chol is None:
            try:
                self._chol = cho_factor(self.cov, lower=True)
            except np.linalg.LinAlgError:
                raise PolyAlignError("bucket covariance is not positive definite; the references must hold a "
                                     "shrunk (invertible) covariance") from None
        return self._chol


def bucket_stats_from_references(references: Any) -> dict[str, BucketStats]:
    """Read the per-bucket statistics out of a `polyalign.data.references.References` object."""
    out: dict[str, BucketStats] = {}
    for bucket_id, ref in references.buckets.items():
        out[bucket_id] = BucketStats(
            count=int(ref.count), mean=_arr(ref.mean), std=_arr(ref.std), q10=_arr(ref.quantile(0.10)),
            q50=_arr(ref.quantile(0.50)), q90=_arr(ref.quantile(0.90)), scale=_arr(ref.scale), cov=_arr(ref.cov))
    return out


def bucket_stats_from_matrix(x: np.ndarray) -> BucketStats:
    """Statistics of a matrix of human feature rows, computed as the data layer's references compute them
    (robust scale and shrunk covariance of polyalign.data.references); for callers without a References object."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    q10, q50, q90 = np.quantile(x, [0.10, 0.50, 0.90], axis=0)
    std = x.std(axis=0)
    scale = robust_scale(x, fallback=1.0)
    return BucketStats(count=len(x), mean=x.mean(axis=0), std=std, q10=q10, q50=q50, q90=q90, scale=scale,
                       cov=shrunk_covariance(x, scale))


def _arr(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Pure distances for one bucket (x: [n, F] or [F])


def band_distance(x: np.ndarray, low: np.ndarray, high: np.ndarray, std: np.ndarray,
                  eps: float = DEFAULT_EPS) -> np.ndarray:
    """Mean over features of the exceedance beyond [low, high], each scaled by max(high - low, std, eps)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    scale = np.maximum(np.maximum(high - low, std), eps)
    exceed = np.maximum(low - x, 0.0) + np.maximum(x - high, 0.0)
    return (exceed / scale).mean(axis=1)


def mahalanobis_distance(x: np.ndarray, mean: np.ndarray, cov: np.ndarray | None = None, *,
                         chol: Any = None) -> np.ndarray:
    """sqrt((x - mean)^T cov^-1 (x - mean) / F) per row (pass `chol` = scipy cho_factor(cov) to reuse it)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if chol is None:
        chol = cho_factor(np.asarray(cov, dtype=np.float64), lower=True)
    diff = x - mean
    d2 = np.einsum("nf,nf->n", diff, cho_solve(chol, diff.T).T)
    return np.sqrt(np.maximum(d2, 0.0) / x.shape[1])


def knn_mean_distance(queries: np.ndarray, reference: np.ndarray, k: int, *, exclude_self: bool = False,
                      chunk: int = 2048) -> np.ndarray:
    """Mean Euclidean distance of each query row to its k nearest reference rows (brute force, chunked).

    With `exclude_self`, the queries ARE the reference rows and each row's own entry is left out
    (leave-one-out). k is reduced to the number of available neighbours when the reference is small.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    available = len(reference) - (1 if exclude_self else 0)
    if available < 1:
        raise PolyAlignError("k-NN distance needs at least one reference row besides the query")
    k = min(k, available)
    ref_sq = np.einsum("rf,rf->r", reference, reference)
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d2 = np.einsum("qf,qf->q", q, q)[:, None] + ref_sq[None, :] - 2.0 * q @ reference.T
        np.maximum(d2, 0.0, out=d2)
        if exclude_self:
            rows = np.arange(len(q))
            d2[rows, start + rows] = np.inf
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        out[start:start + len(q)] = np.sqrt(nearest).mean(axis=1)
    return out


def knn_normalizer(loo_distances: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """The typical leave-one-out k-NN distance of a bucket's humans: their median; where more than half of them
    have k exact feature twins (median 0, e.g. short extractive answers), their mean; 1.0 if that is 0 too."""
    for value in (float(np.median(loo_distances)), float(np.mean(loo_distances))):
        if value > eps:
            return value
    return 1.0


def standardize(x: np.ndarray, stats: BucketStats) -> np.ndarray:
    """(x - median) / robust scale with the bucket's statistics (scale floored at DEFAULT_EPS)."""
    return (np.atleast_2d(np.asarray(x, dtype=np.float64)) - stats.q50) / np.maximum(stats.scale, DEFAULT_EPS)


# ---------------------------------------------------------------------------------------------------------------
# All buckets at once


class SupportDistance:
    """Distances of feature rows to their buckets' human support, for every method, grouped by bucket.

    `reference_rows` (bucket id → the bucket's TRAIN human feature rows) is needed for the k-NN distance only.
    """

    def __init__(self, stats: Mapping[str, BucketStats], reference_rows: Mapping[str, np.ndarray] | None = None,
                 *, k: int = 10, eps: float = DEFAULT_EPS):
        if k < 1:
            raise PolyAlignError(f"k must be >= 1, got {k}")
        self.stats = dict(stats)
        self.k = k
        self.eps = eps
        self._ref_z: dict[str, np.ndarray] = {}
        self._knn_norm: dict[str, float] = {}
        for bucket_id, rows in (reference_rows or {}).items():
            if bucket_id not in self.stats or len(rows) < 2:
                continue
            z = standardize(rows, self.stats[bucket_id])
            self._ref_z[bucket_id] = z
            self._knn_norm[bucket_id] = knn_normalizer(knn_mean_distance(z, z, k, exclude_self=True), eps)

    @property
    def buckets(self) -> list[str]:
        """Bucket ids with statistics."""
        return sorted(self.stats)

    def known(self, bucket_ids: Iterable[str], method: str) -> np.ndarray:
        """Boolean mask: which bucket ids this object can score with `method`."""
        table = self._ref_z if method == "knn" else self.stats
        return np.array([b in table for b in bucket_ids], dtype=bool)

    def compute(self, method: str, x: np.ndarray, bucket_ids: Sequence[str]) -> np.ndarray:
        """Distance of each row of x to the human support of its bucket with `method` (band|mahalanobis|knn)."""
        if method not in METHODS:
            raise PolyAlignError(f"unknown distance method {method!r}; expected one of {METHODS}")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        bucket_ids = np.asarray(list(bucket_ids), dtype=object)
        if len(bucket_ids) != len(x):
            raise PolyAlignError(f"{len(x)} feature rows but {len(bucket_ids)} bucket ids")
        unknown = sorted(set(bucket_ids[~self.known(bucket_ids, method)]))
        if unknown:
            what = "reference rows" if method == "knn" else "reference statistics"
            raise PolyAlignError(f"no {what} for bucket(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
        out = np.empty(len(x))
        for bucket_id in np.unique(bucket_ids):
            idx = np.flatnonzero(bucket_ids == bucket_id)
            out[idx] = self._one_bucket(method, x[idx], str(bucket_id))
        return out

    def _one_bucket(self, method: str, x: np.ndarray, bucket_id: str) -> np.ndarray:
        s = self.stats[bucket_id]
        if method == "band":
            return band_distance(x, s.q10, s.q90, s.std, self.eps)
        if method == "mahalanobis":
            return mahalanobis_distance(x, s.mean, chol=s.cholesky())
        return knn_mean_distance(standardize(x, s), self._ref_z[bucket_id], self.k) / self._knn_norm[bucket_id]

    def band(self, x: np.ndarray, bucket_ids: Sequence[str]) -> np.ndarray:
        """Band-exceedance distance (see module docstring)."""
        return self.compute("band", x, bucket_ids)

    def mahalanobis(self, x: np.ndarray, bucket_ids: Sequence[str]) -> np.ndarray:
        """Mahalanobis distance sqrt(d^2/F)."""
        return self.compute("mahalanobis", x, bucket_ids)

    def knn(self, x: np.ndarray, bucket_ids: Sequence[str]) -> np.ndarray:
        """k-NN radius ratio (1 = a typical human)."""
        return self.compute("knn", x, bucket_ids)

    def knn_state(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The standardized reference rows and per-bucket normalizers (saved in a critic bundle)."""
        return dict(self._ref_z), dict(self._knn_norm)

    @classmethod
    def from_knn_state(cls, stats: Mapping[str, BucketStats], ref_z: Mapping[str, np.ndarray],
                       norms: Mapping[str, float], *, k: int, eps: float = DEFAULT_EPS) -> SupportDistance:
        """Rebuild from `knn_state()` without recomputing the leave-one-out normalizers."""
        obj = cls(stats, None, k=k, eps=eps)
        obj._ref_z = {b: np.asarray(z, dtype=np.float64) for b, z in ref_z.items()}
        obj._knn_norm = {b: float(v) for b, v in norms.items()}
        return obj


def group_rows(x: np.ndarray, bucket_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Split feature rows by bucket id."""
    bucket_ids = np.asarray(list(bucket_ids), dtype=object)
    return {str(b): np.asarray(x)[bucket_ids == b] for b in np.unique(bucket_ids)}


def summarize(values: np.ndarray, quantiles: Sequence[float] = BASELINE_QUANTILES) -> dict[str, float]:
    """n, mean and the given quantiles (keys q10, q50, ...) of a set of distances."""
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, float] = {"n": int(len(values))}
    if len(values):
        out["mean"] = float(values.mean())
        for q, v in zip(quantiles, np.quantile(values, quantiles)):
            out[f"q{round(q * 100):02d}"] = float(v)
    return out


def human_baseline(distance: SupportDistance, x_heldout: np.ndarray, bucket_ids: Sequence[str],
                   methods: Sequence[str] = METHODS) -> dict[str, Any]:
    """Each distance's distribution over held-out HUMAN responses (e.g. the val split against train
    references): {method: {"pooled": summary, "buckets": {bucket_id: summary}, "skipped": n}}, where a
    summary holds n, mean, q10, q50, q90, q99. Rows whose bucket has no reference are counted as skipped."""
    bucket_ids = np.asarray(list(bucket_ids), dtype=object)
    out: dict[str, Any] = {}
    for method in methods:
        mask = distance.known(bucket_ids, method)
        values = distance.compute(method, np.asarray(x_heldout)[mask], bucket_ids[mask]) if mask.any() \
            else np.empty(0)
        kept = bucket_ids[mask]
        out[method] = {"pooled": summarize(values),
                       "buckets": {str(b): summarize(values[kept == b]) for b in np.unique(kept)},
                       "skipped": int((~mask).sum())}
    return out
