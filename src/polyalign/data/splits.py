"""Leakage-safe splits: every conversation goes to one split, chosen by a stable hash of (seed, conversation id).

u = int(sha256(f"{seed}:{conversation_id}")[:16], 16) / 2**64 lies in [0, 1); the split is the first of
train, val, test whose cumulative ratio exceeds u. The same seed always gives the same split, independent of
the order or number of other conversations; a source with a fixed `split` keeps it. A source with `group_by`
stores each conversation's group in meta["split_group"]; the group then replaces the conversation id in the
hash, so every conversation of a group (e.g. the threads of one OASST tree) lands in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from .schema import SPLITS, Record

_SCALE = float(2 ** 64)
SPLIT_GROUP = "split_group"


def split_key(record: Record) -> str:
    """The unit a split is drawn for: the record's split group if its source has one, else its conversation."""
    group = record.meta.get(SPLIT_GROUP) if record.meta else None
    return f"group:{group}" if group is not None else record.conversation_id


def split_unit(seed: int, conversation_id: str) -> float:
    """The conversation's position in [0, 1) for a seed."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).hexdigest()
    return int(digest[:16], 16) / _SCALE


def assign_split(conversation_id: str, seed: int, ratios: Mapping[str, float]) -> str:
    """train, val or test for a conversation (ratios in the order train, val, test; they sum to 1)."""
    u = split_unit(seed, conversation_id)
    cumulative = 0.0
    for name in SPLITS:
        cumulative += ratios.get(name, 0.0)
        if u < cumulative:
            return name
    return next(name for name in reversed(SPLITS) if ratios.get(name, 0.0) > 0)


def assign_splits(records: Iterable[Record], seed: int, ratios: Mapping[str, float],
                  fixed: Mapping[str, str] | None = None) -> None:
    """Set `record.split` in place: the source's fixed split if it has one (fixed: source name -> split), else
    the hashed split of the record's conversation (or split group)."""
    fixed = fixed or {}
    cache: dict[str, str] = {}
    for record in records:
        if record.source in fixed:
            record.split = fixed[record.source]
            continue
        key = split_key(record)
        split = cache.get(key)
        if split is None:
            split = cache[key] = assign_split(key, seed, ratios)
        record.split = split
