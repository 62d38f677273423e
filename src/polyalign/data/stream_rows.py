"""The rows of the streaming data build (polyalign.data.stream): what the source reader writes to Arrow, and the
`datasets.map` function that turns each raw conversation into record rows (normalized, validated, split, hashed,
with features), one output row per record, or one row for an invalid or filtered item.

Every row keeps its item's position in the input (`seq`) and its file and line, so that the main process can
raise or count the first bad item in input order whatever the number of worker processes. Hashes (int64) are 64-bit
blake2b of the id, conversation id and split key, and the first 128 bits of the dedup key (polyalign.data.dedup):
the main process deduplicates and checks leakage on these numbers instead of holding the strings.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import InputError
from .dedup import dedup_key
from .features import FEATURE_NAMES, feature_matrix
from .formats import Filtered, Skip, error_reason, read_source
from .normalize import normalize_conversation
from .schema import SPLITS, Record
from .sources import DataConfig
from .splits import assign_split, split_key

ITEM, ERROR, FILTERED, END = 0, 1, 2, 3  # raw row kinds (output rows use the first three as `status`)
KEY_SEP = "\x1f"  # joins the bucket-key values of a record (record values never contain it after normalization)
_HEAD_FIELDS = tuple(f for f in Record.__dataclass_fields__)[:list(Record.__dataclass_fields__).index("bucket_id")]
_TAIL_FIELDS = tuple(f for f in Record.__dataclass_fields__)[len(_HEAD_FIELDS) + 1:]


def raw_features() -> Any:
    """The datasets.Features of the source reader's rows."""
    from datasets import Features, Value

    return Features({"seq": Value("int64"), "src": Value("int32"), "kind": Value("int8"),
                     "payload": Value("binary"), "reason": Value("string"), "message": Value("string"),
                     "efile": Value("string"), "eline": Value("int64"), "efield": Value("string")})


def out_features() -> Any:
    """The datasets.Features of the map's output rows."""
    from datasets import Features, List, Value

    strings = ("reason", "message", "efile", "efield", "rid", "conv", "skey", "language", "track", "family",
               "bkey")
    cols: dict[str, Any] = {"seq": Value("int64"), "src": Value("int32"), "status": Value("int8"),
                            "eline": Value("int64"), "split": Value("int8")}
    cols.update({name: Value("string") for name in strings})
    cols.update({name: Value("binary") for name in ("head", "tail")})  # zlib-compressed (pack / unpack)
    cols.update({name: Value("int64") for name in ("id_h", "conv_h", "skey_h", "dup_a", "dup_b")})
    cols["feat"] = List(Value("float64"), length=len(FEATURE_NAMES))
    return Features(cols)


def hash64(text: str) -> int:
    """64-bit blake2b of a string, as a signed int (Arrow int64)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _signed(hex16: str) -> int:
    """16 hex digits as a signed 64-bit int."""
    return int.from_bytes(bytes.fromhex(hex16), "big", signed=True)


def read_items(config: DataConfig, strict: bool) -> Iterator[dict[str, Any]]:
    """One row per item of every source, in input order (the generator of Dataset.from_generator); the item
    pickled and zlib-compressed (the workers memory-map this file: its pages they touch count in their RSS).
    Strict: stop after the first read error (nothing after it can change which error is reported first)."""
    seq = 0
    for src, source in enumerate(config.sources):
        for item in read_source(source):
            row: dict[str, Any] = {"seq": seq, "src": src, "kind": ITEM, "payload": None, "reason": None,
                                   "message": None, "efile": None, "eline": None, "efield": None}
            seq += 1
            if isinstance(item, InputError):
                row.update(kind=ERROR, reason=error_reason(item), message=item.message, efile=item.file,
                           eline=item.line, efield=item.field)
                yield row
                if strict:
                    return
                continue
            if isinstance(item, Filtered):
                row.update(kind=FILTERED, reason=item.reason, efile=item.file, eline=item.line)
            else:
                row["payload"] = zlib.compress(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL), 1)
            yield row
    yield {**dict.fromkeys(raw_features()), "seq": seq, "src": -1, "kind": END}  # never an empty dataset


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def record_head_tail(record: Record) -> tuple[str, str]:
    """The record's JSON line (as polyalign.io.write_jsonl writes it) cut around the bucket_id field, which is
    only known after the bucket plan: line = head + ', "bucket_id": ' + json(bucket_id) + ', ' + tail."""
    head = _dumps({f: getattr(record, f) for f in _HEAD_FIELDS})[:-1]
    tail = _dumps({f: getattr(record, f) for f in _TAIL_FIELDS})[1:]
    return head, tail


def pack(text: str) -> bytes:
    """A long text as stored in the rows (zlib level 1: the record lines are most of the rows' bytes)."""
    return zlib.compress(text.encode("utf-8"), 1)


def unpack(data: bytes) -> str:
    return zlib.decompress(data).decode("utf-8")


def record_line(head: str, bucket_id: str, tail: str) -> str:
    """One line of records/{split}.jsonl from record_head_tail's pieces."""
    return f'{head}, "bucket_id": {_dumps(bucket_id)}, {tail}'


def normalize_batch(batch: Mapping[str, list], *, config: DataConfig, fixed: Mapping[str, str]) -> dict[str, list]:
    """datasets.map function (batched): raw rows -> output rows (see the module docstring)."""
    names = list(out_features())
    out: dict[str, list] = {name: [] for name in names}
    blank = {name: None for name in names}
    blank.update(split=-1, id_h=0, conv_h=0, skey_h=0, dup_a=0, dup_b=0, feat=None)
    texts: list[str] = []
    langs: list[str] = []
    rows: list[int] = []
    ratios = config.split_ratios.as_dict()

    def emit(**values: Any) -> int:
        row = {**blank, **values}
        for name in names:
            out[name].append(row[name])
        return len(out["seq"]) - 1

    for i, seq in enumerate(batch["seq"]):
        src, kind = batch["src"][i], batch["kind"][i]
        where = {"efile": batch["efile"][i], "eline": batch["eline"][i]}
        if kind == ERROR:
            emit(seq=seq, src=src, status=ERROR, reason=batch["reason"][i], message=batch["message"][i],
                 efield=batch["efield"][i], **where)
            continue
        if kind == END:
            continue
        if kind == FILTERED:
            emit(seq=seq, src=src, status=FILTERED, reason=batch["reason"][i], **where)
            continue
        item = pickle.loads(zlib.decompress(batch["payload"][i]))
        source = config.sources[src]
        try:
            records = normalize_conversation(item, source, length_edges=config.length_edges,
                                             length_labels=config.length_labels)
        except Skip as skip:
            emit(seq=seq, src=src, status=FILTERED, reason=skip.reason, efile=item.file, eline=item.line)
            continue
        except InputError as exc:
            emit(seq=seq, src=src, status=ERROR, reason=error_reason(exc), message=exc.message, efile=exc.file,
                 eline=exc.line, efield=exc.field)
            continue
        for r in records:
            skey = split_key(r)
            r.split = fixed[r.source] if r.source in fixed else assign_split(skey, config.seed, ratios)
            head, tail = record_head_tail(r)
            dup = dedup_key(r)
            rows.append(emit(seq=seq, src=src, status=ITEM, efile=item.file, eline=item.line, rid=r.id,
                             conv=r.conversation_id, skey=skey, language=r.language, track=r.track,
                             family=r.family, bkey=KEY_SEP.join(str(getattr(r, f)) for f in config.bucket_key),
                             split=SPLITS.index(r.split), id_h=hash64(r.id), conv_h=hash64(r.conversation_id),
                             skey_h=hash64(skey), dup_a=_signed(dup[:16]), dup_b=_signed(dup[16:32]), head=pack(head),
                             tail=pack(tail)))
            texts.append(r.response)
            langs.append(r.language)
    zeros = [0.0] * len(FEATURE_NAMES)
    out["feat"] = [zeros] * len(out["seq"])
    if rows:
        matrix = feature_matrix(texts, langs)
        for k, row in enumerate(rows):
            out["feat"][row] = matrix[k].tolist()
    return out


def fixed_splits(config: DataConfig) -> dict[str, str]:
    """Source name -> its fixed split, for the sources that have one."""
    return {s.name: s.split for s in config.sources if s.split}

