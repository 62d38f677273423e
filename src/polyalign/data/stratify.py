"""Seeded record subsets: the one stratified sampler (policy samples for the critic and pairs, the evaluation
suite's items and pools, SFT's per-bucket eval subsets, quick generation runs) and the one uniform subset
(training rows and pairs).

How a stratum is drawn (`sample_stratum`): its records sorted by id, all of them when the quota allows, else
`random.Random.sample` of that sorted list. Sorting first makes a draw independent of the input order; the
quota of each stratum depends only on the strata sizes (`per_group`: min(size, cap); `total`: round-robin over
the strata in name order, so that small strata keep all their records and large ones fill the rest).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, TypeVar

from ..errors import InputError

T = TypeVar("T")


def record_field(record: Any, name: str) -> Any:
    """A field of a Record-like object or of a dict (None when absent)."""
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def bucket_of(record: Any) -> str:
    """The record's bucket_id; a record without one is an InputError naming the record."""
    bucket = record_field(record, "bucket_id")
    if not isinstance(bucket, str) or not bucket:
        rid = record_field(record, "id")
        raise InputError(f"record '{rid if rid is not None else '?'}' has no bucket_id (build the data with "
                         f"`polyalign data build`)", field="bucket_id")
    return bucket


def sample_stratum(records: Sequence[T], k: int, rng: random.Random | int | str) -> list[T]:
    """Up to `k` records of one stratum: all of them in id order when there are at most k, else
    `rng.sample(records sorted by id, k)` in draw order. `rng` is a generator (shared by several strata) or
    the seed of a new one."""
    return _draw(records, k, rng, lambda r: record_field(r, "id"))


def stratified_sample(records: Sequence[T], seed: int | str, *, per_group: int | None = None,
                      total: int | None = None, key: Callable[[T], Hashable] = bucket_of,
                      order: Literal["draw", "input"] = "draw") -> list[T]:
    """A seeded stratified subset: at most `per_group` records of every stratum (`key`, by default the
    bucket), or `total` records over all strata, round-robin (None: no limit). One generator seeded `seed`
    draws the strata in sorted order with sample_stratum. order="draw": stratum by stratum, each in draw
    order; "input": the records' own order."""
    if per_group is not None and total is not None:
        raise ValueError("give per_group or total, not both")
    for name, cap in (("per_group", per_group), ("total", total)):
        if cap is not None and cap < 1:
            raise ValueError(f"{name} must be at least 1, got {cap}")
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        strata[key(record)].append(i)
    names = sorted(strata)
    quotas = _quotas([len(strata[name]) for name in names], per_group, total)
    rng = random.Random(seed)
    chosen: list[int] = []
    for name, quota in zip(names, quotas):
        chosen += _draw(strata[name], quota, rng, lambda i: record_field(records[i], "id"))
    return [records[i] for i in (sorted(chosen) if order == "input" else chosen)]


def random_subset(records: Sequence[T], n: int | None, seed: int) -> list[T]:
    """A seeded uniform subset of `n` records (all when n is None or larger), in their original order."""
    if n is None or n >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def round_robin_quotas(sizes: Sequence[int], total: int) -> list[int]:
    """How many records each stratum gives when `total` are taken one per stratum per round, strata in order:
    every stratum min(size, depth), plus one more for the first strata still holding records at that depth."""
    remaining = min(total, sum(sizes))
    quotas = [0] * len(sizes)
    depth = 0
    while remaining:
        for j, size in enumerate(sizes):
            if depth < size and remaining:
                quotas[j] += 1
                remaining -= 1
        depth += 1
    return quotas


def _quotas(sizes: list[int], per_group: int | None, total: int | None) -> list[int]:
    """Records to draw from each stratum."""
    if per_group is not None:
        return [min(size, per_group) for size in sizes]
    if total is not None:
        return round_robin_quotas(sizes, total)
    return sizes


def _draw(items: Sequence[T], k: int, rng: random.Random | int | str, sort_key: Callable[[T], Any]) -> list[T]:
    """All of `items` sorted by `sort_key` when k allows, else `rng.sample` of that sorted list."""
    ordered = sorted(items, key=sort_key)
    if len(ordered) <= k:
        return ordered
    generator = rng if isinstance(rng, random.Random) else random.Random(rng)
    return generator.sample(ordered, k)
