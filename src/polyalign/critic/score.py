"""Scoring a JSONL file with a critic: every row gets its text's distance to its bucket's human support."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import iter_jsonl, write_jsonl
from .model import Critic, ensure_not_constant
from .distance import summarize


def read_scoring_rows(path: str | Path, *, text_field: str, language_field: str = "language",
                      bucket_field: str = "bucket_id") -> list[dict[str, Any]]:
    """Rows of a JSONL file, each checked for a string text, language and bucket id (errors name file, line and
    field)."""
    rows = []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", file=path, line=line)
        for name in (text_field, language_field, bucket_field):
            if not isinstance(obj.get(name), str):
                raise InputError("missing or non-string field", file=path, line=line, field=name)
        rows.append(obj)
    return rows


def score_rows(critic: Critic, rows: list[dict[str, Any]], *, text_field: str, language_field: str = "language",
               bucket_field: str = "bucket_id", unknown: str = "error", allow_weak: bool = False) -> np.ndarray:
    """Distances for rows (one batched call); refuses constant scores over distinct texts unless allow_weak."""
    texts = [r[text_field] for r in rows]
    scores = critic.score(texts, [r[language_field] for r in rows], [r[bucket_field] for r in rows],
                          unknown=unknown)
    if not np.all(np.isfinite(scores)):
        raise InputError("the critic produced NaN or infinite distances")
    ensure_not_constant(scores, texts, allow_weak=allow_weak)
    return scores


def score_jsonl(critic: Critic, input_path: str | Path, out_path: str | Path, *, text_field: str = "prediction",
                language_field: str = "language", bucket_field: str = "bucket_id", score_field: str = "d",
                unknown: str = "error", allow_weak: bool = False) -> dict[str, Any]:
    """Write `input_path`'s rows to `out_path` (atomically) with `score_field` = critic distance added; return a
    summary (n, mean, quantiles)."""
    rows = read_scoring_rows(input_path, text_field=text_field, language_field=language_field,
                             bucket_field=bucket_field)
    scores = score_rows(critic, rows, text_field=text_field, language_field=language_field,
                        bucket_field=bucket_field, unknown=unknown, allow_weak=allow_weak) if rows else np.zeros(0)
    write_jsonl(out_path, ({**row, score_field: float(s)} for row, s in zip(rows, scores)))
    return summarize(scores)
