"""The headline numbers of an evaluation, per view (context / oracle), with bootstrap confidence intervals.

For one side (a method's responses, the held-out humans, or the same-prompt humans) and one view, every
headline metric is computed per group from per-item quantities, then aggregated over groups (overall, per
language, per track).

Confidence intervals are normal intervals, value ± 1.96 · SE, with SE the standard deviation of the aggregate
over B bootstrap draws of the items within each group (percentile intervals would not cover the value for the
distances, which resampling with replacement biases upward). The draws depend only on the suite, the view, the
group and `bootstrap_seed`, so every method of a suite gets the same draws and two methods' replicates can be
differenced draw by draw (a paired bootstrap, polyalign.eval.significance).

What a draw recomputes, and what it keeps fixed (conditional on the pool and on fitted models):
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
from scipy.stats import norm, trim_mean, wasserstein_distance

from . import conditional, naturalness, utility
from .registry import load_all
from .suite import Suite
from .views import View

HEADLINE_METRICS = ("c2st_acc", "feature_gap", "coverage_joint", "c_mauve_shared", "length_w1_norm",
                    "length_bin_tv", "prompt_auc", "f1", "chrf")
UTILITY = ("f1", "chrf")
MIN_ITEMS = {"c2st_acc": naturalness.MIN_SIZE, "feature_gap": naturalness.MIN_SIZE,
             "coverage_joint": naturalness.MIN_SIZE, "c_mauve_shared": naturalness.MIN_SIZE,
             "length_w1_norm": naturalness.MIN_SIZE, "length_bin_tv": naturalness.MIN_SIZE, "prompt_auc": 5,
             "f1": 1, "chrf": 1}
BOOTSTRAP_DRAWS = 200
CI_LEVEL = 0.95


# -- the human reference of a suite (method-independent; cached with the human side) ----------------------------


@dataclass
class GroupReference:
    """The pool side of one group."""

    pool_rows: np.ndarray
    features: np.ndarray
    scaler: naturalness.FeatureScaler
    lengths: np.ndarray
    length_scale: float
    bins: np.ndarray
    cells: np.ndarray


@dataclass
class Reference:
    """Everything the headline metrics compare against, for every view."""

    quantizer: conditional.SharedQuantizer
    prompt_space: conditional.PromptSpace
    input_vectors: Any                      # sparse rows, one per suite item (context + prompt)
    n_bins: int
    groups: dict[str, dict[str, GroupReference]] = field(default_factory=dict)


def prepare_reference(suite: Suite, pool_embeddings: np.ndarray, pool_lengths: np.ndarray,
                      fallback_scale: np.ndarray, *, seed: int = 0, n_clusters: int | None = None) -> Reference:
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
            feats = suite.pool_features[rows]
            lengths = pool_lengths[rows]
            scale = float(naturalness.robust_scale(lengths[:, None])[0]) if len(rows) else 0.0
            ref.groups[name][group] = GroupReference(
                pool_rows=rows, features=feats,
                scaler=naturalness.FeatureScaler.fit(feats, fallback_scale) if len(rows) else None,
                lengths=lengths, length_scale=scale if scale > 0 else 1.0, bins=pool_bins[rows],
                cells=pool_cells[rows])
    return ref


# -- one side -------------------------------------------------------------------------------------------------


@dataclass
class Side:
    """A set of responses to the suite's items (None / not present where missing)."""

    texts: list[str]
    features: np.ndarray
    embeddings: np.ndarray
    lengths: np.ndarray
    present: np.ndarray
    with_utility: bool = True   # False for the held-out humans (the gold against itself)


@dataclass
class GroupStats:
    """Per-item quantities of one side in one group (rows = the group's present items, in suite order)."""

    rows: np.ndarray
    c2st_correct: np.ndarray | None
    c2st_pool: float
    inside: np.ndarray | None
    prompt_auc: np.ndarray
    f1: np.ndarray | None
    chrf: np.ndarray | None
    cells: np.ndarray
    bins: np.ndarray


def group_stats(suite: Suite, ref: Reference, view: View, group: str, side: Side, seed: int) -> GroupStats:
    """The per-item quantities of `side` in one group of `view`."""
    gref = ref.groups[view.name][group]
    rows = np.array([i for i in view.items[group] if side.present[i]], dtype=int)
    x = side.features[rows]
    c2st = naturalness.c2st_predictions(x, gref.features, gref.scaler, seed=seed) \
        if gref.scaler is not None and len(rows) else None
    inside = naturalness.joint_inside(x, gref.features, gref.scaler, seed=seed) \
        if gref.scaler is not None and len(rows) else None
    auc = conditional.prompt_auc_items(ref.prompt_space.embed([side.texts[i] for i in rows]),
                                       ref.input_vectors[rows]) if len(rows) else np.zeros(0)
    f1 = chrf = None
    if side.with_utility and len(rows):
        preds, golds = [side.texts[i] for i in rows], [suite.items[i].response for i in rows]
        f1 = utility.utility_item_scores(preds, golds, [suite.items[i].language for i in rows])["f1"]
        chrf = utility.chrf_item_scores(preds, golds)
    return GroupStats(rows=rows, c2st_correct=c2st[1] if c2st else None, c2st_pool=c2st[2] if c2st else np.nan,
                      inside=inside, prompt_auc=auc, f1=f1, chrf=chrf,
                      cells=ref.quantizer.assign(side.embeddings[rows]),
                      bins=conditional.bin_index(side.lengths[rows], suite.length_edges))


def _mean(values: np.ndarray | None, take: np.ndarray) -> float:
    if values is None or len(take) == 0:
        return float("nan")
    picked = values[take]
    picked = picked[np.isfinite(picked)]
    return float(picked.mean()) if len(picked) else float("nan")


def group_values(stats: GroupStats, gref: GroupReference, side: Side, n_bins: int, n_cells: int,
                 take: np.ndarray) -> dict[str, float]:
    """Every headline metric of one group, computed on the items at positions `take` of `stats.rows`."""
    rows = stats.rows[take]
    out = {"c2st_acc": 0.5 * (_mean(stats.c2st_correct, take) + stats.c2st_pool)
           if stats.c2st_correct is not None else float("nan"),
           "coverage_joint": _mean(stats.inside, take), "prompt_auc": _mean(stats.prompt_auc, take),
           "f1": _mean(stats.f1, take), "chrf": _mean(stats.chrf, take)}
    if len(rows) and len(gref.pool_rows):
        w = naturalness.column_wasserstein(side.features[rows], gref.features) / gref.scaler.scale
        out["feature_gap"] = float(trim_mean(w[gref.scaler.used], naturalness.GAP_TRIM)) \
            if gref.scaler.used.any() else float("nan")
        out["length_w1_norm"] = float(wasserstein_distance(side.lengths[rows], gref.lengths)) / gref.length_scale
        out["length_bin_tv"] = conditional.length_bin_tv(stats.bins[take], gref.bins, n_bins)
        out["c_mauve_shared"] = conditional.mauve_from_cells(gref.cells, stats.cells[take], n_cells)
    else:
        out.update(feature_gap=float("nan"), length_w1_norm=float("nan"), length_bin_tv=float("nan"),
                   c_mauve_shared=float("nan"))
    return out


def _reasons(n: int, pool: int, side: Side, metrics: Sequence[str]) -> dict[str, str]:
    """Why a metric has no value in a group ('' = it has one)."""
    out = {}
    for m in metrics:
        need = MIN_ITEMS[m]
        if m in UTILITY and not side.with_utility:
            out[m] = "no utility for the gold response against itself"
        elif n < need:
            out[m] = f"{n} response(s) scored, fewer than the {need} this metric needs"
        elif m not in UTILITY and m != "prompt_auc" and pool < 2 * naturalness.MIN_SIZE:
            out[m] = f"human pool of {pool}, fewer than {2 * naturalness.MIN_SIZE}"
    return out


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


def score_view(suite: Suite, ref: Reference, view_name: str, side: Side, *, seed: int = 0,
               draws: int = BOOTSTRAP_DRAWS, bootstrap_seed: int = 0,
               metrics: Sequence[str] = HEADLINE_METRICS) -> dict[str, Any]:
    """Per-group values with n/a reasons, aggregates per slice with bootstrap CIs, and the replicates."""
    registry = load_all()
    view = suite.view(view_name)
    n_cells = ref.quantizer.size
    groups: dict[str, Any] = {}
    point = {m: {} for m in metrics}
    reps = {m: {} for m in metrics}
    for group in view.groups:
        gref = ref.groups[view_name][group]
        stats = group_stats(suite, ref, view, group, side, seed)
        n = len(stats.rows)
        reasons = _reasons(n, len(gref.pool_rows), side, metrics)
        values = group_values(stats, gref, side, ref.n_bins, n_cells, np.arange(n)) if n else {}
        position = np.full(len(view.items[group]), -1)
        present_positions = [k for k, i in enumerate(view.items[group]) if side.present[i]]
        position[present_positions] = np.arange(n)
        group_reps = {m: np.full(draws, np.nan) for m in metrics}
        for b, draw in enumerate(bootstrap_draws(view, group, draws, bootstrap_seed) if n else []):
            take = position[draw]
            take = take[take >= 0]
            for m, v in group_values(stats, gref, side, ref.n_bins, n_cells, take).items():
                if m in group_reps:
                    group_reps[m][b] = v
        kept, spread = {}, {}
        for m in metrics:
            v = values.get(m, float("nan"))
            if m not in reasons and not np.isfinite(v):
                reasons[m] = "not computable (degenerate sample)"
            if m in reasons:
                continue
            kept[m] = float(v)
            finite = group_reps[m][np.isfinite(group_reps[m])]
            spread[m] = float(finite.std(ddof=1)) if len(finite) > 1 else None
            point[m][group] = float(v)
            reps[m][group] = group_reps[m]
        groups[group] = {**view.info[group], "n": n, "n_items": len(view.items[group]),
                         "n_pool": len(gref.pool_rows), "values": kept, "se": spread, "na": reasons}
    summary: dict[str, Any] = {}
    replicates: dict[str, Any] = {}
    z = float(norm.ppf((1 + CI_LEVEL) / 2))
    for m in metrics:
        how = registry[m].headline if registry[m].headline in ("median",) else "macro"
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
    return {"view": view_name, "label": view.label, "groups": groups, "summary": summary,
            "replicates": replicates, "draws": draws, "bootstrap_seed": bootstrap_seed}

