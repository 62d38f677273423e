"""Reading a data directory written by `polyalign data build`: the records and feature matrix of a split, the
feature names, the bucket table and the build report. Other stages import these (also from data.build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..errors import InputError
from ..io import iter_jsonl, read_json
from .schema import SPLITS, Record

#: The parquet columns that identify a row; every other column is a feature.
ID_COLUMNS = ("id", "bucket_id", "language")


def split_path(data_dir: str | Path, sub: str, split: str, suffix: str) -> Path:
    """DATA_DIR/sub/{split}{suffix}, checked to exist (an InputError naming the path otherwise)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {SPLITS}", field="split")
    path = Path(data_dir) / sub / f"{split}{suffix}"
    if not path.exists():
        raise InputError("not found (is this a `polyalign data build` directory?)", file=path)
    return path


def load_records(data_dir: str | Path, split: str) -> list[Record]:
    """The records of one split of a data directory."""
    path = split_path(data_dir, "records", split, ".jsonl")
    return [Record.from_dict(obj, file=str(path), line=line) for line, obj in iter_jsonl(path)]


def load_feature_names(data_dir: str | Path) -> list[str]:
    """The feature columns of a data directory, in matrix order."""
    schema = pq.read_schema(split_path(data_dir, "features", "train", ".parquet"))
    return [n for n in schema.names if n not in ID_COLUMNS]


def load_features(data_dir: str | Path, split: str) -> tuple[list[str], np.ndarray]:
    """(record ids, feature matrix [n, F]) of one split; columns in the order of load_feature_names."""
    table = pq.read_table(split_path(data_dir, "features", split, ".parquet"))
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
