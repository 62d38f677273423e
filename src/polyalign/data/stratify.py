"""Bucket-stratified record subsets (policy samples for the critic and pairs, quick generation runs)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def stratified_records(records: Sequence[Any], per_bucket: int, seed: int) -> list[Any]:
    """Up to `per_bucket` records of every bucket, drawn with a seeded generator, in a stable order."""
    if per_bucket < 1:
        raise ValueError(f"per_bucket must be at least 1, got {per_bucket}")
    by_bucket: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        by_bucket[record.bucket_id].append(record)
    rng = random.Random(seed)
    chosen: list[Any] = []
    for bucket in sorted(by_bucket):
        group = sorted(by_bucket[bucket], key=lambda r: r.id)
        chosen.extend(group if len(group) <= per_bucket else rng.sample(group, per_bucket))
    return chosen
