"""The evaluation suite: a fixed, versioned, bucket-stratified set of test items plus each bucket's human
reference pool, so that every method is scored on the very same items against the very same humans.

Items and pools are drawn per *context group* (`context_key`, default language|track|family: what is known
before the response exists), uniformly inside each group, so that the length mix of both follows the data and
the held-out humans are an attainable ceiling for a method that cannot see the gold length bin.

Layout of a suite directory (self-contained; nothing else is read at scoring time):

    items.jsonl            test Records, at most `cap_per_bucket` per context group (seeded sample)
    pool.jsonl             train Records, at most `ref_pool` per context group (seeded sample): the human
                           reference pool
    features/items.npy     bilingual linguistic features of the items' gold responses (held-out humans)
    features/pool.npy      the same features of the pool's responses
    manifest.json          config, inputs, the suite version (hash of items and pool), per-bucket counts,
                           feature names, length-bin edges, dropped buckets and why
    cache/                 human-side scores and embeddings, filled by the first evaluation
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.schema import Record
from ..data.stratify import sample_stratum
from ..errors import InputError
from ..io import atomic_path, iter_jsonl, make_manifest, read_json, sha256_file, sha256_json, write_json
from ..text import DEFAULT_LENGTH_EDGES, DEFAULT_LENGTH_LABELS
from .views import DEFAULT_CONTEXT_KEY, View, context_id, make_view, validate_context_key
from ..data.features import FEATURE_NAMES, feature_matrix
from ..data.build import load_records

FeatureFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]
MIN_POOL = 20  # a bucket whose train pool is smaller cannot be scored; its items are dropped (and reported)


def default_feature_fn() -> tuple[FeatureFn, list[str]]:
    """The data layer's feature extractor and its feature names."""
    return feature_matrix, list(FEATURE_NAMES)


def features_signature(names: Sequence[str]) -> str:
    """A short hash of the feature names (a suite built with other features must be rebuilt)."""
    return sha256_json(list(names))[:16]


def suite_version(items: Sequence[Record], pool: Sequence[Record]) -> str:
    """A short content hash of the items and the pool (ids, buckets, prompts and responses)."""
    def key(r: Record) -> list[str]:
        return [r.id, r.bucket_id, r.language, r.prompt, r.response]

    return sha256_json({"items": [key(r) for r in items], "pool": [key(r) for r in pool]})[:16]


@dataclass
class Suite:
    """A loaded suite directory."""

    path: Path
    items: list[Record]
    pool: list[Record]
    item_features: np.ndarray
    pool_features: np.ndarray
    feature_names: list[str]
    manifest: dict[str, Any]
    version: str
    length_edges: tuple[int, ...] = DEFAULT_LENGTH_EDGES
    length_labels: tuple[str, ...] = DEFAULT_LENGTH_LABELS
    context_key: tuple[str, ...] = DEFAULT_CONTEXT_KEY
    split: str = "test"
    _item_index: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _pool_index: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _views: dict[str, View] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for i, r in enumerate(self.items):
            self._item_index.setdefault(r.bucket_id, []).append(i)
        for i, r in enumerate(self.pool):
            self._pool_index.setdefault(r.bucket_id, []).append(i)

    @property
    def buckets(self) -> list[str]:
        """Bucket ids with items, sorted."""
        return sorted(self._item_index)

    def item_rows(self, bucket: str) -> list[int]:
        """Indices into `items` of a bucket."""
        return self._item_index.get(bucket, [])

    def pool_rows(self, bucket: str) -> list[int]:
        """Indices into `pool` of a bucket."""
        return self._pool_index.get(bucket, [])

    def bucket_info(self, bucket: str) -> dict[str, str]:
        """language, track and family of a bucket (from its first item)."""
        r = self.items[self.item_rows(bucket)[0]]
        return {"language": r.language, "track": r.track, "family": r.family}

    def view(self, name: str) -> View:
        """The `context` or `oracle` grouping of items and pool (polyalign.eval.views)."""
        if name not in self._views:
            self._views[name] = make_view(name, self.items, self.pool, self.context_key)
        return self._views[name]


def select_suite(test: Sequence[Record], train: Sequence[Record], *, cap_per_bucket: int, ref_pool: int,
                 seed: int, min_pool: int = MIN_POOL,
                 context_key: Sequence[str] = DEFAULT_CONTEXT_KEY) -> tuple[list[Record], list[Record], dict, dict]:
    """Seeded uniform samples per context group (`context_key`): (items, pool, per-group counts, dropped groups
    with the reason). Inside a group the length mix is the data's own."""
    if cap_per_bucket < 1 or ref_pool < 1:
        raise ValueError("cap_per_bucket and ref_pool must be positive")
    key = validate_context_key(context_key)
    by_test: dict[str, list[Record]] = defaultdict(list)
    by_train: dict[str, list[Record]] = defaultdict(list)
    for r in test:
        by_test[context_id(r, key)].append(r)
    for r in train:
        by_train[context_id(r, key)].append(r)
    items, pool, counts, dropped = [], [], {}, {}
    for group in sorted(by_test):
        available = by_train.get(group, [])
        if len(available) < min_pool:
            dropped[group] = {"test": len(by_test[group]), "train": len(available),
                              "reason": f"fewer than {min_pool} train responses for the reference pool"}
            continue
        chosen = sorted(sample_stratum(by_test[group], cap_per_bucket, f"{seed}|items|{group}"), key=lambda r: r.id)
        refs = sorted(sample_stratum(available, ref_pool, f"{seed}|pool|{group}"), key=lambda r: r.id)
        items += chosen
        pool += refs
        first = chosen[0]
        counts[group] = {"items": len(chosen), "pool": len(refs), "test_available": len(by_test[group]),
                         "train_available": len(available), "language": first.language, "track": first.track,
                         "family": first.family,
                         "items_by_bucket": dict(sorted(Counter(r.bucket_id for r in chosen).items())),
                         "items_with_alternatives": sum(1 for r in chosen if same_prompt_human(r) is not None)}
    return items, pool, counts, dropped


def same_prompt_human(record: Record) -> str | None:
    """Another human's reply to the record's prompt (the best-ranked alternative), or None."""
    ranked = sorted((a for a in record.alternatives if isinstance(a.get("content"), str)
                     and a["content"].strip() and a["content"] != record.response),
                    key=lambda a: (a.get("rank") is None, a.get("rank") if a.get("rank") is not None else 0))
    return ranked[0]["content"] if ranked else None


def write_suite(out_dir: str | Path, items: Sequence[Record], pool: Sequence[Record], *,
                feature_fn: FeatureFn | None = None, feature_names: Sequence[str] | None = None,
                config: dict[str, Any] | None = None, inputs: dict[str, str] | None = None,
                counts: dict | None = None, dropped: dict | None = None,
                length_edges: Sequence[int] = DEFAULT_LENGTH_EDGES,
                length_labels: Sequence[str] = DEFAULT_LENGTH_LABELS, seed: int = 0,
                started: float | None = None, context_key: Sequence[str] = DEFAULT_CONTEXT_KEY) -> Path:
    """Write a suite directory atomically (items, pool, their features, manifest); return its path."""
    if feature_fn is None:
        feature_fn, feature_names = default_feature_fn()
    if feature_names is None:
        raise ValueError("feature_names are required with a custom feature_fn")
    items, pool = list(items), list(pool)
    if not items:
        raise InputError("no items to put in the suite (is the test or val split empty?)")
    item_features = np.asarray(feature_fn([r.response for r in items], [r.language for r in items]), float)
    pool_features = np.asarray(feature_fn([r.response for r in pool], [r.language for r in pool]), float)
    version = suite_version(items, pool)
    with atomic_path(out_dir) as tmp:
        (tmp / "features").mkdir(parents=True)
        for name, rows in (("items", items), ("pool", pool)):
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        np.save(tmp / "features" / "items.npy", item_features)
        np.save(tmp / "features" / "pool.npy", pool_features)
        manifest = make_manifest(stage="suite", config=config or {}, inputs=inputs or {}, seed=seed,
                                 started=started, extra={
                                     "suite_version": version, "n_items": len(items), "n_pool": len(pool),
                                     "context_key": list(validate_context_key(context_key)),
                                     "groups": counts or {}, "dropped_groups": dropped or {},
                                     "buckets": dict(sorted(Counter(r.bucket_id for r in items).items())),
                                     "feature_names": list(feature_names),
                                     "features_signature": features_signature(feature_names),
                                     "length_edges": list(length_edges), "length_labels": list(length_labels),
                                     "files": {"items.jsonl": sha256_file(tmp / "items.jsonl"),
                                               "pool.jsonl": sha256_file(tmp / "pool.jsonl")}})
        write_json(tmp / "manifest.json", manifest)
    return Path(out_dir)


def _length_bins(data_manifest: dict[str, Any]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Length-bin edges and labels recorded by `data build` (defaults when absent)."""
    def find(obj: Any, key: str) -> Any:
        if isinstance(obj, dict):
            if key in obj:
                return obj[key]
            for value in obj.values():
                found = find(value, key)
                if found is not None:
                    return found
        return None

    edges = find(data_manifest, "length_edges") or find(data_manifest, "edges")
    labels = find(data_manifest, "length_labels") or find(data_manifest, "labels")
    if edges and labels and len(labels) == len(edges) + 1:
        return tuple(int(e) for e in edges), tuple(str(lab) for lab in labels)
    return DEFAULT_LENGTH_EDGES, DEFAULT_LENGTH_LABELS


def build_suite(data_dir: str | Path, out_dir: str | Path, *, cap_per_bucket: int = 50, seed: int = 0,
                ref_pool: int = 300, min_pool: int = MIN_POOL, feature_fn: FeatureFn | None = None,
                feature_names: Sequence[str] | None = None, context_key: Sequence[str] = DEFAULT_CONTEXT_KEY,
                split: str = "test") -> Path:
    """Build a suite from a `polyalign data build` directory: items from TEST (or `split`, e.g. val for choosing
    settings), reference pools from TRAIN, both drawn per context group."""
    started = time.time()
    data_dir = Path(data_dir)
    if not (data_dir / "records").is_dir():
        raise InputError("not a data directory (no records/; run `polyalign data build CONFIG --out DIR`)",
                         file=data_dir)
    key = validate_context_key(context_key)
    if split not in ("test", "val"):
        raise InputError(f"suite items come from the test or val split, not {split!r}", field="split")
    test = load_records(data_dir, split)
    train = load_records(data_dir, "train")
    items, pool, counts, dropped = select_suite(test, train, cap_per_bucket=cap_per_bucket, ref_pool=ref_pool,
                                                seed=seed, min_pool=min_pool, context_key=key)
    data_manifest = read_json(data_dir / "manifest.json") if (data_dir / "manifest.json").exists() else {}
    edges, labels = _length_bins(data_manifest)
    inputs = {"data_dir": str(data_dir)}
    for rel in ("manifest.json", f"records/{split}.jsonl", "records/train.jsonl"):
        if (data_dir / rel).exists():
            inputs[rel] = sha256_file(data_dir / rel)
    config = {"cap_per_bucket": cap_per_bucket, "ref_pool": ref_pool, "min_pool": min_pool, "seed": seed,
              "context_key": list(key), "split": split}
    return write_suite(out_dir, items, pool, feature_fn=feature_fn, feature_names=feature_names, config=config,
                       inputs=inputs, counts=counts, dropped=dropped, length_edges=edges, length_labels=labels,
                       seed=seed, started=started, context_key=key)


def _read_records(path: Path) -> list[Record]:
    return [Record.from_dict(obj, file=str(path), line=line) for line, obj in iter_jsonl(path)]


def load_suite(suite_dir: str | Path, *, feature_names: Sequence[str] | None = None) -> Suite:
    """Load and check a suite directory: files present, content matching its version hash, features matching
    the current extractor (`feature_names`, when given)."""
    suite_dir = Path(suite_dir)
    manifest_path = suite_dir / "manifest.json"
    if not manifest_path.exists():
        raise InputError("not an evaluation suite (no manifest.json; build one with `polyalign suite --data DIR "
                         "--out SUITE_DIR`)", file=suite_dir)
    manifest = read_json(manifest_path)
    if manifest.get("stage") != "suite":
        raise InputError(f"not an evaluation suite manifest (stage={manifest.get('stage')!r})", file=manifest_path)
    items = _read_records(suite_dir / "items.jsonl")
    pool = _read_records(suite_dir / "pool.jsonl")
    version = suite_version(items, pool)
    if version != manifest.get("suite_version"):
        raise InputError(f"suite content hash {version} does not match the manifest's suite_version "
                         f"{manifest.get('suite_version')} (files edited or mixed from another build: rebuild it)",
                         file=manifest_path, field="suite_version")
    item_features = np.load(suite_dir / "features" / "items.npy")
    pool_features = np.load(suite_dir / "features" / "pool.npy")
    names = list(manifest.get("feature_names", []))
    for label, matrix, rows in (("items", item_features, items), ("pool", pool_features, pool)):
        if matrix.shape != (len(rows), len(names)):
            raise InputError(f"features/{label}.npy has shape {matrix.shape}, expected ({len(rows)}, {len(names)})",
                             file=suite_dir / "features" / f"{label}.npy")
    if feature_names is not None and list(feature_names) != names:
        raise InputError("the suite was built with other linguistic features than the current extractor "
                         f"({features_signature(names)} vs {features_signature(feature_names)}); rebuild it with "
                         "`polyalign suite`", file=manifest_path, field="feature_names")
    return Suite(path=suite_dir, items=items, pool=pool, item_features=item_features, pool_features=pool_features,
                 feature_names=names, manifest=manifest, version=version,
                 length_edges=tuple(manifest.get("length_edges", DEFAULT_LENGTH_EDGES)),
                 length_labels=tuple(manifest.get("length_labels", DEFAULT_LENGTH_LABELS)),
                 context_key=validate_context_key(manifest.get("context_key", DEFAULT_CONTEXT_KEY)),
                 split=str(manifest.get("config", {}).get("split", "test")))
