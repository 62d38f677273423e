"""Paired comparisons of methods scored on the same items: differences in "badness" with paired-bootstrap
standard errors, two-sided p-values and Holm's correction over a family of tests.

Every headline number carries B bootstrap replicates drawn with the same item resamples for every method of a
suite (polyalign.eval.headline), so a difference is computed draw by draw. A metric's badness is its distance
from the ideal in its own direction (registry.closeness): higher-is-better → −v, lower → v, target 0.5 →
|v − 0.5|, target human → |v − h| with h the held-out humans' value in the same draw. A negative difference
A − B means A is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from .registry import MetricSpec

ALPHA = 0.05


def badness(spec: MetricSpec, values: np.ndarray, human: np.ndarray | None = None) -> np.ndarray:
    """Distance of values from the metric's ideal (0 = ideal), elementwise; NaN where undefined."""
    v = np.asarray(values, dtype=float)
    if spec.direction == "higher":
        return -v
    if spec.direction == "lower":
        return v
    if spec.direction == "target 0.5":
        return np.abs(v - 0.5)
    if human is None:
        return np.full_like(v, np.nan)
    return np.abs(v - np.asarray(human, dtype=float))


def _array(values: Sequence[float | None] | None) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=float)


def paired_difference(spec: MetricSpec, a: float, b: float, a_reps: Sequence[float | None],
                      b_reps: Sequence[float | None], human: float | None = None,
                      human_reps: Sequence[float | None] | None = None) -> dict[str, float | None]:
    """badness(A) − badness(B) with its paired-bootstrap SE, 95% normal CI, z and two-sided p-value."""
    h = None if human is None else np.array([human])
    point = float(badness(spec, np.array([a]), h)[0] - badness(spec, np.array([b]), h)[0])
    hr = None if human is None else _array(human_reps)
    draws = badness(spec, _array(a_reps), hr) - badness(spec, _array(b_reps), hr)
    draws = draws[np.isfinite(draws)]
    return normal_test(point, float(draws.std(ddof=1)) if len(draws) > 1 else float("nan"))


def normal_test(diff: float, se: float) -> dict[str, float | None]:
    """Wald test of diff = 0 with standard error se: CI, z and two-sided p (None where undefined)."""
    if not np.isfinite(diff) or not np.isfinite(se):
        return {"diff": diff if np.isfinite(diff) else None, "se": None, "ci": None, "z": None, "p": None}
    if se == 0:
        return {"diff": diff, "se": 0.0, "ci": [diff, diff], "z": None, "p": 1.0 if diff == 0 else 0.0}
    z = diff / se
    half = float(norm.ppf(1 - ALPHA / 2)) * se
    return {"diff": diff, "se": se, "ci": [diff - half, diff + half], "z": z, "p": float(2 * norm.sf(abs(z)))}


def seed_pooled_difference(spec: MetricSpec, a: Sequence[float], b: Sequence[float],
                           a_reps: Sequence[Sequence[float | None]], b_reps: Sequence[Sequence[float | None]],
                           human: float | None = None,
                           human_reps: Sequence[float | None] | None = None) -> dict[str, float | None]:
    """The seed-mean of badness(A) − badness(B) over S training seeds scored on the same items, with
    SE² = SE²_items(seed-mean, from the draw-by-draw mean over seeds) + Var_seeds(diff) / S."""
    h = None if human is None else np.array([human])
    hr = None if human is None else _array(human_reps)
    points = np.array([badness(spec, np.array([x]), h)[0] - badness(spec, np.array([y]), h)[0]
                       for x, y in zip(a, b)], dtype=float)
    draws = np.array([badness(spec, _array(x), hr) - badness(spec, _array(y), hr) for x, y in zip(a_reps, b_reps)])
    mean_draws = np.nanmean(draws, axis=0) if draws.size else np.array([])
    mean_draws = mean_draws[np.isfinite(mean_draws)]
    se_items = float(mean_draws.std(ddof=1)) if len(mean_draws) > 1 else float("nan")
    s = len(points)
    var_seeds = float(points.var(ddof=1)) if s > 1 else 0.0
    out = normal_test(float(points.mean()), float(np.sqrt(se_items ** 2 + var_seeds / s)))
    out["seed_diffs"] = [float(p) for p in points]
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (None stays None and is not counted in the family)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
