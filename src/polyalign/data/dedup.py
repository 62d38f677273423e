"""Exact deduplication on the normalized (context, history, prompt, response) of each record.

The key is the sha1 of the canonical JSON of those four fields (texts are already whitespace-normalized).
Dedup runs after splitting: copies are ranked test > val > train (then by input order) and only the first is
kept, so an evaluation example is never lost to a training duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from .schema import Record

SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}
MAX_EXAMPLES = 10


def dedup_key(record: Record) -> str:
    """sha1 of the canonical JSON of (context, history, prompt, response)."""
    payload = json.dumps([record.context, [[t["role"], t["content"]] for t in record.history], record.prompt,
                          record.response], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def deduplicate(records: Sequence[Record]) -> tuple[list[Record], dict[str, Any]]:
    """Records without exact duplicates (input order kept) and a report: counts of copies removed within a
    split and across splits (per pair `removed_split<-kept_split`), with examples."""
    order = sorted(range(len(records)), key=lambda i: (SPLIT_PRIORITY.get(records[i].split, 3), i))
    kept_by_key: dict[str, int] = {}
    removed: set[int] = set()
    report: dict[str, Any] = {"within_split": 0, "across_splits": 0, "by_split_pair": {}, "examples": []}
    for i in order:
        key = dedup_key(records[i])
        first = kept_by_key.get(key)
        if first is None:
            kept_by_key[key] = i
            continue
        removed.add(i)
        rec, kept = records[i], records[first]
        kind = "within_split" if rec.split == kept.split else "across_splits"
        report[kind] += 1
        pair = f"{rec.split}<-{kept.split}"
        report["by_split_pair"][pair] = report["by_split_pair"].get(pair, 0) + 1
        if len(report["examples"]) < MAX_EXAMPLES:
            report["examples"].append({"removed": rec.id, "removed_split": rec.split, "kept": kept.id,
                                       "kept_split": kept.split, "response": rec.response[:80]})
    report["removed"] = len(removed)
    return [r for i, r in enumerate(records) if i not in removed], report
