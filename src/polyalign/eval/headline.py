"""The headline numbers of an evaluation, per view (context / oracle), with bootstrap confidence intervals.

For one side (a method's responses, the held-out humans, or the same-prompt humans) and one view, every
headline metric is computed per group from per-item quantities, then aggregated over groups (overall, per
language, per track).

Confidence intervals are normal intervals, value ± 1.96 · SE, with SE the standard deviation of the aggregate
over B bootstrap draws of the items within each group (percentile intervals would not cover the value for the
distances, which resampling with replacement biases upward). The draws depend only on the suite, the view, the
group and `bootstrap_seed`, so every method of a suite gets the same draws and two methods' replicates can be
differenced draw by draw (a paired bootstrap, polyalign.eval.significance).

Each metric computes itself from a polyalign.eval.group.Group through the score function it registered
(polyalign.eval.registry); what a draw recomputes, and what it keeps fixed (conditional on the pool and on
fitted models):
* feature_gap, length_w1_norm, length_bin_tv, c_mauve_shared: recomputed from the resampled responses against
  the fixed pool (the quantization is fixed);
* c2st_acc: the out-of-fold correctness of each response (classifiers fit once), resampled; the pool side's
  correctness is kept at its mean;
* coverage_joint, prompt_auc, f1, chrf: per-item values, resampled.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from . import conditional
from .group import Group, Side
from .registry import MetricSpec, headline_metrics, load_all
from .suite import Suite
from .views import View

HEADLINE_METRICS = headline_metrics()  # every metric registered with resample=True
BOOTSTRAP_DRAWS = 200
CI_LEVEL = 0.95


# -- the human reference of a suite (method-independent; cached with the human side) ----------------------------


@dataclass
class GroupReference:
    """The pool side of one group."""

    pool_rows: np.ndarray
    bins: np.ndarray    # length bin of each pool response
    cells: np.ndarray   # shared-quantization cell of each pool response


@dataclass
class Reference:
    """Everything the headline metrics compare against, for every view."""

    quantizer: conditional.SharedQuantizer
    prompt_space: conditional.PromptSpace
    input_vectors: Any                      # sparse rows, one per suite item (context + prompt)
    n_bins: int
    groups: dict[str, dict[str, GroupReference]] = field(default_factory=dict)


def prepare_reference(suite: Suite, pool_embeddings: np.ndarray, pool_lengths: np.ndarray, *, seed: int = 0,
                      n_clusters: int | None = None) -> Reference:
    """Fit the shared quantization (`n_clusters` cells, default conditional.SHARED_CLUSTERS) and the prompt
    space on the pool; index the pool of every group."""
    cells = n_clusters or conditional.SHARED_CLUSTERS
    quantizer = conditional.SharedQuantizer(cells, seed=seed).fit(pool_embeddings)
    pool_cells = quantizer.assign(pool_embeddings)
    space = conditional.PromptSpace().fit([conditional.item_input(r) for r in suite.pool],
                                          [r.response for r in suite.pool])
    pool_bins = conditional.bin_index(pool_lengths, suite.length_edges)
    ref = Reference(quantizer=quantizer, prompt_space=space,
                    input_vectors=space.embed([conditional.item_input(r) for r in suite.items]),
                    n_bins=len(suite.length_edges) + 1)
    for name in ("context", "oracle"):
        view = suite.view(name)
        ref.groups[name] = {}
        for group in view.groups:
            rows = np.asarray(view.pool[group], dtype=int)
            ref.groups[name][group] = GroupReference(pool_rows=rows, bins=pool_bins[rows], cells=pool_cells[rows])
    return ref


# -- one side, one view ------------------------------------------------------------------------------------


def _reason(spec: MetricSpec, n: int, pool: int, side: Side) -> str | None:
    """Why a metric has no value in a group (None: it has one)."""
    if spec.family == "utility" and not side.with_utility:
        return "no utility for the gold response against itself"
    if n < spec.min_items:
        return f"{n} response(s) scored, fewer than the {spec.min_items} this metric needs"
    if pool < spec.min_pool:
        return f"human pool of {pool}, fewer than {spec.min_pool}"
    return None


def bootstrap_draws(view: View, group: str, draws: int, bootstrap_seed: int) -> np.ndarray:
    """[draws, n] positions into the group's item rows, resampled with replacement; the same for every method."""
    n = len(view.items[group])
    rng = np.random.default_rng([bootstrap_seed, zlib.crc32(f"{view.name}|{group}".encode())])
    return rng.integers(0, n, size=(draws, n))


def slices(view: View) -> dict[str, list[str]]:
    """'overall', 'by_language/<l>' and 'by_track/<t>' → the view's groups in each."""
    out = {"overall": list(view.groups)}
    for field_name, prefix in (("language", "by_language"), ("track", "by_track")):
        for value in sorted({view.info[g][field_name] for g in view.groups}):
            out[f"{prefix}/{value}"] = [g for g in view.groups if view.info[g][field_name] == value]
    return out


def _aggregate(values: np.ndarray, how: str) -> float:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan")
    return float(np.median(finite) if how == "median" else finite.mean())


def score_view(suite: Suite, ref: Reference, view_name: str, side: Side, *, human: Any, seed: int = 0,
               draws: int = BOOTSTRAP_DRAWS, bootstrap_seed: int = 0,
               metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-group values with n/a reasons, aggregates per slice with bootstrap CIs, and the replicates of every
    headline metric (registered with resample=True) of one side in one view."""
    registry = load_all()
    specs = [registry[m] for m in (metrics or HEADLINE_METRICS)]
    view = suite.view(view_name)
    groups: dict[str, Any] = {}
    point: dict[str, dict[str, float]] = {s.name: {} for s in specs}
    reps: dict[str, dict[str, np.ndarray]] = {s.name: {} for s in specs}
    for name in view.groups:
        rows = np.array([i for i in view.items[name] if side.present[i]], dtype=int)
        group = Group(suite=suite, view=view_name, name=name, rows=rows, pool_rows=np.asarray(view.pool[name]),
                      side=side, human=human, seed=seed)
        position = np.full(len(view.items[name]), -1)
        position[[k for k, i in enumerate(view.items[name]) if side.present[i]]] = np.arange(len(rows))
        takes = [position[d][position[d] >= 0] for d in bootstrap_draws(view, name, draws, bootstrap_seed)]
        kept, spread, reasons = {}, {}, {}
        for spec in specs:
            reason = _reason(spec, len(rows), len(group.pool_rows), side)
            value = spec.score(group, group.all) if reason is None else float("nan")
            if reason is None and not np.isfinite(value):
                reason = "not computable (degenerate sample)"
            if reason is not None:
                reasons[spec.name] = reason
                continue
            draws_of = np.array([spec.score(group, take) for take in takes], dtype=float)
            finite = draws_of[np.isfinite(draws_of)]
            kept[spec.name] = point[spec.name][name] = float(value)
            spread[spec.name] = float(finite.std(ddof=1)) if len(finite) > 1 else None
            reps[spec.name][name] = draws_of
        groups[name] = {**view.info[name], "n": len(rows), "n_items": len(view.items[name]),
                        "n_pool": len(group.pool_rows), "values": kept, "se": spread, "na": reasons}
    summary, replicates = _summaries(view, specs, point, reps, draws)
    return {"view": view_name, "label": view.label, "groups": groups, "summary": summary,
            "replicates": replicates, "draws": draws, "bootstrap_seed": bootstrap_seed}


def _summaries(view: View, specs: Sequence[MetricSpec], point: dict[str, dict[str, float]],
               reps: dict[str, dict[str, np.ndarray]], draws: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per metric and slice: the aggregate over groups, its bootstrap SE and normal CI; and the replicates."""
    z = float(norm.ppf((1 + CI_LEVEL) / 2))
    summary: dict[str, Any] = {}
    replicates: dict[str, Any] = {}
    for spec in specs:
        m = spec.name
        how = "median" if spec.headline == "median" else "macro"
        summary[m], replicates[m] = {}, {}
        for name, members in slices(view).items():
            have = [g for g in members if g in point[m]]
            block = {"value": None, "ci": None, "n_groups": len(have), "n_na": len(members) - len(have),
                     "aggregate": how}
            if have:
                block["value"] = _aggregate(np.array([point[m][g] for g in have]), how)
                rep = np.array([_aggregate(np.array([reps[m][g][b] for g in have]), how) for b in range(draws)])
                finite = rep[np.isfinite(rep)]
                if len(finite) > 1:
                    block["se"] = float(finite.std(ddof=1))
                    block["ci"] = [block["value"] - z * block["se"], block["value"] + z * block["se"]]
                replicates[m][name] = [round(float(v), 6) if np.isfinite(v) else None for v in rep]
            summary[m][name] = block
    return summary, replicates
