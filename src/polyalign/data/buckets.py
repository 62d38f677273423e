"""Buckets: bucket_id = "|".join(record fields of the bucket key), with small buckets merged along length.

Merge rule (decided on TRAIN counts, applied to every split). Within one group — records that agree on every key
field except `length_bin` — the length bins that occur (in any split) are segments in bin order. While some
segment has fewer than `min_bucket_size` train records and the group has more than one segment: take the
smallest such segment (the shorter one on ties) and merge it with its adjacent segment that has fewer train
records (the shorter one on ties). A merged segment is labelled by the bins it spans joined with '+', e.g.
`long+xlong`. A group that ends as one segment still below the minimum keeps that label and is flagged
`below_min`; nothing is dropped. Records keep their own `length_bin`; only `bucket_id` uses the merged label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .schema import SPLITS, Record

LENGTH_FIELD = "length_bin"


def key_values(record: Record, key: Sequence[str]) -> tuple[str, ...]:
    """The record's values of the bucket-key fields."""
    return tuple(str(getattr(record, f)) for f in key)


def _group_of(values: tuple[str, ...], key: Sequence[str]) -> tuple[str, ...]:
    return tuple(v for f, v in zip(key, values) if f != LENGTH_FIELD)


def merge_segments(train_counts: dict[str, int], bins: Sequence[str], labels: Sequence[str],
                   min_size: int) -> tuple[dict[str, str], list[dict[str, Any]], bool]:
    """Apply the merge rule to one group. `train_counts` maps bin -> train records, `bins` are the bins present
    (any split), `labels` all bin labels in order. Returns (bin -> merged label, merge steps, below_min)."""
    index = {label: i for i, label in enumerate(labels)}
    segments = [[b] for b in sorted(bins, key=index.__getitem__)]
    counts = [train_counts.get(b, 0) for b in sorted(bins, key=index.__getitem__)]
    steps: list[dict[str, Any]] = []

    def label(segment: list[str]) -> str:
        lo, hi = index[segment[0]], index[segment[-1]]
        return "+".join(labels[lo:hi + 1])

    while len(segments) > 1:
        small = [i for i, c in enumerate(counts) if c < min_size]
        if not small:
            break
        i = min(small, key=lambda k: (counts[k], k))
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(segments)]
        j = min(neighbours, key=lambda k: (counts[k], k))
        lo, hi = sorted((i, j))
        merged = segments[lo] + segments[hi]
        steps.append({"small": label(segments[i]), "small_train": counts[i], "neighbour": label(segments[j]),
                      "neighbour_train": counts[j], "into": label(merged), "train": counts[i] + counts[j]})
        segments[lo], counts[lo] = merged, counts[lo] + counts[hi]
        del segments[hi], counts[hi]
    below_min = len(segments) == 1 and counts[0] < min_size
    mapping = {b: label(seg) for seg in segments for b in seg}
    return mapping, steps, below_min


def plan_buckets(records: Sequence[Record], key: Sequence[str], labels: Sequence[str],
                 min_size: int) -> dict[str, Any]:
    """The merge plan: {"merge_map": {original bucket id: merged id}, "merges": [...], "below_min": [...]}."""
    counts: Counter = Counter((key_values(r, key), r.split) for r in records)
    return plan_from_counts(counts, key, labels, min_size)


def plan_from_counts(counts: Mapping[tuple[tuple[str, ...], str], int], key: Sequence[str], labels: Sequence[str],
                     min_size: int) -> dict[str, Any]:
    """plan_buckets from record counts per (bucket-key values, split) (the streaming build's input)."""
    if LENGTH_FIELD not in key:
        train = Counter({v: n for (v, split), n in counts.items() if split == "train"})
        present = {v for (v, _), n in counts.items() if n}
        return {"merge_map": {"|".join(v): "|".join(v) for v in present}, "merges": [],
                "below_min": sorted("|".join(v) for v in present if train[v] < min_size)}
    pos = list(key).index(LENGTH_FIELD)
    train_counts: dict[tuple, Counter] = defaultdict(Counter)
    present: dict[tuple, set[str]] = defaultdict(set)
    for (values, split), n in counts.items():
        if not n:
            continue
        group = _group_of(values, key)
        present[group].add(values[pos])
        if split == "train":
            train_counts[group][values[pos]] += n
    merge_map: dict[str, str] = {}
    merges: list[dict[str, Any]] = []
    below_min: list[str] = []

    def bucket_id(group: tuple, bin_label: str) -> str:
        parts = list(group)
        parts.insert(pos, bin_label)
        return "|".join(parts)

    unknown = {b for bins in present.values() for b in bins} - set(labels)
    ordered = list(labels) + sorted(unknown)  # bins from another build's labels sort after ours
    for group in sorted(present):
        mapping, steps, small = merge_segments(train_counts[group], sorted(present[group]), ordered, min_size)
        for b, merged in mapping.items():
            merge_map[bucket_id(group, b)] = bucket_id(group, merged)
        for step in steps:
            merges.append({"group": "|".join(group), **step, "bucket_id": bucket_id(group, step["into"])})
        if small:
            below_min.append(bucket_id(group, next(iter(mapping.values()))))
    return {"merge_map": merge_map, "merges": merges, "below_min": sorted(below_min)}


def apply_buckets(records: Iterable[Record], key: Sequence[str], merge_map: dict[str, str]) -> None:
    """Set each record's bucket_id (the merged one) in place."""
    for r in records:
        own = "|".join(key_values(r, key))
        r.bucket_id = merge_map.get(own, own)


def bucket_table(records: Iterable[Record], plan: dict[str, Any], min_size: int) -> list[dict[str, Any]]:
    """One row per bucket: bucket_id, counts per split, total, the bins it merges, merged?, below_min?"""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        counts[r.bucket_id][r.split] += 1
    return table_from_counts(counts, plan, min_size)


def table_from_counts(counts: Mapping[str, Mapping[str, int]], plan: dict[str, Any],
                      min_size: int) -> list[dict[str, Any]]:
    """bucket_table from record counts per (merged) bucket id and split."""
    members: dict[str, list[str]] = defaultdict(list)
    for original, merged in plan["merge_map"].items():
        members[merged].append(original)
    below = set(plan["below_min"])
    rows = []
    for bucket_id in sorted(counts):
        row: dict[str, Any] = {"bucket_id": bucket_id}
        row.update({s: counts[bucket_id].get(s, 0) for s in SPLITS})
        row["total"] = sum(row[s] for s in SPLITS)
        row["members"] = sorted(members.get(bucket_id, [bucket_id]))
        row["merged"] = len(row["members"]) > 1
        row["below_min"] = bucket_id in below or row["train"] < min_size
        rows.append(row)
    return rows
