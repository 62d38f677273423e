"""References (polyalign.data.references) from a train features parquet file, read in pieces, so that memory
holds one feature column of the split and one row chunk at a time, never the whole matrix.

Per bucket and feature, count, mean, population std, the quantiles (numpy 'linear') and the robust scale are
exact: one column of the split is read at a time (8 bytes per train record) and each bucket's values are taken
from it. The Ledoit-Wolf covariance needs Σ z zᵀ and Σ (z∘z)(z∘z)ᵀ of the standardized rows (z = (x - mean) /
std, with the exact mean and std of the first pass); both are summed over row chunks of the file
(references.covariance_from_moments), exact up to float summation order. The ids of a bucket are read when
its entry is written, so references.json is written one bucket at a time too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..io import atomic_path
from .references import (FORMAT, IQR_TO_SIGMA, QUANTILE_LEVELS, BucketReference, bucket_dict,
                         covariance_from_moments)

CHUNK_ROWS = 16384  # rows per covariance chunk: about 4 x 7 MB of temporary arrays


def _bucket_codes(pf: pq.ParquetFile) -> tuple[np.ndarray, list[str]]:
    """Per row of the file, the index of its bucket id in the sorted list of bucket ids."""
    column = pf.read(columns=["bucket_id"]).column("bucket_id")
    labels = sorted(set(pa.compute.unique(column).to_pylist()))
    index = {b: i for i, b in enumerate(labels)}
    codes = np.empty(len(column), dtype=np.int32)
    pos = 0
    for chunk in column.chunks:
        enc = chunk.dictionary_encode()
        lookup = np.array([index[b] for b in enc.dictionary.to_pylist()], dtype=np.int32)
        codes[pos:pos + len(chunk)] = lookup[enc.indices.to_numpy()] if len(lookup) else []
        pos += len(chunk)
    return codes, labels


def write_references(parquet: str | Path, out: str | Path, feature_names: Sequence[str], min_count: int,
                     levels: Sequence[float] = QUANTILE_LEVELS) -> int:
    """Write references.json for the train features in `parquet`; returns the number of buckets."""
    pf = pq.ParquetFile(parquet)
    codes, labels = _bucket_codes(pf)
    n_b, n_f = len(labels), len(feature_names)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_b + 1))
    counts = np.diff(bounds)
    mean, std = np.zeros((n_b, n_f)), np.zeros((n_b, n_f))
    quant, scale = np.zeros((n_b, len(levels), n_f)), np.zeros((n_b, n_f))
    for j, name in enumerate(feature_names):  # exact per-column statistics
        col = pf.read(columns=[name]).column(name).to_numpy().astype(np.float64, copy=False)
        bad = ~np.isfinite(col)
        if bad.any():
            row = int(np.argmax(bad))
            rid = pf.read(columns=["id"]).column("id")[row].as_py()
            raise InputError(f"record {rid!r} has a non-finite value ({col[row]})", field=name)
        for b in range(n_b):
            x = col[order[bounds[b]:bounds[b + 1]]]
            q = np.quantile(x, [*levels, 0.25, 0.75], method="linear")
            quant[b, :, j] = q[:len(levels)]
            mean[b, j], std[b, j] = x.mean(), x.std()
            iqr = (q[-1] - q[-2]) / IQR_TO_SIGMA
            scale[b, j] = iqr if iqr > 0 else (std[b, j] if std[b, j] > 0 else 1.0)
        del col
    unit = np.where(std > 0, std, 1.0)
    zz, z2z2 = np.zeros((n_b, n_f, n_f)), np.zeros((n_b, n_f, n_f))
    start = 0
    for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=list(feature_names)):
        x = np.column_stack([batch.column(k).to_numpy() for k in range(n_f)]).astype(np.float64, copy=False)
        c = codes[start:start + len(x)]
        start += len(x)
        for b in np.unique(c):
            z = (x[c == b] - mean[b]) / unit[b]
            z2 = z * z
            zz[b] += z.T @ z
            z2z2[b] += z2.T @ z2
    ids = pf.read(columns=["id"]).column("id")
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("{\n" + f'  "format": {json.dumps(FORMAT)},\n'
                 + f'  "feature_names": {_indented(list(feature_names), 2)},\n'
                 + f'  "quantile_levels": {_indented([float(q) for q in levels], 2)},\n'
                 + '  "buckets": {')
        for b, label in enumerate(labels):
            rows = order[bounds[b]:bounds[b + 1]]
            ref = BucketReference(
                bucket_id=label, count=int(counts[b]), mean=mean[b], std=std[b], quantiles=quant[b],
                scale=scale[b], cov=covariance_from_moments(zz[b], z2z2[b], int(counts[b]), std[b], scale[b]),
                ids=ids.take(pa.array(rows)).to_pylist(), below_min=bool(counts[b] < min_count),
                quantile_levels=tuple(float(q) for q in levels))
            fh.write(("," if b else "") + f"\n    {json.dumps(label, ensure_ascii=False)}: "
                     + _indented(bucket_dict(ref), 4))
        fh.write("\n  }\n}\n" if labels else "}\n}\n")
    return n_b


def _indented(obj: object, depth: int) -> str:
    """json.dumps(obj, indent=2) as it reads nested `depth` spaces deep in an indent=2 document."""
    return json.dumps(obj, ensure_ascii=False, indent=2).replace("\n", "\n" + " " * depth)
