"""The streaming `polyalign data build` (engine "stream"; "auto" picks it above 64 MiB of input; docs/data.md,
"Scale"): the same outputs as the in-memory build (polyalign.data.build), with memory that does not hold the
records.

1. Read: every source's items are written to an Arrow dataset (datasets.Dataset.from_generator), one row per
   item, in input order.
2. Normalize + features: datasets.map with `num_proc` workers turns each item into record rows (stream_rows):
   the record's JSON line, its split (a pure function of its split key), hashes and its feature vector. The
   items are mapped in chunks of MAP_CHUNK, each with fresh workers, so that the memory-mapped pages a process
   touches (resident until it unmaps the file or exits) are bounded by a chunk (see _map_chunk).
3. Index: the main process reads the small columns (about 60 bytes per record: positions, split, codes and
   64/128-bit hashes) to raise or count bad items in input order, check ids, leakage and duplicates with sorts
   over hashes (candidates are re-checked on the strings), and count records per bucket and split.
4. Write: one more pass over the rows writes records/{split}.jsonl and features/{split}.parquet in chunks.
5. References from features/train.parquet, column by column and chunk by chunk (stream_refs).

The Arrow files live in the build's temporary folder (next to the output, removed with it), never in
~/.cache; the output folder appears only when every step succeeded.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError, PolyAlignError
from ..io import atomic_path, make_manifest, write_json
from .buckets import plan_from_counts, table_from_counts
from .dedup import MAX_EXAMPLES, SPLIT_PRIORITY
from .features import FEATURE_NAMES
from .formats import error_reason
from .schema import SPLITS
from .sources import DataConfig
from .stream_refs import write_references
from .stream_rows import (ERROR, FILTERED, ITEM, KEY_SEP, fixed_splits, normalize_batch, out_features,
                          raw_features, read_items, record_line, unpack)

MAX_ERROR_EXAMPLES = 5
MAP_BATCH = 256  # items per map call (each call is one feature_matrix pass)
MAP_CHUNK = 1 << 15  # items per datasets.map call (own worker processes; about 50 MB of items; see _map_chunk)
RAW_BATCH = 4096  # rows per record batch of the item files (datasets reads every batch's header when it maps a
# file, and each read keeps about 64 KiB of the file resident: the kernel maps the pages around a fault)
ROW_GROUP = 65536  # rows per parquet row group of features/*.parquet


def _iter_batches(files: Sequence[str], columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of Arrow stream files, in order, read (not memory-mapped) one batch at a time."""
    for name in files:
        with pa.OSFile(name) as fh:
            for batch in pa.ipc.open_stream(fh):
                yield batch.select(list(columns)) if columns else batch


class _Codes:
    """Integer codes for the values of a string column (null -> -1), in first-seen order."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def encode(self, arr: pa.Array) -> np.ndarray:
        enc = arr.dictionary_encode()
        lookup = np.array([self.index.setdefault(v, len(self.index)) for v in enc.dictionary.to_pylist()] + [-1],
                          dtype=np.int32)
        return lookup[pa.compute.fill_null(enc.indices, -1).to_numpy()]

    @property
    def labels(self) -> list[str]:
        return list(self.index)


class _Index:
    """The small per-row columns of the mapped rows, as numpy arrays, plus the rows that are not records."""

    NUMERIC = ("seq", "src", "status", "split", "id_h", "conv_h", "skey_h", "dup_a", "dup_b")
    CODED = ("language", "track", "family", "bkey")

    DTYPES = {"seq": np.int64, "src": np.int32, "status": np.int8, "split": np.int8}

    def __init__(self, files: Sequence[str], n_rows: int):
        self.codes = {name: _Codes() for name in self.CODED}
        self.others: list[dict[str, Any]] = []  # invalid and filtered rows, with their row number
        for name in (*self.NUMERIC, *self.CODED):  # preallocated: no per-batch pieces to concatenate
            setattr(self, name, np.zeros(n_rows, self.DTYPES.get(name, np.int64 if name in self.NUMERIC
                                                                  else np.int32)))
        row = 0
        cols = [*self.NUMERIC, *self.CODED, "reason", "message", "efile", "eline", "efield"]
        for batch in _iter_batches(files, cols):
            stop = row + len(batch)
            status = batch.column("status").to_numpy()
            for name in self.NUMERIC:  # copied out, so that no view keeps the batch's buffer alive
                getattr(self, name)[row:stop] = batch.column(name).to_numpy()
            for name in self.CODED:
                getattr(self, name)[row:stop] = self.codes[name].encode(batch.column(name))
            for k in np.flatnonzero(status != ITEM):
                self.others.append({"row": row + int(k), **{c: batch.column(c)[int(k)].as_py() for c in
                                    ("seq", "src", "status", "reason", "message", "efile", "eline", "efield")}})
            row = stop
        if row != n_rows:
            raise RuntimeError(f"expected {n_rows} mapped rows, read {row}")
        self.n = row


def _strings(files: Sequence[str], rows: np.ndarray, columns: Sequence[str]) -> dict[int, dict[str, Any]]:
    """The values of `columns` at the given row numbers (one pass; for the few rows an error or example names)."""
    wanted = np.unique(rows)
    out: dict[int, dict[str, Any]] = {}
    start = 0
    for batch in _iter_batches(files, columns):
        stop = start + len(batch)
        lo, hi = np.searchsorted(wanted, [start, stop])
        for r in wanted[lo:hi]:
            out[int(r)] = {c: batch.column(c)[int(r) - start].as_py() for c in columns}
        start = stop
    return out


def _error(row: dict[str, Any]) -> InputError:
    return InputError(row["message"], file=row["efile"], line=row["eline"], field=row["efield"])


def _duplicate_ids(files: Sequence[str], ix: _Index, valid: np.ndarray,
                   skip: bool) -> list[tuple[int, int, InputError]]:
    """Items whose record id was claimed by an earlier item (in input order, as the in-memory build claims them):
    (seq, src, error) each; they are invalid. Candidates come from a sort of the 64-bit id hashes."""
    h = ix.id_h[valid]
    uniq, counts = np.unique(h, return_counts=True)
    cand = uniq[counts > 1]
    if not len(cand):
        return []
    rows = np.flatnonzero(valid & np.isin(ix.id_h, cand))
    info = _strings(files, rows, ["seq", "src", "rid", "efile", "eline"])
    seen: dict[str, str] = {}
    bad: list[tuple[int, int, InputError]] = []
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_item[info[int(r)]["seq"]].append(info[int(r)])
    for seq in sorted(by_item):
        recs = by_item[seq]
        err = None
        for rec in recs:
            if rec["rid"] in seen:
                err = InputError(f"duplicate record id {rec['rid']!r} (first at {seen[rec['rid']]})",
                                 file=rec["efile"], line=rec["eline"], field="id")
                break
        if err is not None:
            if not skip:
                raise err
            bad.append((seq, recs[0]["src"], err))
            continue
        for rec in recs:
            seen[rec["rid"]] = f"{rec['efile']}:{rec['eline']}" if rec["eline"] is not None else rec["efile"]
    return bad


def _first_invalid(ix: _Index) -> dict[str, Any] | None:
    """The first invalid (not filtered) row in input order, or None."""
    return next((row for row in ix.others if row["status"] == ERROR), None)


def _source_counts(config: DataConfig, ix: _Index, valid: np.ndarray
                   ) -> tuple[list[tuple[int, int, str, str]], list[Counter], np.ndarray, np.ndarray]:
    """(invalid items as (seq, src, reason, message), filtered reasons per source, conversations and records
    per source): the counters of build.collect_records."""
    events: list[tuple[int, int, str, str]] = []
    filtered: list[Counter] = [Counter() for _ in config.sources]
    for row in ix.others:
        if row["status"] == FILTERED:
            filtered[row["src"]][row["reason"]] += 1
        else:
            events.append((row["seq"], row["src"], row["reason"], str(_error(row))))
    first = valid & np.r_[True, ix.seq[1:] != ix.seq[:-1]] if ix.n else valid
    conversations = np.bincount(ix.src[first], minlength=len(config.sources))
    records = np.bincount(ix.src[valid], minlength=len(config.sources))
    return events, filtered, conversations, records


def _check_leakage(files: Sequence[str], ix: _Index, keep: np.ndarray, config: DataConfig) -> None:
    """build.check_no_leakage on hashes: a conversation (or split group) with records in two splits raises,
    naming the first record (input order) whose split differs from its key's first one."""
    checks = (("conv_h", "conv", "conversation", "conversation_id", "give the sources distinct conversation ids"),
              ("skey_h", "skey", "split group", "meta.split_group",
               "a source with a fixed split shares a group_by value (e.g. a passage) with another source; "
               "give both the same split or remove the shared items"))
    rows_kept = np.flatnonzero(keep)
    for hcol, scol, what, field, fix in checks:
        h = getattr(ix, hcol)[rows_kept]
        split = ix.split[rows_kept]
        order = np.lexsort((rows_kept, h))
        hs, ss = h[order], split[order]
        start = np.r_[True, hs[1:] != hs[:-1]]
        first_split = ss[np.maximum.accumulate(np.where(start, np.arange(len(hs)), 0))]
        conflict = np.unique(hs[ss != first_split])
        if not len(conflict):
            continue
        rows = rows_kept[np.isin(getattr(ix, hcol)[rows_kept], conflict)]
        info = _strings(files, rows, [scol, "split", "src"])
        split_of: dict[str, tuple[str, str]] = {}
        for r in rows:
            rec = info[int(r)]
            key, name, source = rec[scol], SPLITS[rec["split"]], config.sources[rec["src"]].name
            prev = split_of.setdefault(key, (name, source))
            if prev[0] != name:
                raise InputError(f"{what} {key!r} would be in {prev[0]} (source {prev[1]}) and {name} "
                                 f"(source {source}); {fix}", field=field)


def _dedup(files: Sequence[str], ix: _Index, keep: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """dedup.deduplicate on the 128-bit dedup hashes: (mask of rows kept, dedup report)."""
    rows = np.flatnonzero(keep)
    prio = np.array([SPLIT_PRIORITY[s] for s in SPLITS])[ix.split[rows]]
    order = np.lexsort((rows, prio, ix.dup_b[rows], ix.dup_a[rows]))
    a, b = ix.dup_a[rows][order], ix.dup_b[rows][order]
    start = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])] if len(rows) else np.zeros(0, bool)
    kept_of = rows[order][np.maximum.accumulate(np.where(start, np.arange(len(rows)), 0))] if len(rows) else rows
    removed, kept_by = rows[order][~start], kept_of[~start]
    report: dict[str, Any] = {"within_split": 0, "across_splits": 0, "by_split_pair": {}, "examples": []}
    seq = np.lexsort((removed, np.array([SPLIT_PRIORITY[s] for s in SPLITS])[ix.split[removed]])) \
        if len(removed) else np.zeros(0, int)
    removed, kept_by = removed[seq], kept_by[seq]
    for r, k in zip(removed, kept_by):
        rs, ks = SPLITS[ix.split[r]], SPLITS[ix.split[k]]
        report["within_split" if rs == ks else "across_splits"] += 1
        pair = f"{rs}<-{ks}"
        report["by_split_pair"][pair] = report["by_split_pair"].get(pair, 0) + 1
    shown = list(zip(removed[:MAX_EXAMPLES], kept_by[:MAX_EXAMPLES]))
    if shown:
        info = _strings(files, np.array([x for pair in shown for x in pair]), ["rid", "head"])
        for r, k in shown:
            response = json.loads(unpack(info[int(r)]["head"]) + "}")["response"]
            report["examples"].append({"removed": info[int(r)]["rid"], "removed_split": SPLITS[ix.split[r]],
                                       "kept": info[int(k)]["rid"], "kept_split": SPLITS[ix.split[k]],
                                       "response": response[:80]})
    report["removed"] = len(removed)
    final = keep.copy()
    final[removed] = False
    return final, report


def _count_by(codes: np.ndarray, labels: Sequence[str], mask: np.ndarray) -> dict[str, int]:
    counts = np.bincount(codes[mask], minlength=len(labels))
    return dict(sorted((labels[i], int(c)) for i, c in enumerate(counts) if c))


def _pair_counts(ix: _Index, mask: np.ndarray) -> Counter:
    """Records per (bucket-key values, split) among the rows in `mask`."""
    labels = ix.codes["bkey"].labels
    n_s = len(SPLITS)
    flat = np.bincount(ix.bkey[mask].astype(np.int64) * n_s + ix.split[mask], minlength=len(labels) * n_s)
    return Counter({(tuple(labels[i // n_s].split(KEY_SEP)), SPLITS[i % n_s]): int(c)
                    for i, c in enumerate(flat) if c})


def _write_rows(files: Sequence[str], final: np.ndarray, merge_map: dict[str, str], tmp: Path) -> dict[str, int]:
    """records/{split}.jsonl and features/{split}.parquet of the kept rows, in input order, chunk by chunk."""
    (tmp / "records").mkdir(parents=True)
    (tmp / "features").mkdir()
    schema = pa.schema([("id", pa.string()), ("bucket_id", pa.string()), ("language", pa.string())]
                       + [(n, pa.float64()) for n in FEATURE_NAMES])
    fhs = {s: open(tmp / "records" / f"{s}.jsonl", "w", encoding="utf-8") for s in SPLITS}
    writers = {s: pq.ParquetWriter(tmp / "features" / f"{s}.parquet", schema) for s in SPLITS}
    n = dict.fromkeys(SPLITS, 0)
    pending: dict[str, list[pa.Table]] = defaultdict(list)  # rows of each split not yet in a row group
    bucket_of = {KEY_SEP.join(k.split("|")): v for k, v in merge_map.items()}
    try:
        start = 0
        for batch in _iter_batches(files, ["split", "bkey", "head", "tail", "rid", "language", "feat"]):
            stop = start + len(batch)
            rows = np.flatnonzero(final[start:stop])
            start = stop
            if not len(rows):
                continue
            batch = batch.take(pa.array(rows))
            split = batch.column("split").to_numpy()
            bkey = batch.column("bkey").to_pylist()
            buckets = [bucket_of.get(k, k.replace(KEY_SEP, "|")) for k in bkey]
            heads = [unpack(b) for b in batch.column("head").to_pylist()]
            tails = [unpack(b) for b in batch.column("tail").to_pylist()]
            feats = batch.column("feat").flatten().to_numpy().reshape(len(batch), len(FEATURE_NAMES))
            for code, name in enumerate(SPLITS):
                sel = np.flatnonzero(split == code)
                if not len(sel):
                    continue
                fhs[name].write("".join(record_line(heads[i], buckets[i], tails[i]) + "\n" for i in sel))
                cols = [batch.column("rid").take(pa.array(sel)), pa.array([buckets[i] for i in sel], pa.string()),
                        batch.column("language").take(pa.array(sel))]
                cols += [pa.array(feats[sel, j]) for j in range(len(FEATURE_NAMES))]
                pending[name].append(pa.Table.from_arrays(cols, schema=schema))
                n[name] += len(sel)
                if sum(len(t) for t in pending[name]) >= ROW_GROUP:
                    writers[name].write_table(pa.concat_tables(pending.pop(name)))
        for name, tables in pending.items():
            if tables:
                writers[name].write_table(pa.concat_tables(tables))
    finally:
        for fh in fhs.values():
            fh.close()
        for w in writers.values():
            w.close()
    return n


def _map_rows(config: DataConfig, work: Path, strict: bool, num_proc: int,
              progress: bool) -> tuple[list[str], int]:
    """Steps 1-2: the sources as Arrow rows, then normalized + featurized rows: (Arrow files, rows)."""
    import datasets

    was_disabled = datasets.utils.logging.is_progress_bar_enabled() is False
    if not progress:
        datasets.disable_progress_bars()
    try:
        return _run_map(datasets, config, work, strict, num_proc)
    except Exception as exc:  # datasets wraps what the reader raised (e.g. DatasetGenerationError): unwrap ours
        ours = _ours(exc)
        if ours is exc:
            raise
        raise ours from None
    finally:
        if not progress and not was_disabled:
            datasets.enable_progress_bars()


def _ours(exc: BaseException) -> BaseException:
    """The PolyAlignError or OSError that caused `exc` (raised in the reader or a worker), else `exc`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (PolyAlignError, OSError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _run_map(datasets: Any, config: DataConfig, work: Path, strict: bool, num_proc: int) -> tuple[list[str], int]:
    """from_generator(read_items), then map(normalize_batch) with num_proc workers, one chunk of MAP_CHUNK items
    at a time (see _map_chunk)."""
    raw = datasets.Dataset.from_generator(read_items, gen_kwargs={"config": config, "strict": strict},
                                          features=raw_features(), cache_dir=str(work / "hf"),
                                          writer_batch_size=RAW_BATCH)
    raw_files, n_items = [f["filename"] for f in raw.cache_files], raw.num_rows
    del raw  # unmapped: the build process holds the item files only while it maps a chunk
    n_chunks = max(1, -(-n_items // MAP_CHUNK))
    bounds = [n_items * k // n_chunks for k in range(n_chunks + 1)]  # even chunks: none smaller than num_proc
    files: list[str] = []
    n_rows = 0
    for k in range(n_chunks):
        chunk_files, rows = _map_chunk(datasets, config, raw_files, bounds[k], bounds[k + 1],
                                       work / f"mapped_{k:05d}.arrow", num_proc)
        files += chunk_files
        n_rows += rows
    return files, n_rows


def _map_chunk(datasets: Any, config: DataConfig, raw_files: Sequence[str], start: int, stop: int, out: Path,
               num_proc: int) -> tuple[list[str], int]:
    """Items [start, stop) of the item files mapped to `out` (one file per worker): (files, rows).

    Every chunk opens the item files afresh and drops them when mapped, and gets its own worker processes (one
    datasets.map call each): the pages of the memory-mapped item and output files that a process touches stay
    resident (in its RSS) until it unmaps them or exits, so they are bounded by a chunk, not by the corpus."""
    source = datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in raw_files])
    part = source.select(range(start, stop))
    mapped = part.map(normalize_batch, batched=True, batch_size=MAP_BATCH,
                      num_proc=num_proc if num_proc > 1 else None,
                      fn_kwargs={"config": config, "fixed": fixed_splits(config)}, remove_columns=part.column_names,
                      features=out_features(), cache_file_name=str(out), desc="normalize + features")
    files, n_rows = [f["filename"] for f in mapped.cache_files], mapped.num_rows
    del source, part, mapped
    return files, n_rows


def build_streaming(config: DataConfig, out_dir: str | Path, *, skip: bool, progress: bool, num_proc: int,
                    input_hashes: dict[str, str]) -> dict[str, Any]:
    """The streaming build of `out_dir` (see the module docstring); returns the summary build_dataset returns."""
    from .build import _buckets_file, degenerate_counts

    started = time.time()
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    with atomic_path(out_dir) as tmp:
        work = tmp.parent / "work"
        t0 = time.time()
        files, n_rows = _map_rows(config, work, not skip, num_proc, progress)
        timings["read_normalize_features_s"] = time.time() - t0
        t0 = time.time()
        ix = _Index(files, n_rows)
        valid = ix.status == ITEM
        first_bad = None if skip else _first_invalid(ix)
        if first_bad is not None:  # strict: a duplicate id before it is reported first, else it
            _duplicate_ids(files, ix, valid & (ix.seq < first_bad["seq"]), skip)
            raise _error(first_bad)
        dups = _duplicate_ids(files, ix, valid, skip)
        if dups:
            valid &= ~np.isin(ix.seq, np.array([d[0] for d in dups]))
        events, filtered, conversations, n_records = _source_counts(config, ix, valid)
        events += [(seq, src, error_reason(err), str(err)) for seq, src, err in dups]
        stats: dict[str, dict[str, Any]] = {}
        invalid: list[Counter] = [Counter() for _ in config.sources]
        examples: list[list[str]] = [[] for _ in config.sources]
        for seq, src, reason, message in sorted(events, key=lambda e: e[0]):
            invalid[src][reason] += 1
            if len(examples[src]) < MAX_ERROR_EXAMPLES:
                examples[src].append(message)
        for i, s in enumerate(config.sources):
            stats[s.name] = {"conversations": int(conversations[i]), "records": int(n_records[i]),
                             "invalid": dict(sorted(invalid[i].items())),
                             "filtered": dict(sorted(filtered[i].items())), "examples": examples[i]}
        keep = valid.copy()
        if config.languages is not None:
            lang_labels = ix.codes["language"].labels
            allowed = np.array([lang_labels[c] in config.languages if c >= 0 else False
                                for c in range(len(lang_labels))] + [False])
            other = valid & ~allowed[ix.language]
            keep &= ~other
            for i, c in enumerate(np.bincount(ix.src[other], minlength=len(config.sources))):
                if c:
                    f = stats[config.sources[i].name]["filtered"]
                    f["other_language_records"] = f.get("other_language_records", 0) + int(c)
        if not keep.any():
            raise InputError("no valid records in any source" + (f" in languages {config.languages}"
                                                                 if config.languages is not None else ""),
                             field="sources")
        _check_leakage(files, ix, keep, config)
        final, dedup_report = _dedup(files, ix, keep)
        src_names = [s.name for s in config.sources]
        before, after = _pair_counts(ix, keep), _pair_counts(ix, final)
        degenerate = degenerate_counts(
            config, stats, Counter({src_names[i]: int(c) for i, c in enumerate(np.bincount(
                ix.src[keep], minlength=len(src_names))) if c}),
            Counter({src_names[i]: int(c) for i, c in enumerate(np.bincount(
                ix.src[final], minlength=len(src_names))) if c}),
            _bucket_totals(before), _bucket_totals(after))
        plan = plan_from_counts(after, config.bucket_key, config.length_labels, config.min_bucket_size)
        merged: dict[str, Counter] = defaultdict(Counter)
        for (values, split), c in after.items():
            own = "|".join(values)
            merged[plan["merge_map"].get(own, own)][split] += c
        table = table_from_counts(merged, plan, config.min_bucket_size)
        timings["split_dedup_bucket_s"] = time.time() - t0
        t0 = time.time()
        splits = _write_rows(files, final, plan["merge_map"], tmp)
        timings["write_s"] = time.time() - t0
        t0 = time.time()
        n_refs = write_references(tmp / "features" / "train.parquet", tmp / "references.json", list(FEATURE_NAMES),
                                  config.min_bucket_size)
        timings["references_s"] = time.time() - t0
        shutil.rmtree(work, ignore_errors=True)
        report = {"skip_invalid": skip, "sources": stats,
                  "invalid_total": sum(sum(st["invalid"].values()) for st in stats.values()),
                  "filtered_total": sum(sum(st["filtered"].values()) for st in stats.values()),
                  "dedup": dedup_report, "merges": plan["merges"], "below_min": plan["below_min"],
                  "splits": splits, **degenerate}
        write_json(tmp / "buckets.json", _buckets_file(config, plan, table))
        write_json(tmp / "report.json", report)
        codes = ix.codes
        summary = {
            "out_dir": str(out_dir), "records": int(final.sum()),
            "conversations": int(len(np.unique(ix.conv_h[final]))), "splits": splits,
            "by_language": _count_by(ix.language, codes["language"].labels, final),
            "by_track": _count_by(ix.track, codes["track"].labels, final),
            "by_family": _count_by(ix.family, codes["family"].labels, final),
            "by_source": _count_by(ix.src, src_names, final), "buckets": len(table), "merges": len(plan["merges"]),
            "below_min": plan["below_min"], "invalid": report["invalid_total"], "filtered": report["filtered_total"],
            "duplicates_removed": dedup_report["removed"], "references": n_refs,
            "warnings": degenerate["warnings"], "engine": "stream", "num_proc": num_proc,
        }
        summary["wall_time_s"] = round(time.time() - started, 3)
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        write_json(tmp / "manifest.json", make_manifest(
            stage="data", config=config.model_dump(mode="json"), inputs=input_hashes, seed=config.seed,
            started=started, extra={"summary": summary, "feature_names": list(FEATURE_NAMES)}))
    return summary


def _bucket_totals(pairs: Counter) -> Counter:
    """Records per raw bucket id ('|'-joined key values) from per (values, split) counts."""
    out: Counter = Counter()
    for (values, _), c in pairs.items():
        out["|".join(values)] += c
    return out
