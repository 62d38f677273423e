"""Conditional naturalness in the bilingual feature space: every function is score(X, R) where R holds a bucket's
human reference pool (train humans) and X either a model's responses or held-out humans (the ceiling).

Robustness choices (the reference implementation's gap was dominated by one heavy-tailed or configuration-
constant feature and by one outlier bucket, and its coverage ANDed 177 bands so that humans scored ~0):
* per-feature scale = the pool's robust scale IQR/1.349, falling back to its std, then to the same statistic over
  the whole pool (all buckets); a feature with zero spread everywhere carries no scale and is left out;
* the per-bucket gap is a 10% trimmed mean over features: the few most extreme features (a degenerate or
  heavy-tailed one) are dropped, yet a mismatch confined to a minority of features (say, only the length group)
  still counts — a plain median over features would ignore it;
* joint coverage uses a shrunk (Ledoit–Wolf) covariance and a threshold calibrated on held-out pool halves,
  so that human text scores the nominal level (~0.9) by construction;
* Mahalanobis and the two-sample classifier see asinh of the robust z-scores, which tames heavy tails while
  keeping their order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import trim_mean
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.references import robust_scale
from .registry import register_metric

GAP_TRIM = 0.1           # share of features trimmed at each end of the per-bucket gap
BAND = (0.05, 0.95)      # per-feature human band (pool quantiles)
COVERAGE_LEVEL = 0.9     # joint region: the pool's own 90% Mahalanobis quantile
C2ST_FOLDS = 5
C2ST_REPEATS = 3
C2ST_MAX_PER_SIDE = 200  # cap per side and bucket (speed; the suite caps buckets at 50 items by default)
MIN_SIZE = 10            # fewer responses on either side → the metric is not computed (NaN)


@dataclass(frozen=True)
class FeatureScaler:
    """Robust standardization fitted on a bucket's pool: center (median), scale, and which columns are used."""

    center: np.ndarray
    scale: np.ndarray
    used: np.ndarray  # bool mask: columns with a positive scale

    @classmethod
    def fit(cls, pool: np.ndarray, fallback_scale: np.ndarray | None = None) -> FeatureScaler:
        """Fit on the pool; columns with zero spread take `fallback_scale` (e.g. the all-bucket pool's)."""
        pool = np.asarray(pool, dtype=float)
        scale = robust_scale(pool, fallback=fallback_scale)
        used = scale > 0
        return cls(center=np.median(pool, axis=0), scale=np.where(used, scale, 1.0), used=used)

    def z(self, x: np.ndarray) -> np.ndarray:
        """Robust z-scores of the used columns."""
        return ((np.asarray(x, dtype=float) - self.center) / self.scale)[:, self.used]

    def squashed(self, x: np.ndarray) -> np.ndarray:
        """asinh of the robust z-scores (heavy tails compressed, order kept)."""
        return np.arcsinh(self.z(x))


def column_wasserstein(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the empirical distributions of each column of x and of r
    (W1 = ∫ |F_x − F_r|, computed for all columns at once from the merged sorted samples)."""
    x = np.asarray(x, dtype=float)
    r = np.asarray(r, dtype=float)
    if x.ndim == 1:
        return column_wasserstein(x[:, None], r[:, None])[0]
    nx, nr = len(x), len(r)
    if nx == 0 or nr == 0:
        raise ValueError("both samples must be non-empty")
    merged = np.concatenate([x, r], axis=0)
    weights = np.concatenate([np.full(nx, 1.0 / nx), np.full(nr, -1.0 / nr)])
    order = np.argsort(merged, axis=0, kind="stable")
    sorted_vals = np.take_along_axis(merged, order, axis=0)
    cdf_diff = np.cumsum(weights[order], axis=0)[:-1]
    return np.sum(np.abs(cdf_diff) * np.diff(sorted_vals, axis=0), axis=0)


@register_metric("feature_gap", "naturalness", "lower", "Per-bucket feature-distribution gap: standardized "
                 "Wasserstein-1 per feature, 10% trimmed mean over features (robust to a few degenerate or "
                 "heavy-tailed features without ignoring a mismatch confined to a minority of them); the "
                 "headline is the median over buckets (one outlier bucket cannot dominate), the macro is also "
                 "reported.", "gap_b = trim_mean_{10%}{ W1(X_f, R_f) / s_f : f with s_f > 0 }\n"
                 "s_f = IQR(R_f)/1.349, else std(R_f), else the same over the whole pool\n"
                 "headline = median_b gap_b", headline="median", value_range="[0, ∞)", ideal=0.0,
                 score=lambda g, take: feature_gap(g.x[take], g.r, g.scaler)[0], resample=True, min_items=MIN_SIZE,
                 min_pool=2 * MIN_SIZE)
def feature_gap(x: np.ndarray, r: np.ndarray, scaler: FeatureScaler) -> tuple[float, np.ndarray]:
    """(bucket gap, per-feature standardized W1 with NaN for unused columns)."""
    if len(x) == 0 or len(r) == 0:
        return float("nan"), np.full(np.shape(r)[1], np.nan)
    w = column_wasserstein(x, r) / scaler.scale
    w = np.where(scaler.used, w, np.nan)
    return float(trim_mean(w[scaler.used], GAP_TRIM)), w


def feature_band(r: np.ndarray, low: float = BAND[0], high: float = BAND[1]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature human band: the pool's `low` and `high` quantiles."""
    lo, hi = np.quantile(np.asarray(r, dtype=float), [low, high], axis=0)
    return lo, hi


@register_metric("coverage_feature", "naturalness", "target human", "Human coverage, per feature: the mean over "
                 "features and responses of being inside the pool's q05–q95 band (≈ 0.9 for human text by "
                 "construction).", "cov_b = mean_{i, f} 1[q05(R_f) ≤ x_if ≤ q95(R_f)]", ideal=0.9,
                 score=lambda g, take: feature_inside_rate(g.x, g.r))
def feature_inside_rate(x: np.ndarray, r: np.ndarray) -> float:
    """Mean per-feature inside rate of x in r's q05–q95 band."""
    if len(x) == 0 or len(r) < MIN_SIZE:
        return float("nan")
    lo, hi = feature_band(r)
    x = np.asarray(x, dtype=float)
    return float(np.mean((x >= lo) & (x <= hi)))


def _mahalanobis_sq(points: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    diff = points - mean
    return np.einsum("ij,jk,ik->i", diff, precision, diff)


@register_metric("coverage_joint", "naturalness", "target human", "Human coverage, joint region: share of "
                 "responses whose Mahalanobis distance to the pool (shrunk Ledoit–Wolf covariance on asinh robust "
                 "z-scores) is within the pool's own 90% quantile, calibrated on held-out pool halves (≈ 0.9 for "
                 "human text).", "split R in halves A, B (seeded); fit μ, Σ (Ledoit–Wolf) on A; t = q90{d²_A(b) : "
                 "b ∈ B}\ncov_A = mean_i 1[d²_A(x_i) ≤ t];  cov_b = (cov_A + cov_B) / 2  (roles swapped)",
                 ideal=0.9, score=lambda g, take: _mean_at(g.cached("inside", lambda: joint_inside(
                     g.x, g.r, g.scaler, seed=g.seed)), take), resample=True, min_items=MIN_SIZE,
                 min_pool=2 * MIN_SIZE)
def joint_coverage(x: np.ndarray, r: np.ndarray, scaler: FeatureScaler, *, level: float = COVERAGE_LEVEL,
                   seed: int = 0) -> float:
    """Cross-fitted Mahalanobis coverage of x in r's 90% region (see the registered formula)."""
    inside = joint_inside(x, r, scaler, level=level, seed=seed)
    return float(np.mean(inside)) if inside is not None else float("nan")


def joint_inside(x: np.ndarray, r: np.ndarray, scaler: FeatureScaler, *, level: float = COVERAGE_LEVEL,
                 seed: int = 0) -> np.ndarray | None:
    """Per response of x: the share of the two cross-fitted regions of r that hold it (0, ½ or 1); None when
    either side is too small."""
    if len(x) == 0 or len(r) < 2 * MIN_SIZE or not scaler.used.any():
        return None
    zx, zr = scaler.squashed(x), scaler.squashed(r)
    perm = np.random.default_rng(seed).permutation(len(zr))
    halves = (zr[perm[: len(zr) // 2]], zr[perm[len(zr) // 2:]])
    inside = np.zeros(len(zx))
    for fit, calib in (halves, halves[::-1]):
        lw = LedoitWolf().fit(fit)
        threshold = np.quantile(_mahalanobis_sq(calib, lw.location_, lw.precision_), level)
        inside += (_mahalanobis_sq(zx, lw.location_, lw.precision_) <= threshold) / 2
    return inside


@register_metric("c2st_acc", "naturalness", "target 0.5", "Classifier two-sample test per bucket: stratified "
                 f"{C2ST_FOLDS}-fold cross-validated accuracy of a logistic regression telling the bucket's "
                 "responses from a size-matched seeded sample of its human pool (asinh robust z-scores). 0.5 = "
                 "indistinguishable, 1 = always told apart.", "n = min(|X|, |R|, cap); R' = seeded sample of n "
                 f"from R;  acc = mean over {C2ST_REPEATS} draws of R' of\n"
                 "  cross_val_score(LogisticRegression(C=1), [X; R'], [1…1; 0…0], StratifiedKFold(5)).mean()",
                 value_range="[0, 1]", ideal=0.5, score=lambda g, take: c2st_value(g, take), resample=True,
                 min_items=MIN_SIZE, min_pool=2 * MIN_SIZE)
@register_metric("c2st_dev", "naturalness", "lower", "|c2st_acc − 0.5|: how far the two-sample classifier is from "
                 "chance.", "dev_b = |acc_b − 0.5|", value_range="[0, 0.5]", ideal=0.0,
                 score=lambda g, take: abs(c2st_value(g, g.all) - 0.5))
def c2st_accuracy(x: np.ndarray, r: np.ndarray, scaler: FeatureScaler, *, folds: int = C2ST_FOLDS,
                  repeats: int = C2ST_REPEATS, max_per_side: int = C2ST_MAX_PER_SIDE, seed: int = 0) -> float:
    """Cross-validated accuracy of telling x from a size-matched sample of r (0.5 = indistinguishable)."""
    result = c2st_predictions(x, r, scaler, folds=folds, repeats=repeats, max_per_side=max_per_side, seed=seed)
    return result[0] if result is not None else float("nan")


def c2st_predictions(x: np.ndarray, r: np.ndarray, scaler: FeatureScaler, *, folds: int = C2ST_FOLDS,
                     repeats: int = C2ST_REPEATS, max_per_side: int = C2ST_MAX_PER_SIDE,
                     seed: int = 0) -> tuple[float, np.ndarray, float] | None:
    """(accuracy, per-response out-of-fold correctness of x averaged over repeats (NaN where a response was
    never drawn), mean correctness on the pool side); None when a side is too small."""
    n = min(len(x), len(r), max_per_side)
    if n < MIN_SIZE or not scaler.used.any():
        return None
    zx, zr = scaler.squashed(x), scaler.squashed(r)
    rng = np.random.default_rng(seed)
    folds = min(folds, n)
    x_hits, x_draws = np.zeros(len(zx)), np.zeros(len(zx))
    accs, pool_rates = [], []
    for rep in range(repeats if len(r) > n or len(x) > n else 1):
        xi = rng.choice(len(zx), size=n, replace=False)
        rs = zr[rng.choice(len(zr), size=n, replace=False)]
        data = np.concatenate([zx[xi], rs])
        labels = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + rep)
        correct = (cross_val_predict(model, data, labels, cv=cv) == labels).astype(float)
        np.add.at(x_hits, xi, correct[:n])
        np.add.at(x_draws, xi, 1.0)
        accs.append(correct.mean())
        pool_rates.append(correct[n:].mean())
    with np.errstate(invalid="ignore"):
        x_correct = np.where(x_draws > 0, x_hits / np.maximum(x_draws, 1), np.nan)
    return float(np.mean(accs)), x_correct, float(np.mean(pool_rates))


def c2st_value(group, take: np.ndarray) -> float:
    """c2st_acc of a group (polyalign.eval.group.Group) on its responses at positions `take`: the classifiers are
    fit once per group; a draw resamples the responses' out-of-fold correctness (the pool side's stays at its
    mean)."""
    fitted = group.cached("c2st", lambda: c2st_predictions(group.x, group.r, group.scaler, seed=group.seed))
    if fitted is None:
        return float("nan")
    _, x_correct, pool_rate = fitted
    return 0.5 * (_mean_at(x_correct, take) + pool_rate)


def _mean_at(values: np.ndarray | None, take: np.ndarray) -> float:
    """Mean of the finite values at positions `take` (NaN when there are none)."""
    if values is None or len(take) == 0:
        return float("nan")
    picked = values[take]
    picked = picked[np.isfinite(picked)]
    return float(picked.mean()) if len(picked) else float("nan")
