"""Aggregating per-bucket scores: macro, n-weighted and median over buckets, overall and per language / track,
and the metrics.json block of every registered metric (model value next to its human ceiling)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .registry import MetricSpec, load_all
from .tradeoff import aggregate_score, hypervolume, pareto_frontier

BucketInfo = Mapping[str, Mapping[str, str]]


def aggregate_values(per_bucket: Mapping[str, float], n: Mapping[str, int]) -> dict[str, Any]:
    """macro (mean), weighted (by n) and median over the buckets with a finite value."""
    keys = [b for b, v in per_bucket.items() if v is not None and np.isfinite(v)]
    if not keys:
        return {"macro": None, "weighted": None, "median": None, "n_buckets": 0}
    values = np.array([per_bucket[b] for b in keys], dtype=float)
    weights = np.array([max(n.get(b, 0), 0) for b in keys], dtype=float)
    weighted = float(np.average(values, weights=weights)) if weights.sum() > 0 else None
    return {"macro": float(values.mean()), "weighted": weighted, "median": float(np.median(values)),
            "n_buckets": len(keys)}


def _groups(info: BucketInfo) -> dict[str, dict[str, Callable[[str], bool]]]:
    languages = sorted({i["language"] for i in info.values()})
    tracks = sorted({i["track"] for i in info.values()})
    return {"by_language": {lang: (lambda b, lang=lang: info[b]["language"] == lang) for lang in languages},
            "by_track": {track: (lambda b, track=track: info[b]["track"] == track) for track in tracks}}


def summarize_bucket_metric(spec: MetricSpec, per_bucket: Mapping[str, float], n: Mapping[str, int],
                            info: BucketInfo) -> dict[str, Any]:
    """per_bucket values, the three aggregates, the headline, and the same per language and per track."""
    out: dict[str, Any] = {"per_bucket": dict(sorted(per_bucket.items())), **aggregate_values(per_bucket, n)}
    out["headline"] = out[spec.headline]
    for group, selectors in _groups(info).items():
        out[group] = {}
        for name, keep in selectors.items():
            agg = aggregate_values({b: v for b, v in per_bucket.items() if keep(b)}, n)
            agg["headline"] = agg[spec.headline]
            out[group][name] = agg
    return out


def _tradeoff(per_bucket: Mapping[str, Mapping[str, float]], buckets: list[str]) -> dict[str, Any]:
    f1, nat = per_bucket.get("f1", {}), per_bucket.get("naturalness", {})
    names = [b for b in buckets if b in f1 and b in nat]
    points = [(f1[b], nat[b]) for b in names]
    frontier = [names[i] for i in pareto_frontier(points)]
    sub = {k: {b: v for b, v in vals.items() if b in buckets} for k, vals in per_bucket.items()}
    hv = hypervolume(points) if points else None
    agg = aggregate_score(sub)
    return {"hypervolume": hv, "aggregate": agg if np.isfinite(agg) else None, "frontier": frontier}


def summarize_side(side: Mapping[str, Any], info: BucketInfo, *, is_human: bool) -> dict[str, dict[str, Any]]:
    """Metric name → summary block for one scored side (see `summarize_bucket_metric`)."""
    registry = load_all()
    out: dict[str, dict[str, Any]] = {}
    n = side["n"]
    for name, values in side["per_bucket"].items():
        out[name] = summarize_bucket_metric(registry[name], values, n, info)
    for name, block in side["global"].items():
        out[name] = {**block, "headline": block["value"]}
    if not is_human:
        buckets = sorted(info)
        overall = _tradeoff(side["per_bucket"], buckets)
        groups = {group: {key: _tradeoff(side["per_bucket"], [b for b in buckets if keep(b)])
                          for key, keep in selectors.items()} for group, selectors in _groups(info).items()}
        for name in ("hypervolume", "aggregate"):
            block: dict[str, Any] = {"value": overall[name], "headline": overall[name]}
            for group, by_key in groups.items():
                block[group] = {key: {"value": res[name], "headline": res[name]} for key, res in by_key.items()}
            if name == "hypervolume":
                block["frontier"] = overall["frontier"]
            out[name] = block
    return out


def build_metrics_block(model: Mapping[str, Any], ceiling: Mapping[str, Any] | None,
                        info: BucketInfo) -> dict[str, dict[str, Any]]:
    """For every registered metric with a value: spec fields, the model summary and (where defined) the
    human-vs-human ceiling summary."""
    registry = load_all()
    model_summary = summarize_side(model, info, is_human=False)
    ceiling_summary = summarize_side(ceiling, info, is_human=True) if ceiling is not None else {}
    block: dict[str, dict[str, Any]] = {}
    for name, spec in registry.items():
        if name not in model_summary:
            continue
        block[name] = {"family": spec.family, "direction": spec.direction, "scope": spec.scope,
                       "headline_aggregate": spec.headline, "model": model_summary[name],
                       "ceiling": ceiling_summary.get(name) if spec.ceiling else None}
    return block
