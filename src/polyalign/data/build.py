"""`polyalign data build`: sources -> records per split, features, train-only references, bucket table, report
and manifest, written as one directory that only appears when everything succeeded (see docs/data.md).
Reading a built directory back is polyalign.data.load (its functions are re-exported here)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, InputError
from ..io import atomic_path, make_manifest, sha256_tree, write_json, write_jsonl
from ..progress import progress as progress_bar
from .buckets import apply_buckets, bucket_table, key_values, plan_buckets
from .dedup import deduplicate
from .features import FEATURE_NAMES, feature_matrix
from .formats import Filtered, Skip, error_reason, hf_label, read_source
from .load import ID_COLUMNS, load_bucket_table, load_feature_names, load_features, load_records, load_report
from .normalize import normalize_conversation
from .references import References, build_references
from .schema import SPLITS, Record
from .sources import DataConfig, SourceConfig, is_local
from .splits import assign_splits, split_key

MAX_ERROR_EXAMPLES = 5

__all__ = ["ID_COLUMNS", "build_dataset", "check_no_leakage", "collect_records", "compute_features", "input_hashes",
           "load_bucket_table", "load_feature_names", "load_features", "load_records", "load_report",
           "split_and_dedup"]


# ----------------------------------------------------------------------------------------------- reading

def _new_source_stats() -> dict[str, Any]:
    """The per-source counters of report.json."""
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
            recs = _item_records(item, source, config, seen_ids, st, skip_invalid)
            if recs is None:
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


def _item_records(item: Any, source: SourceConfig, config: DataConfig, seen_ids: dict[str, str],
                  st: dict[str, Any], skip_invalid: bool) -> list[Record] | None:
    """The records of one item of a source, or None when it is filtered or (skip_invalid) invalid, which is
    counted in `st`; `seen_ids` (record id -> file:line) catches duplicate record ids."""
    if isinstance(item, Filtered):
        st["filtered"][item.reason] += 1
        return None
    try:
        if isinstance(item, InputError):
            raise item
        recs = normalize_conversation(item, source, length_edges=config.length_edges,
                                      length_labels=config.length_labels)
        _claim_ids(recs, item, seen_ids)
    except Skip as skip:
        st["filtered"][skip.reason] += 1
        return None
    except InputError as exc:
        if not skip_invalid:
            raise
        st["invalid"][error_reason(exc)] += 1
        if len(st["examples"]) < MAX_ERROR_EXAMPLES:
            st["examples"].append(str(exc))
        return None
    return recs


def _claim_ids(recs: Sequence[Record], item: Any, seen_ids: dict[str, str]) -> None:
    """Record where each id was first seen; an id seen before is an InputError naming both places."""
    where = f"{item.file}:{item.line}" if item.line is not None else item.file
    for rec in recs:
        first = seen_ids.get(rec.id)
        if first is not None:
            raise InputError(f"duplicate record id {rec.id!r} (first at {first})", file=item.file,
                             line=item.line, field="id")
    for rec in recs:
        seen_ids[rec.id] = where


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
    return feature_matrix([r.response for r in records], [r.language for r in records])


def _write_features(path: Path, records: Sequence[Record], matrix: np.ndarray, names: Sequence[str]) -> None:
    """One split's features as parquet: the ID_COLUMNS, then one float64 column per feature."""
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

@dataclass
class _Outputs:
    """What a build writes, besides the manifest."""

    by_split: dict[str, list[Record]]
    matrices: dict[str, np.ndarray]
    references: References
    buckets: dict[str, Any]
    report: dict[str, Any]


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
    """Records per value of a field, sorted by value."""
    return dict(sorted(Counter(getattr(r, field) for r in records).items()))


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to timings[key]."""
    t0 = time.time()
    yield
    timings[key] = time.time() - t0


ENGINES = ("auto", "stream", "memory")
AUTO_STREAM_BYTES = 64 * 2**20  # engine auto streams above this much local input (the bundled data: 21 MB)


def _source_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def choose_engine(config: DataConfig, engine: str = "auto", num_proc: int = 1) -> str:
    """The engine a build runs: `engine` itself unless "auto", which streams when a hub dataset is read, when
    `num_proc` > 1, or when the local sources exceed AUTO_STREAM_BYTES, and builds in memory otherwise (the
    same outputs; memory is about twice as fast on small corpora, its RSS grows with the corpus)."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown data build engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    if num_proc > 1 or any(s.format == "hf" and not is_local(s.path) for s in config.sources):
        return "stream"
    return "stream" if sum(_source_bytes(Path(s.path)) for s in config.sources) > AUTO_STREAM_BYTES else "memory"


def build_dataset(config: DataConfig, out_dir: str | Path, *, skip_invalid: bool | None = None,
                  progress: bool = True, engine: str = "auto", num_proc: int = 1) -> dict[str, Any]:
    """Build the data directory `out_dir` from `config` (source paths already resolved, see
    load_data_config) and return a summary. Nothing is written unless the whole build succeeds.
    engine "stream" (polyalign.data.stream, `num_proc` worker processes), "memory" (every record held as a
    Python object; the reference implementation) or "auto" (see choose_engine): the same outputs."""
    if num_proc < 1:
        raise ConfigError(f"num_proc must be >= 1, got {num_proc}")
    skip = config.skip_invalid if skip_invalid is None else skip_invalid
    _check_source_paths(config)
    engine = choose_engine(config, engine, num_proc)
    if engine == "stream":
        from .stream import build_streaming

        return build_streaming(config, out_dir, skip=skip, progress=progress, num_proc=num_proc,
                               input_hashes=input_hashes(config))
    started = time.time()
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    with _Progress(progress, [s.name for s in config.sources]) as bar, _timed(timings, "read_normalize_s"):
        records, source_stats = collect_records(config, skip_invalid=skip, on_item=bar.advance)
    if config.languages is not None:
        records = keep_languages(records, config.languages, source_stats)
    if not records:
        raise InputError("no valid records in any source" + (f" in languages {config.languages}"
                                                             if config.languages is not None else ""),
                         field="sources")
    with _timed(timings, "split_dedup_bucket_s"):
        read = list(records)
        records, dedup_report = split_and_dedup(config, records)
        degenerate = degenerate_input(config, source_stats, read, records)
        plan = plan_buckets(records, config.bucket_key, config.length_labels, config.min_bucket_size)
        apply_buckets(records, config.bucket_key, plan["merge_map"])
        table = bucket_table(records, plan, config.min_bucket_size)
        by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    with _timed(timings, "features_s"):
        matrices = {s: compute_features(rs) for s, rs in by_split.items()}
    with _timed(timings, "references_s"):
        train = by_split["train"]
        references = build_references(matrices["train"], [r.bucket_id for r in train], [r.id for r in train],
                                      list(FEATURE_NAMES), config.min_bucket_size)
    outputs = _Outputs(by_split, matrices, references, _buckets_file(config, plan, table),
                       {**_report(skip, source_stats, dedup_report, plan, by_split), **degenerate})
    summary = _summary(out_dir, records, outputs, plan, table)
    summary["warnings"] = degenerate["warnings"]
    summary["engine"] = "memory"
    t0 = time.time()
    with atomic_path(out_dir) as tmp:
        _write_outputs(tmp, outputs)
        timings["write_s"] = time.time() - t0
        summary["wall_time_s"] = round(time.time() - started, 3)
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        write_json(tmp / "manifest.json", make_manifest(
            stage="data", config=config.model_dump(mode="json"), inputs=input_hashes(config), seed=config.seed,
            started=started, extra={"summary": summary, "feature_names": list(FEATURE_NAMES)}))
    return summary


def degenerate_input(config: DataConfig, source_stats: dict[str, dict[str, Any]], read: Sequence[Record],
                     kept: Sequence[Record]) -> dict[str, Any]:
    """report.json's account of input that yields nothing: empty sources, sources whose every item was filtered
    (or invalid, or in another language), and buckets and sources that dedup emptied; with one warning each."""
    bucket_of = lambda r: "|".join(key_values(r, config.bucket_key))  # noqa: E731
    return degenerate_counts(config, source_stats, Counter(r.source for r in read), Counter(r.source for r in kept),
                             Counter(map(bucket_of, read)), Counter(map(bucket_of, kept)))


def degenerate_counts(config: DataConfig, source_stats: dict[str, dict[str, Any]], with_records: Counter,
                      after: Counter, before_dedup: Counter, after_dedup: Counter) -> dict[str, Any]:
    """degenerate_input from counts: records per source before and after dedup, per bucket key likewise."""
    paths = {s.name: s.path for s in config.sources}
    empty, filtered, warnings = [], [], []
    for name, st in source_stats.items():
        if with_records[name]:
            continue
        dropped = {**st["filtered"], **{f"invalid: {k}": v for k, v in st["invalid"].items()}}
        if st["conversations"] == 0 and not dropped:
            empty.append(name)
            warnings.append(f"source {name!r} ({paths[name]}): empty, no conversations read")
        else:
            filtered.append(name)
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
            warnings.append(f"source {name!r} ({paths[name]}): every item was filtered out ({reasons}); it "
                            f"contributes no records")
    emptied_buckets = sorted(b for b in before_dedup if not after_dedup[b])
    for b in emptied_buckets:
        warnings.append(f"bucket {b!r}: all {before_dedup[b]} record(s) were exact duplicates removed by dedup; "
                        f"the bucket is empty")
    emptied_sources = sorted(n for n in with_records if not after[n])
    for n in emptied_sources:
        warnings.append(f"source {n!r} ({paths[n]}): all {with_records[n]} record(s) were exact duplicates of "
                        f"other records and were removed by dedup")
    return {"degenerate": {"empty_sources": empty, "filtered_sources": filtered,
                           "dedup_emptied_buckets": emptied_buckets, "dedup_emptied_sources": emptied_sources,
                           "counts": {"empty_sources": len(empty), "filtered_sources": len(filtered),
                                      "dedup_emptied_buckets": len(emptied_buckets),
                                      "dedup_emptied_sources": len(emptied_sources)}},
            "warnings": warnings}


def keep_languages(records: list[Record], languages: Sequence[str],
                   source_stats: dict[str, dict[str, Any]]) -> list[Record]:
    """The records in `languages`; the others are counted per source as filtered (reason `other_language_records`)."""
    kept = []
    for record in records:
        if record.language in languages:
            kept.append(record)
        else:
            filtered = source_stats[record.source]["filtered"]
            filtered["other_language_records"] = filtered.get("other_language_records", 0) + 1
    return kept


def _check_source_paths(config: DataConfig) -> None:
    """Before any work: every file source must exist."""
    for s in config.sources:
        if s.format != "hf" and not Path(s.path).exists():
            raise ConfigError(f"source {s.name!r}: path not found: {s.path}")


def _report(skip: bool, source_stats: dict[str, dict[str, Any]], dedup_report: dict[str, Any],
            plan: dict[str, Any], by_split: dict[str, list[Record]]) -> dict[str, Any]:
    """report.json: what was read, skipped, filtered, deduplicated and merged, and the split sizes."""
    return {
        "skip_invalid": skip,
        "sources": source_stats,
        "invalid_total": sum(sum(st["invalid"].values()) for st in source_stats.values()),
        "filtered_total": sum(sum(st["filtered"].values()) for st in source_stats.values()),
        "dedup": dedup_report,
        "merges": plan["merges"],
        "below_min": plan["below_min"],
        "splits": {s: len(rs) for s, rs in by_split.items()},
    }


def _buckets_file(config: DataConfig, plan: dict[str, Any], table: list[dict[str, Any]]) -> dict[str, Any]:
    """buckets.json: the bucket key and bins, the table of records per bucket and split, and the merges."""
    return {"key": config.bucket_key, "length_edges": config.length_edges,
            "length_labels": config.length_labels, "min_bucket_size": config.min_bucket_size,
            "buckets": table, "merge_map": plan["merge_map"], "merges": plan["merges"],
            "below_min": plan["below_min"]}


def _summary(out_dir: Path, records: Sequence[Record], outputs: _Outputs, plan: dict[str, Any],
             table: list[dict[str, Any]]) -> dict[str, Any]:
    """The build summary (printed by the CLI and stored in the manifest)."""
    report = outputs.report
    return {
        "out_dir": str(out_dir), "records": len(records), "conversations": len({r.conversation_id for r in records}),
        "splits": report["splits"], "by_language": _count(records, "language"),
        "by_track": _count(records, "track"), "by_family": _count(records, "family"),
        "by_source": _count(records, "source"), "buckets": len(table), "merges": len(plan["merges"]),
        "below_min": plan["below_min"], "invalid": report["invalid_total"], "filtered": report["filtered_total"],
        "duplicates_removed": report["dedup"]["removed"], "references": _reference_count(outputs.references),
    }


def _write_outputs(tmp: Path, outputs: _Outputs) -> None:
    """Records and features per split, references, bucket table and report, into the build's temporary folder."""
    (tmp / "records").mkdir(parents=True)
    (tmp / "features").mkdir()
    for split, rs in outputs.by_split.items():
        write_jsonl(tmp / "records" / f"{split}.jsonl", (_record_row(r) for r in rs))
        _write_features(tmp / "features" / f"{split}.parquet", rs, outputs.matrices[split], FEATURE_NAMES)
    outputs.references.save(tmp / "references.json")
    write_json(tmp / "buckets.json", outputs.buckets)
    write_json(tmp / "report.json", outputs.report)


def _reference_count(references: Any) -> int | None:
    """Number of buckets with references (None when the object does not say)."""
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
            self.bar = progress_bar(transient=True)
            self.bar.__enter__()
            for name in self.names:
                self.tasks[name] = self.bar.add_task(f"read {name}", total=None)
        return self

    def advance(self, source: SourceConfig, n_records: int) -> None:
        """One more conversation read from `source`."""
        if self.bar is not None:
            self.bar.advance(self.tasks[source.name], 1)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
