"""Utility–naturalness trade-off over buckets: Pareto frontier, hypervolume and a robust aggregate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .naturalness import c2st_value
from .registry import register_metric


@register_metric("naturalness", "tradeoff", "higher", "Bounded per-bucket naturalness used for the trade-off: "
                 "1 when the two-sample classifier is at chance, 0 when it always tells the model from humans.",
                 "nat_b = clip(1 − 2·|c2st_acc_b − 0.5|, 0, 1)", ideal=1.0,
                 score=lambda g, take: bucket_naturalness(c2st_value(g, g.all)))
def bucket_naturalness(c2st_acc: float) -> float:
    """1 − 2|acc − 0.5| clipped to [0, 1] (NaN stays NaN)."""
    if c2st_acc is None or not np.isfinite(c2st_acc):
        return float("nan")
    return float(np.clip(1.0 - 2.0 * abs(c2st_acc - 0.5), 0.0, 1.0))


def pareto_frontier(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points when both coordinates are maximized, sorted by the first coordinate
    ascending (points with a NaN coordinate are ignored; exact duplicates keep one)."""
    pts = [(float(u), float(v), i) for i, (u, v) in enumerate(points) if np.isfinite(u) and np.isfinite(v)]
    pts.sort(key=lambda p: (-p[0], -p[1]))
    frontier, best_v = [], -np.inf
    for _u, v, i in pts:
        if v > best_v:
            frontier.append(i)
            best_v = v
    return frontier[::-1]


@register_metric("hypervolume", "tradeoff", "higher", "Area dominated by the Pareto frontier of the bucket points "
                 "(utility = f1, naturalness = nat_b) with respect to (0, 0).",
                 "frontier sorted by utility ascending (u_1 < … < u_k, n_1 > … > n_k):\n"
                 "HV = Σ_i (u_i − u_{i−1}) · n_i,  u_0 = 0", scope="global", headline="value", ceiling=False,
                 ideal=1.0)
def hypervolume(points: Sequence[Sequence[float]], reference: tuple[float, float] = (0.0, 0.0)) -> float:
    """2-D hypervolume (maximization) of the points' Pareto frontier w.r.t. `reference`."""
    idx = pareto_frontier(points)
    area, prev_u = 0.0, reference[0]
    for i in idx:
        u, v = float(points[i][0]), float(points[i][1])
        if u <= reference[0] or v <= reference[1]:
            continue
        area += (u - prev_u) * (v - reference[1])
        prev_u = u
    return area


AGGREGATE_COMPONENTS = ("f1", "naturalness", "c_mauve")


@register_metric("aggregate", "tradeoff", "higher", "One number per method that one outlier bucket cannot "
                 "dominate: the geometric mean of three bounded components, each the MEDIAN over buckets — "
                 "utility (f1), naturalness (nat_b) and C-MAUVE.",
                 "Agg = (median_b f1_b · median_b nat_b · median_b C-MAUVE_b)^(1/3); each in [0, 1]",
                 scope="global", headline="value", ceiling=False, ideal=1.0)
def aggregate_score(per_bucket: Mapping[str, Mapping[str, float]],
                    components: Sequence[str] = AGGREGATE_COMPONENTS) -> float:
    """Geometric mean over components of the median over buckets (each clipped to [0, 1]); NaN if a component
    has no finite bucket value."""
    medians = []
    for name in components:
        values = np.array([v for v in per_bucket.get(name, {}).values() if v is not None and np.isfinite(v)])
        if values.size == 0:
            return float("nan")
        medians.append(float(np.clip(np.median(values), 0.0, 1.0)))
    return float(np.exp(np.mean(np.log(np.maximum(medians, 1e-12))))) if min(medians) > 0 else 0.0
