"""Scoring one side — a model's responses, or the held-out humans (the ceiling) — bucket by bucket against the
suite's human reference pools, with the human side (embeddings, coupling statistics, ceiling) cached."""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, sha256_json
from ..text import count_length_tokens
from . import conditional, faithfulness, headline, multiturn, naturalness
from .group import Group, Side
from .registry import bucket_metrics
from .featurizers import Featurizer
from .suite import Suite, default_feature_fn, same_prompt_human

CACHE_VERSION = 3
Advance = Callable[[str], None]



@dataclass
class HumanSide:
    """Everything about the human side of a suite that does not depend on the method being scored."""

    key: str
    featurizer: Featurizer
    featurizer_spec: dict[str, Any]
    pool_embeddings: np.ndarray
    item_embeddings: np.ndarray
    pool_lengths: np.ndarray
    item_lengths: np.ndarray
    fallback_scale: np.ndarray
    coupling_space: multiturn.CouplingSpace | None
    pool_coupling: dict[str, np.ndarray]
    item_coupling: dict[str, np.ndarray]
    coupling_fallback: multiturn.CouplingScales | None
    ceiling: dict[str, Any] | None = None
    reference: headline.Reference | None = None
    # headline views of the method-independent sides: {"ceiling" | "same_prompt" | "ceiling_same_prompt_items":
    # {view: score_view(...)}}
    human_views: dict[str, dict[str, Any]] | None = None
    same_prompt_rows: np.ndarray | None = None


def human_cache_key(suite: Suite, featurizer: Featurizer, seed: int) -> str:
    """Cache key of the human side: suite version, featurizer spec, seed and the cache format."""
    return sha256_json({"suite": suite.version, "featurizer": featurizer.spec(), "seed": seed,
                        "cache": CACHE_VERSION, "cells": conditional.SHARED_CLUSTERS,
                        "draws": headline.BOOTSTRAP_DRAWS})[:16]


def _multi_rows(records: Sequence) -> list[int]:
    return [i for i, r in enumerate(records) if r.track == "multi"]


def _coupling_for(records: Sequence, responses: Sequence[str], space: multiturn.CouplingSpace | None,
                  rows: Sequence[int]) -> dict[str, np.ndarray]:
    """Coupling statistics for `rows` of `records` with the given responses (arrays over all records)."""
    n = len(records)
    out = {k: np.zeros(n) for k in multiturn.CONTINUOUS}
    out["transition"] = np.zeros(n, dtype=int)
    if space is None or not rows:
        return out
    stats = multiturn.coupling_stats([records[i].prompt for i in rows], [records[i].history for i in rows],
                                     [responses[i] for i in rows], space)
    for k, values in stats.items():
        out[k][list(rows)] = values
    return out


def prepare_human_side(suite: Suite, featurizer: Featurizer, *, seed: int = 0, cache_dir: Path | None = None,
                       advance: Advance | None = None, timings: Timings | None = None,
                       feature_fn: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None) -> HumanSide:
    """Fit the featurizer on the pool, embed pool and items, compute coupling statistics and the ceiling; read
    all of it from `cache_dir` when a matching cache exists, and write it there otherwise."""
    key = human_cache_key(suite, featurizer, seed)
    cache_file = cache_dir / f"human-{key}.pkl" if cache_dir is not None else None
    if cache_file is not None and cache_file.exists():
        try:
            with open(cache_file, "rb") as fh:
                human = pickle.load(fh)
            if isinstance(human, HumanSide) and human.key == key and human.ceiling is not None \
                    and human.human_views is not None:
                return human
        except Exception:  # a corrupt or stale cache is recomputed, never trusted
            pass
    timed = timings if timings is not None else Timings()
    if feature_fn is None:
        feature_fn, _ = default_feature_fn()
    pool_texts = [r.response for r in suite.pool]
    item_texts = [r.response for r in suite.items]
    with timed("featurizer fit + embed (pool, items)"):
        featurizer.fit(pool_texts)
        pool_embeddings, item_embeddings = featurizer.transform(pool_texts), featurizer.transform(item_texts)
    with timed("coupling space + stats (pool, items)"):
        multi_pool = _multi_rows(suite.pool)
        space = None
        if multi_pool:
            space = multiturn.CouplingSpace(seed=seed).fit([suite.pool[i].prompt for i in multi_pool],
                                                            [suite.pool[i].response for i in multi_pool])
        pool_coupling = _coupling_for(suite.pool, pool_texts, space, multi_pool)
        item_coupling = _coupling_for(suite.items, item_texts, space, _multi_rows(suite.items))
    human = HumanSide(
        key=key, featurizer=featurizer, featurizer_spec=featurizer.spec(),
        pool_embeddings=pool_embeddings, item_embeddings=item_embeddings,
        pool_lengths=np.array([count_length_tokens(t) for t in pool_texts], dtype=float),
        item_lengths=np.array([count_length_tokens(t) for t in item_texts], dtype=float),
        fallback_scale=naturalness.robust_scale(suite.pool_features) if len(suite.pool) else
        np.zeros(len(suite.feature_names)),
        coupling_space=space, pool_coupling=pool_coupling, item_coupling=item_coupling,
        coupling_fallback=multiturn.CouplingScales.fit({k: v[multi_pool] for k, v in pool_coupling.items()})
        if multi_pool else None)
    with timed("shared quantization + prompt space (pool)"):
        human.reference = headline.prepare_reference(suite, pool_embeddings, human.pool_lengths, seed=seed)
    human.ceiling = score_side(suite, human, texts=item_texts, features=suite.item_features,
                               embeddings=human.item_embeddings, lengths=human.item_lengths,
                               coupling=human.item_coupling, seed=seed, is_human=True, advance=advance,
                               timings=timed)
    with timed("headline views (held-out and same-prompt humans, bootstrap)"):
        human.human_views = human_headline_views(suite, human, feature_fn, seed=seed)
    if cache_file is not None:
        try:
            with atomic_path(cache_file) as tmp, open(tmp, "wb") as fh:
                pickle.dump(human, fh)
        except OSError:
            pass  # a read-only suite: scoring still works, only slower next time
    return human


def model_side_inputs(human: HumanSide, suite: Suite, texts: Sequence[str | None],
                      feature_fn: Callable[[Sequence[str], Sequence[str]], np.ndarray],
                      timings: Timings | None = None) -> dict[str, Any]:
    """Features, embeddings, lengths and coupling statistics of a method's responses (missing → empty text,
    excluded later by the `present` mask)."""
    timed = timings if timings is not None else Timings()
    filled = [t if t is not None else "" for t in texts]
    present = [i for i, t in enumerate(texts) if t is not None]
    features = np.zeros((len(filled), len(suite.feature_names)))
    embeddings = np.zeros((len(filled), human.item_embeddings.shape[1]), dtype=np.float32)
    if present:
        with timed("linguistic features (model)"):
            features[present] = np.asarray(feature_fn([filled[i] for i in present],
                                                      [suite.items[i].language for i in present]), float)
        with timed("featurizer embed (model)"):
            embeddings[present] = human.featurizer.transform([filled[i] for i in present])
    with timed("coupling stats (model)"):
        multi = [i for i in _multi_rows(suite.items) if texts[i] is not None]
        coupling = _coupling_for(suite.items, filled, human.coupling_space, multi)
    return {"texts": filled, "features": features, "embeddings": embeddings,
            "lengths": np.array([count_length_tokens(t) for t in filled], dtype=float),
            "coupling": coupling, "present": np.array([t is not None for t in texts])}


def bootstrap_seed(suite: Suite) -> int:
    """The seed of the bootstrap draws: the suite's own, so every method and training seed gets the same draws."""
    return int((suite.manifest.get("config") or {}).get("seed", 0))


def _views_of(suite: Suite, human: HumanSide, side: Side, seed: int) -> dict[str, Any]:
    return {view: headline.score_view(suite, human.reference, view, side, human=human, seed=seed,
                                      bootstrap_seed=bootstrap_seed(suite)) for view in ("context", "oracle")}


def human_headline_views(suite: Suite, human: HumanSide, feature_fn: Callable[[Sequence[str], Sequence[str]],
                         np.ndarray], *, seed: int) -> dict[str, dict[str, Any]]:
    """Headline views of the held-out humans (all items), and — on the items that have another human reply to
    the same prompt — of those same-prompt humans and of the held-out humans on the same items."""
    n = len(suite.items)
    everything = np.ones(n, dtype=bool)
    gold = Side(texts=[r.response for r in suite.items], features=suite.item_features,
                         embeddings=human.item_embeddings, lengths=human.item_lengths, present=everything,
                         with_utility=False)
    alternatives = [same_prompt_human(r) for r in suite.items]
    has_alt = np.array([a is not None for a in alternatives])
    human.same_prompt_rows = np.flatnonzero(has_alt)
    out = {"ceiling": _views_of(suite, human, gold, seed)}
    if has_alt.any():
        rows = list(human.same_prompt_rows)
        texts = [a or "" for a in alternatives]
        features = np.zeros_like(suite.item_features)
        features[rows] = np.asarray(feature_fn([texts[i] for i in rows], [suite.items[i].language for i in rows]))
        embeddings = np.zeros_like(human.item_embeddings)
        embeddings[rows] = human.featurizer.transform([texts[i] for i in rows])
        alt = Side(texts=texts, features=features, embeddings=embeddings,
                            lengths=np.array([count_length_tokens(t) for t in texts], dtype=float), present=has_alt)
        out["same_prompt"] = _views_of(suite, human, alt, seed)
        gold_subset = replace(gold, present=has_alt)
        out["ceiling_same_prompt_items"] = _views_of(suite, human, gold_subset, seed)
    return out


def model_headline_views(suite: Suite, human: HumanSide, inputs: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """Headline views of a method's responses: on all items, and on the items with a same-prompt human."""
    side = Side(texts=inputs["texts"], features=inputs["features"], embeddings=inputs["embeddings"],
                         lengths=inputs["lengths"], present=np.asarray(inputs["present"], dtype=bool))
    out = {"model": _views_of(suite, human, side, seed)}
    if human.same_prompt_rows is not None and len(human.same_prompt_rows):
        subset = np.zeros(len(suite.items), dtype=bool)
        subset[human.same_prompt_rows] = True
        out["model_same_prompt_items"] = _views_of(
            suite, human, replace(side, present=side.present & subset), seed)
    return out


GLOBAL_POOL_MULTIPLE = 5  # global MAUVE reference: up to 5 pool rows per scored item, same bucket mix


def _matched_pool_sample(suite: Suite, rows_by_bucket: dict[str, list[int]], seed: int) -> list[int]:
    """Pool rows with the same bucket mix as the scored items: k·n_b rows of each bucket's pool (seeded), with
    the largest k ≤ GLOBAL_POOL_MULTIPLE that every bucket's pool allows (at least 1)."""
    rng = np.random.default_rng(seed)
    ratios = [len(suite.pool_rows(b)) // len(rows) for b, rows in rows_by_bucket.items() if rows]
    k = max(1, min([GLOBAL_POOL_MULTIPLE, *ratios]))
    out: list[int] = []
    for bucket in sorted(rows_by_bucket):
        pool_rows = suite.pool_rows(bucket)
        size = min(k * len(rows_by_bucket[bucket]), len(pool_rows))
        out += [int(i) for i in rng.choice(pool_rows, size=size, replace=False)] if size else []
    return out


class Timings(dict):
    """Seconds spent per metric group, accumulated: ``with timings("c2st"): ...``."""

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[key] = self.get(key, 0.0) + time.perf_counter() - start


def score_side(suite: Suite, human: HumanSide, *, texts: Sequence[str], features: np.ndarray,
               embeddings: np.ndarray, lengths: np.ndarray, coupling: dict[str, np.ndarray], seed: int,
               is_human: bool, present: np.ndarray | None = None, advance: Advance | None = None,
               timings: Timings | None = None) -> dict[str, Any]:
    """Every registered per-bucket metric of one side against the pool, bucket by bucket (the oracle-length
    view), plus global MAUVE (overall, per language, per track).

    Returns {"per_bucket": {metric: {bucket: value}}, "n": {bucket: n_scored}, "global": {...}}."""
    timed = timings if timings is not None else Timings()
    present = np.ones(len(texts), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    side = Side(texts=texts, features=features, embeddings=embeddings, lengths=lengths, present=present,
                with_utility=not is_human, coupling=coupling)
    metrics = bucket_metrics()
    per_bucket: dict[str, dict[str, float]] = {m.name: {} for m in metrics}
    n_scored: dict[str, int] = {}
    rows_by_bucket: dict[str, list[int]] = {}
    view = suite.view("oracle")
    for bucket in view.groups:
        xi = [i for i in view.items[bucket] if present[i]]
        ri = view.pool[bucket]
        n_scored[bucket] = len(xi)
        if advance:
            advance(f"{'human' if is_human else 'model'} {bucket}")
        if not xi or len(ri) < 2:  # a bucket of a context group whose pool holds (almost) none of its length bin
            continue
        rows_by_bucket[bucket] = xi
        group = Group(suite=suite, view="oracle", name=bucket, rows=np.asarray(xi), pool_rows=np.asarray(ri),
                      side=side, human=human, seed=seed)
        for spec in metrics:
            with timed(spec.name):
                value = spec.score(group, group.all)
            if value is not None and np.isfinite(value):
                per_bucket[spec.name][bucket] = float(value)
    with timed("mauve (global, per language, per track)"):
        global_block = _global_mauve(suite, human, embeddings, rows_by_bucket, seed)
    return {"per_bucket": {k: v for k, v in per_bucket.items() if v}, "n": n_scored, "global": global_block}


def _global_mauve(suite: Suite, human: HumanSide, embeddings: np.ndarray, rows_by_bucket: dict[str, list[int]],
                  seed: int) -> dict[str, Any]:
    """MAUVE of all scored responses vs a bucket-matched pool sample, overall and per language / track."""
    def subset(keep: Callable[[dict[str, str]], bool]) -> float:
        chosen = {b: rows for b, rows in rows_by_bucket.items() if keep(suite.bucket_info(b))}
        xi = [i for rows in chosen.values() for i in rows]
        ri = _matched_pool_sample(suite, chosen, seed)
        if min(len(xi), len(ri)) < faithfulness.MAUVE_MIN_SIZE:
            return float("nan")
        return faithfulness.mauve_score(human.pool_embeddings[ri], embeddings[xi], seed=seed)

    infos = [suite.bucket_info(b) for b in rows_by_bucket]
    return {"mauve": {
        **_value(subset(lambda info: True)),
        "by_language": {lang: _value(subset(lambda info, lang=lang: info["language"] == lang))
                        for lang in sorted({i["language"] for i in infos})},
        "by_track": {track: _value(subset(lambda info, track=track: info["track"] == track))
                     for track in sorted({i["track"] for i in infos})}}}


def _value(v: float) -> dict[str, float | None]:
    v = float(v) if v is not None and np.isfinite(v) else None
    return {"value": v, "headline": v}
