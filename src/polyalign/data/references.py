"""Per-bucket human reference distributions of the linguistic features, built from the TRAIN split only.

For every bucket: the count, per-feature mean and population std, quantiles at `QUANTILE_LEVELS`
(numpy 'linear' method), a robust scale, a shrunk covariance (for Mahalanobis distances) and the record ids
used. The critic (support distances) and the evaluation (coverage, feature gaps) read them back with
`References.load`.

Robust scale of feature f in bucket b: ``(q75 - q25) / 1.349`` (the IQR of a normal distribution is 1.349 σ,
so this estimates σ without being moved by outliers); if the IQR is 0 (a feature that is mostly constant in
the bucket, e.g. list items in chit-chat) the population std; if that is 0 too (the feature is constant in
the bucket), 1.0, so that standardizing never divides by zero and a deviation from the constant is read in
the feature's own unit.

Covariance: the features are standardized with their std (1.0 where the std is 0), the Ledoit-Wolf shrunk
covariance of the standardized matrix is computed (sklearn; it shrinks toward a multiple of the identity with
a data-driven weight), and rescaled back to the features' units: cov = D · LW(Z) · D. It is symmetric positive
definite whenever some feature varies in the bucket, even with 5 rows and 57 features, so its inverse
exists. Buckets of one row, or where every feature is constant, get diag(scale²).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import read_json, write_json
from .features import FEATURE_NAMES

QUANTILE_LEVELS: tuple[float, ...] = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)
FORMAT = "polyalign.references/1"
SIGNIFICANT_DIGITS = 12  # floats are stored with 12 significant digits (relative error < 1e-11)
IQR_TO_SIGMA = 1.349


@dataclass
class BucketReference:
    """The human reference of one bucket (arrays are over features, in the References' feature order)."""

    bucket_id: str
    count: int
    mean: np.ndarray
    std: np.ndarray
    quantiles: np.ndarray  # [len(quantile_levels), F]
    scale: np.ndarray
    cov: np.ndarray  # [F, F]
    ids: list[str]
    below_min: bool
    quantile_levels: tuple[float, ...] = field(default=QUANTILE_LEVELS)

    def quantile(self, level: float) -> np.ndarray:
        """The per-feature quantile at one of the stored levels (e.g. 0.5 for the median)."""
        for i, stored in enumerate(self.quantile_levels):
            if math.isclose(level, stored, abs_tol=1e-9):
                return self.quantiles[i]
        raise KeyError(f"quantile level {level} is not stored (levels: {list(self.quantile_levels)})")

    @property
    def median(self) -> np.ndarray:
        return self.quantile(0.5)


@dataclass
class References:
    """Per-bucket human references: `buckets[bucket_id]` over `feature_names`."""

    feature_names: tuple[str, ...]
    quantile_levels: tuple[float, ...]
    buckets: dict[str, BucketReference]

    def __contains__(self, bucket_id: object) -> bool:
        return bucket_id in self.buckets

    def __getitem__(self, bucket_id: str) -> BucketReference:
        try:
            return self.buckets[bucket_id]
        except KeyError:
            raise KeyError(f"no reference for bucket {bucket_id!r} (known: {', '.join(self.bucket_ids())})") \
                from None

    def __len__(self) -> int:
        return len(self.buckets)

    def bucket_ids(self) -> list[str]:
        """Bucket ids, sorted."""
        return sorted(self.buckets)

    def standardize(self, x: np.ndarray, bucket_id: str) -> np.ndarray:
        """(x - bucket median) / bucket robust scale, for one feature vector [F] or a matrix [n, F]."""
        ref = self[bucket_id]
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got shape {x.shape}")
        return (x - ref.median) / ref.scale

    def to_dict(self) -> dict:
        """A JSON-ready dict (floats rounded to SIGNIFICANT_DIGITS)."""
        return {
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "quantile_levels": list(self.quantile_levels),
            "buckets": {bid: bucket_dict(ref) for bid, ref in sorted(self.buckets.items())},
        }

    def save(self, path: str | Path) -> Path:
        """Write the references as one JSON file, atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, feature_names: Sequence[str] | None = None) -> References:
        """Read references written by `save`. With `feature_names`, they must match the stored ones exactly
        (the default, None, checks them against `polyalign.data.features.FEATURE_NAMES`)."""
        if feature_names is None:
            feature_names = FEATURE_NAMES
        return cls.from_dict(read_json(path), file=path, feature_names=feature_names)

    @classmethod
    def from_dict(cls, data: object, *, file: str | Path | None = None,
                  feature_names: Sequence[str] | None = None) -> References:
        """Validate and build references from `to_dict` output; InputError names the file and field."""
        def fail(message: str, where: str | None = None) -> InputError:
            return InputError(message, file=file, field=where)

        names, levels = _check_header(data, feature_names, fail)
        raw_buckets = data.get("buckets")
        if not isinstance(raw_buckets, dict):
            raise fail("must be an object of bucket id -> reference", "buckets")
        buckets = {bid: _bucket_from_dict(bid, raw, len(names), levels, fail) for bid, raw in raw_buckets.items()}
        return cls(feature_names=tuple(names), quantile_levels=levels, buckets=buckets)


def bucket_dict(ref: BucketReference) -> dict:
    """One bucket of References.to_dict (floats rounded to SIGNIFICANT_DIGITS)."""
    return {"count": ref.count, "below_min": ref.below_min, "mean": _rounded(ref.mean), "std": _rounded(ref.std),
            "quantiles": _rounded(ref.quantiles), "scale": _rounded(ref.scale), "cov": _rounded(ref.cov),
            "ids": list(ref.ids)}


def _check_header(data: object, feature_names: Sequence[str] | None,
                  fail: Callable[..., InputError]) -> tuple[list[str], tuple[float, ...]]:
    """The format tag, the feature names (equal to `feature_names` when given) and the quantile levels of a
    references file: (names, levels)."""
    if not isinstance(data, dict):
        raise fail("references must be a JSON object")
    if data.get("format") != FORMAT:
        raise fail(f"unknown format {data.get('format')!r} (expected {FORMAT!r})", "format")
    names = data.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise fail("must be a non-empty list of strings", "feature_names")
    if feature_names is not None and list(feature_names) != names:
        missing = [n for n in feature_names if n not in names]
        extra = [n for n in names if n not in feature_names]
        raise fail(f"feature names differ from this version's features (missing {missing}, extra {extra}"
                   f"{', or a different order' if not missing and not extra else ''}); rebuild the data",
                   "feature_names")
    levels = data.get("quantile_levels")
    if (not isinstance(levels, list) or not levels
            or not all(isinstance(q, (int, float)) and 0 <= q <= 1 for q in levels)):
        raise fail("must be a non-empty list of numbers in [0, 1]", "quantile_levels")
    if not any(math.isclose(q, 0.5) for q in levels):
        raise fail("must include 0.5 (the median)", "quantile_levels")
    return names, tuple(float(q) for q in levels)


def _bucket_from_dict(bid: str, raw: object, n_feat: int, levels: tuple[float, ...],
                      fail: Callable[..., InputError]) -> BucketReference:
    """One bucket of a references file, every field checked (the error names buckets.<id>.<field>)."""
    where = f"buckets.{bid}"
    if not isinstance(raw, dict):
        raise fail("must be an object", where)
    count = raw.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise fail("must be a positive integer", f"{where}.count")
    ids = raw.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) != count:
        raise fail(f"must be a list of {count} record ids (strings)", f"{where}.ids")
    below_min = raw.get("below_min")
    if not isinstance(below_min, bool):
        raise fail("must be true or false", f"{where}.below_min")

    def array(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return _array(raw, key, shape, f"{where}.{key}", fail)

    bucket = BucketReference(
        bucket_id=bid, count=count, mean=array("mean", (n_feat,)), std=array("std", (n_feat,)),
        quantiles=array("quantiles", (len(levels), n_feat)), scale=array("scale", (n_feat,)),
        cov=array("cov", (n_feat, n_feat)), ids=ids, below_min=below_min, quantile_levels=levels)
    if (bucket.scale <= 0).any():
        raise fail("must be positive", f"{where}.scale")
    return bucket


def _array(raw: dict, key: str, shape: tuple[int, ...], where: str, fail: Callable[..., InputError]) -> np.ndarray:
    """A finite float array of the given shape from raw[key]."""
    try:
        value = np.asarray(raw[key], dtype=np.float64)
    except KeyError:
        raise fail("missing", where) from None
    except (TypeError, ValueError):
        raise fail("must be numbers", where) from None
    if value.shape != shape:
        raise fail(f"has shape {value.shape}, expected {shape}", where)
    if not np.isfinite(value).all():
        raise fail("has NaN or infinite values", where)
    return value


def _rounded(a: np.ndarray) -> list:
    """Nested lists of floats with SIGNIFICANT_DIGITS significant digits."""
    flat = [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in np.asarray(a, dtype=np.float64).ravel().tolist()]
    return np.asarray(flat).reshape(np.shape(a)).tolist()


def robust_scale(values: np.ndarray, *, fallback: float | np.ndarray | None = None) -> np.ndarray:
    """Per-column robust scale of `values` [n, F]: IQR / 1.349 (the std of a normal), the population std where
    the IQR is 0, then `fallback` where the std is 0 too: a number (the references use 1.0), an array per
    column (e.g. the scale over all buckets), or None to leave 0 (no spread)."""
    values = np.asarray(values, dtype=np.float64)
    q25, q75 = np.quantile(values, [0.25, 0.75], axis=0)
    scale = (q75 - q25) / IQR_TO_SIGMA
    scale = np.where(scale > 0, scale, values.std(axis=0))
    return scale if fallback is None else np.where(scale > 0, scale, fallback)


def shrunk_covariance(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of the rows of x, computed on std-standardized columns and rescaled; see the
    module docstring. `scale` gives diag(scale²) when there are fewer than two rows or no varying feature."""
    from sklearn.covariance import LedoitWolf  # lazy on purpose: sklearn takes ~1.0 s to import (measured)

    fallback = np.diag(np.asarray(scale, dtype=np.float64) ** 2)
    if x.shape[0] < 2:
        return fallback
    std = x.std(axis=0)
    unit = np.where(std > 0, std, 1.0)
    if not (std > 0).any():
        return fallback
    z = (x - x.mean(axis=0)) / unit
    return _symmetric_or(LedoitWolf(assume_centered=True).fit(z).covariance_ * np.outer(unit, unit), fallback)


def _symmetric_or(cov: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """cov symmetrized, or `fallback` when it has no Cholesky factor."""
    cov = (cov + cov.T) / 2.0
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return fallback
    return cov


def ledoit_wolf_from_moments(zz: np.ndarray, z2z2: np.ndarray, n: int) -> np.ndarray:
    """sklearn's LedoitWolf(assume_centered=True).fit(z).covariance_ from two sums over the rows of z:
    zz = Σ z zᵀ and z2z2 = Σ (z∘z)(z∘z)ᵀ, so that it can be accumulated chunk by chunk (same formula as
    sklearn.covariance.ledoit_wolf_shrinkage; exact up to float summation order)."""
    n_feat = zz.shape[0]
    emp_cov = zz / n
    mu = np.trace(emp_cov) / n_feat
    if n_feat == 1:
        return emp_cov.copy()
    beta = np.sum(z2z2)
    delta = np.sum(zz ** 2) / n ** 2
    beta = 1.0 / (n_feat * n) * (beta / n - delta)
    trace_sum = np.trace(emp_cov)
    delta = (delta - 2.0 * mu * trace_sum + n_feat * mu ** 2) / n_feat
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - shrinkage) * emp_cov
    cov.flat[::n_feat + 1] += shrinkage * mu
    return cov


def covariance_from_moments(zz: np.ndarray, z2z2: np.ndarray, n: int, std: np.ndarray,
                            scale: np.ndarray) -> np.ndarray:
    """shrunk_covariance from the moments of the std-standardized rows (z = (x - mean) / unit, unit = std or 1):
    the same fallbacks (diag(scale²) with < 2 rows, no varying feature, or no Cholesky factor)."""
    fallback = np.diag(np.asarray(scale, dtype=np.float64) ** 2)
    if n < 2 or not (std > 0).any():
        return fallback
    unit = np.where(std > 0, std, 1.0)
    return _symmetric_or(ledoit_wolf_from_moments(zz, z2z2, n) * np.outer(unit, unit), fallback)


def build_references(matrix: np.ndarray, bucket_ids: Sequence[str], ids: Sequence[str],
                     feature_names: Sequence[str], min_count: int = 20,
                     quantile_levels: Sequence[float] = QUANTILE_LEVELS) -> References:
    """References for every bucket present in `bucket_ids` (rows of `matrix`, which the caller takes from the
    train split). Buckets with fewer than `min_count` rows are built too, flagged `below_min`."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {matrix.shape}")
    n, n_feat = matrix.shape
    if len(bucket_ids) != n or len(ids) != n:
        raise ValueError(f"matrix has {n} rows but {len(bucket_ids)} bucket ids and {len(ids)} ids")
    if len(feature_names) != n_feat:
        raise ValueError(f"matrix has {n_feat} columns but {len(feature_names)} feature names")
    if len(set(feature_names)) != n_feat:
        raise ValueError("feature names are not unique")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"record {ids[row]!r} has a non-finite value ({matrix[row, col]})",
                         field=feature_names[col])
    levels = tuple(float(q) for q in quantile_levels)
    if not any(math.isclose(q, 0.5) for q in levels) or not all(0 <= q <= 1 for q in levels):
        raise ValueError(f"quantile levels must lie in [0, 1] and include 0.5, got {levels}")
    buckets: dict[str, BucketReference] = {}
    if n:
        labels, inverse = np.unique(np.asarray(bucket_ids, dtype=object).astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(labels) + 1))
        id_array = np.asarray(ids, dtype=object)
        for k, label in enumerate(labels):
            rows = order[bounds[k]:bounds[k + 1]]
            x = matrix[rows]
            quantiles = np.quantile(x, levels, axis=0, method="linear")
            std = x.std(axis=0)
            scale = robust_scale(x, fallback=1.0)
            buckets[str(label)] = BucketReference(
                bucket_id=str(label), count=len(rows), mean=x.mean(axis=0), std=std, quantiles=quantiles,
                scale=scale, cov=shrunk_covariance(x, scale), ids=[str(i) for i in id_array[rows]],
                below_min=len(rows) < min_count, quantile_levels=levels)
    return References(feature_names=tuple(feature_names), quantile_levels=levels, buckets=buckets)
