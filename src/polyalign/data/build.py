"""`polyalign data build`: sources -> records per split, features, train-only references, bucket table, report
and manifest, written as one directory that only appears when everything succeeded (see docs/data.md)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..io import atomic_path, iter_jsonl, make_manifest, read_json, sha256_tree, write_json, write_jsonl
from ..progress import progress
from .formats import Filtered, Skip, error_reason, hf_label, read_source
from .buckets import apply_buckets, bucket_table, plan_buckets
from .dedup import deduplicate
from .normalize import normalize_conversation
from .schema import SPLITS, Record
from .sources import DataConfig, SourceConfig, is_local
from .splits import assign_splits, split_key

MAX_ERROR_EXAMPLES = 5
ID_COLUMNS = ("id", "bucket_id", "language")


# ----------------------------------------------------------------------------------------------- reading

def _new_source_stats() -> dict[str, Any]:
    return {"conversations": 0, "records": 0, "invalid": Counter(), "filtered": Counter(), "examples": []}


def collect_records(config: DataConfig, *, skip_invalid: bool,
                    on_item: Callable[[SourceConfig, int], None] | None = None
                    ) -> tuple[list[Record], dict[str, dict[str, Any]]]:
    """Read, normalize and validate every source. Strict: the first bad line raises an InputError naming file,
    line and field. skip_invalid: bad items are skipped and counted per (source, reason)."""
    records: list[Record] = []
    stats: dict[str, dict[str, Any]] = {}
    seen_ids: dict[str, str] = {}
    for source in config.sources:
        st = stats[source.name] = _new_source_stats()
        for item in read_source(source):
            if isinstance(item, Filtered):
                st["filtered"][item.reason] += 1
                continue
            try:
                if isinstance(item, InputError):
                    raise item
                recs = normalize_conversation(item, source, length_edges=config.length_edges,
                                              length_labels=config.length_labels)
                where = f"{item.file}:{item.line}" if item.line is not None else item.file
                for rec in recs:
                    first = seen_ids.get(rec.id)
                    if first is not None:
                        raise InputError(f"duplicate record id {rec.id!r} (first at {first})", file=item.file,
                                         line=item.line, field="id")
                for rec in recs:
                    seen_ids[rec.id] = where
            except Skip as skip:
                st["filtered"][skip.reason] += 1
                continue
            except InputError as exc:
                if not skip_invalid:
                    raise
                st["invalid"][error_reason(exc)] += 1
                if len(st["examples"]) < MAX_ERROR_EXAMPLES:
                    st["examples"].append(str(exc))
                continue
            st["conversations"] += 1
            st["records"] += len(recs)
            records.extend(recs)
            if on_item is not None:
                on_item(source, len(recs))
    for st in stats.values():
        st["invalid"] = dict(sorted(st["invalid"].items()))
        st["filtered"] = dict(sorted(st["filtered"].items()))
    return records, stats


def check_no_leakage(records: Sequence[Record]) -> None:
    """Raise if one conversation (or split group) has records in two splits (e.g. two sources sharing ids or a
    group_by value, one with a fixed split)."""
    checks = ((lambda r: r.conversation_id, "conversation", "conversation_id",
               "give the sources distinct conversation ids"),
              (split_key, "split group", "meta.split_group",
               "a source with a fixed split shares a group_by value (e.g. a passage) with another source; "
               "give both the same split or remove the shared items"))
    for key_of, what, field, fix in checks:
        split_of: dict[str, tuple[str, str]] = {}
        for r in records:
            prev = split_of.setdefault(key_of(r), (r.split, r.source))
            if prev[0] != r.split:
                raise InputError(f"{what} {key_of(r)!r} would be in {prev[0]} (source {prev[1]}) and {r.split} "
                                 f"(source {r.source}); {fix}", field=field)


def split_and_dedup(config: DataConfig, records: list[Record]) -> tuple[list[Record], dict[str, Any]]:
    """Assign every record its split (fixed per source, else hashed by conversation or group), check that no
    conversation or group spans two splits, and remove exact duplicates: (kept records, dedup report)."""
    fixed = {s.name: s.split for s in config.sources if s.split}
    assign_splits(records, config.seed, config.split_ratios.as_dict(), fixed)
    check_no_leakage(records)
    return deduplicate(records)


# ---------------------------------------------------------------------------------------------- features

def compute_features(records: Sequence[Record]) -> np.ndarray:
    """The feature matrix of the records' responses (one feature_matrix call)."""
    from .features import feature_matrix

    return feature_matrix([r.response for r in records], [r.language for r in records])


def _write_features(path: Path, records: Sequence[Record], matrix: np.ndarray, names: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"id": pa.array([r.id for r in records], pa.string()),
                               "bucket_id": pa.array([r.bucket_id for r in records], pa.string()),
                               "language": pa.array([r.language for r in records], pa.string())}
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(records), len(names))
    for j, name in enumerate(names):
        columns[name] = pa.array(matrix[:, j], pa.float64())
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _record_row(r: Record) -> dict[str, Any]:
    """A Record as a JSON-ready dict without deep copies (asdict is slow on long histories)."""
    return {name: getattr(r, name) for name in Record.__dataclass_fields__}


# ------------------------------------------------------------------------------------------------- build

def input_hashes(config: DataConfig) -> dict[str, str]:
    """sha256 of every local source (file or folder); hub datasets are named with their revision."""
    out = {}
    for s in config.sources:
        if s.format == "hf" and not is_local(s.path):
            out[s.name] = f"{hf_label(s)}@{s.hf.revision or 'unpinned'}"
        else:
            out[s.name] = sha256_tree(s.path)
    return out


def _count(records: Sequence[Record], field: str) -> dict[str, int]:
    return dict(sorted(Counter(getattr(r, field) for r in records).items()))


def build_dataset(config: DataConfig, out_dir: str | Path, *, skip_invalid: bool | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Build the data directory `out_dir` from `config` (source paths already resolved, see
    load_data_config) and return a summary. Nothing is written unless the whole build succeeds."""
    started = time.time()
    skip = config.skip_invalid if skip_invalid is None else skip_invalid
    out_dir = Path(out_dir)
    for s in config.sources:  # before any work: every file source must exist
        if s.format != "hf" and not Path(s.path).exists():
            raise ConfigError(f"source {s.name!r}: path not found: {s.path}")
    timings: dict[str, float] = {}

    with _Progress(progress, [s.name for s in config.sources]) as bar:
        t0 = time.time()
        records, source_stats = collect_records(config, skip_invalid=skip, on_item=bar.advance)
        timings["read_normalize_s"] = time.time() - t0
    if not records:
        raise InputError("no valid records in any source", field="sources")

    t0 = time.time()
    records, dedup_report = split_and_dedup(config, records)
    plan = plan_buckets(records, config.bucket_key, config.length_labels, config.min_bucket_size)
    apply_buckets(records, config.bucket_key, plan["merge_map"])
    table = bucket_table(records, plan, config.min_bucket_size)
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    timings["split_dedup_bucket_s"] = time.time() - t0

    t0 = time.time()
    from .features import FEATURE_NAMES
    from .references import build_references

    matrices = {s: compute_features(rs) if rs else np.zeros((0, len(FEATURE_NAMES))) for s, rs in by_split.items()}
    timings["features_s"] = time.time() - t0
    t0 = time.time()
    train = by_split["train"]
    references = build_references(matrices["train"], [r.bucket_id for r in train], [r.id for r in train],
                                  list(FEATURE_NAMES), config.min_bucket_size)
    timings["references_s"] = time.time() - t0

    report = {
        "skip_invalid": skip,
        "sources": source_stats,
        "invalid_total": sum(sum(st["invalid"].values()) for st in source_stats.values()),
        "filtered_total": sum(sum(st["filtered"].values()) for st in source_stats.values()),
        "dedup": dedup_report,
        "merges": plan["merges"],
        "below_min": plan["below_min"],
        "splits": {s: len(rs) for s, rs in by_split.items()},
    }
    buckets = {"key": config.bucket_key, "length_edges": config.length_edges,
               "length_labels": config.length_labels, "min_bucket_size": config.min_bucket_size,
               "buckets": table, "merge_map": plan["merge_map"], "merges": plan["merges"],
               "below_min": plan["below_min"]}
    summary = {
        "out_dir": str(out_dir), "records": len(records), "conversations": len({r.conversation_id for r in records}),
        "splits": report["splits"], "by_language": _count(records, "language"),
        "by_track": _count(records, "track"), "by_family": _count(records, "family"),
        "by_source": _count(records, "source"), "buckets": len(table), "merges": len(plan["merges"]),
        "below_min": plan["below_min"], "invalid": report["invalid_total"], "filtered": report["filtered_total"],
        "duplicates_removed": dedup_report["removed"], "references": _reference_count(references),
    }

    t0 = time.time()
    with atomic_path(out_dir) as tmp:
        (tmp / "records").mkdir(parents=True)
        (tmp / "features").mkdir()
        for split, rs in by_split.items():
            write_jsonl(tmp / "records" / f"{split}.jsonl", (_record_row(r) for r in rs))
            _write_features(tmp / "features" / f"{split}.parquet", rs, matrices[split], FEATURE_NAMES)
        references.save(tmp / "references.json")
        write_json(tmp / "buckets.json", buckets)
        write_json(tmp / "report.json", report)
        timings["write_s"] = time.time() - t0
        summary["wall_time_s"] = round(time.time() - started, 3)
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        manifest = make_manifest(stage="data", config=config.model_dump(mode="json"), inputs=input_hashes(config),
                                 seed=config.seed, started=started,
                                 extra={"summary": summary, "feature_names": list(FEATURE_NAMES)})
        write_json(tmp / "manifest.json", manifest)
    return summary


def _reference_count(references: Any) -> int | None:
    for attr in ("buckets", "bucket_ids", "references"):
        value = getattr(references, attr, None)
        if value is not None:
            try:
                return len(value)
            except TypeError:
                continue
    return None


class _Progress:
    """A rich progress display of conversations read per source (or nothing)."""

    def __init__(self, enabled: bool, names: Sequence[str]):
        self.enabled, self.names = enabled, names
        self.bar = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.bar = progress(transient=True)
            self.bar.__enter__()
            for name in self.names:
                self.tasks[name] = self.bar.add_task(f"read {name}", total=None)
        return self

    def advance(self, source: SourceConfig, n_records: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.tasks[source.name], 1)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# ---------------------------------------------------------------------------------------------- loading

def _split_path(data_dir: str | Path, sub: str, split: str, suffix: str) -> Path:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {SPLITS}", field="split")
    path = Path(data_dir) / sub / f"{split}{suffix}"
    if not path.exists():
        raise InputError("not found (is this a `polyalign data build` directory?)", file=path)
    return path


def load_records(data_dir: str | Path, split: str) -> list[Record]:
    """The records of one split of a data directory."""
    path = _split_path(data_dir, "records", split, ".jsonl")
    return [Record.from_dict(obj, file=str(path), line=line) for line, obj in iter_jsonl(path)]


def load_feature_names(data_dir: str | Path) -> list[str]:
    """The feature columns of a data directory, in matrix order."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(_split_path(data_dir, "features", "train", ".parquet"))
    return [n for n in schema.names if n not in ID_COLUMNS]


def load_features(data_dir: str | Path, split: str) -> tuple[list[str], np.ndarray]:
    """(record ids, feature matrix [n, F]) of one split; columns in the order of load_feature_names."""
    import pyarrow.parquet as pq

    table = pq.read_table(_split_path(data_dir, "features", split, ".parquet"))
    names = [n for n in table.column_names if n not in ID_COLUMNS]
    ids = table.column("id").to_pylist()
    if not names or not ids:
        return ids, np.zeros((len(ids), len(names)))
    matrix = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64, copy=False)
    return ids, matrix


def load_bucket_table(data_dir: str | Path) -> dict[str, Any]:
    """buckets.json of a data directory: key, bins, min size, one row per bucket, merge map and merges."""
    return read_json(Path(data_dir) / "buckets.json")


def load_report(data_dir: str | Path) -> dict[str, Any]:
    """report.json of a data directory (invalid, filtered, duplicates, merges)."""
    return read_json(Path(data_dir) / "report.json")
