"""The bucket merge rule (decided on train counts, adjacent length bins, smaller neighbour first)."""

from __future__ import annotations

from polyalign.data.buckets import apply_buckets, bucket_table, merge_segments, plan_buckets
from polyalign.data.schema import Record

LABELS = ["short", "medium", "long", "xlong"]
KEY = ["language", "track", "family", "length_bin"]


def test_no_merge_when_every_bin_is_big_enough():
    mapping, steps, below = merge_segments({"short": 30, "medium": 25}, ["short", "medium"], LABELS, 20)
    assert mapping == {"short": "short", "medium": "medium"} and steps == [] and not below


def test_small_bin_merges_into_smaller_adjacent_neighbour():
    counts = {"short": 100, "medium": 30, "long": 5, "xlong": 50}
    mapping, steps, below = merge_segments(counts, list(counts), LABELS, 20)
    # long (5) has neighbours medium (30) and xlong (50): the smaller one, medium, takes it
    assert mapping == {"short": "short", "medium": "medium+long", "long": "medium+long", "xlong": "xlong"}
    assert steps == [{"small": "long", "small_train": 5, "neighbour": "medium", "neighbour_train": 30,
                      "into": "medium+long", "train": 35}]
    assert not below


def test_repeated_merges_smallest_first():
    counts = {"short": 50, "medium": 3, "long": 4, "xlong": 6}
    mapping, steps, _ = merge_segments(counts, list(counts), LABELS, 20)
    # medium (3) joins long (4) -> medium+long (7); then xlong (6) joins medium+long -> medium+long+xlong (13);
    # still < 20, so it joins short
    assert [s["into"] for s in steps] == ["medium+long", "medium+long+xlong", "short+medium+long+xlong"]
    assert set(mapping.values()) == {"short+medium+long+xlong"}


def test_whole_group_below_min_is_flagged_not_dropped():
    mapping, _, below = merge_segments({"short": 3, "long": 4}, ["short", "long"], LABELS, 20)
    # labels span the range of bins: medium has no records but lies between short and long
    assert set(mapping.values()) == {"short+medium+long"} and below


def test_bins_with_only_eval_records_are_merged():
    mapping, steps, _ = merge_segments({"short": 40}, ["short", "xlong"], LABELS, 20)
    assert mapping["xlong"] == "short+medium+long+xlong" and steps[0]["small_train"] == 0


def _rec(i: int, family: str, bin_: str, split: str, language: str = "en") -> Record:
    return Record(id=str(i), conversation_id=str(i), source="s", language=language, prompt="p", response="r",
                  track="single", family=family, length_bin=bin_, split=split)


def test_plan_on_train_counts_applied_to_all_splits():
    records = ([_rec(i, "qa", "short", "train") for i in range(25)]
               + [_rec(100 + i, "qa", "long", "train") for i in range(2)]
               + [_rec(200 + i, "qa", "long", "test") for i in range(30)]  # many test, few train: still merged
               + [_rec(300 + i, "task", "long", "train") for i in range(21)])
    plan = plan_buckets(records, KEY, LABELS, 20)
    assert plan["merge_map"]["en|single|qa|long"] == "en|single|qa|short+medium+long"
    assert plan["merge_map"]["en|single|task|long"] == "en|single|task|long"  # other group untouched
    apply_buckets(records, KEY, plan["merge_map"])
    assert {r.bucket_id for r in records if r.family == "qa"} == {"en|single|qa|short+medium+long"}
    assert all(r.length_bin in ("short", "long") for r in records)  # own bins kept
    table = {row["bucket_id"]: row for row in bucket_table(records, plan, 20)}
    row = table["en|single|qa|short+medium+long"]
    assert (row["train"], row["val"], row["test"], row["merged"], row["below_min"]) == (27, 0, 30, True, False)
    assert row["members"] == ["en|single|qa|long", "en|single|qa|short"]
    assert plan["merges"][0]["group"] == "en|single|qa"


def test_key_without_length_bin_flags_small_buckets():
    records = [_rec(i, "qa", "short", "train") for i in range(5)] + \
              [_rec(10 + i, "task", "short", "train", "zh") for i in range(30)]
    plan = plan_buckets(records, ["language", "family"], LABELS, 20)
    assert plan["merges"] == [] and plan["below_min"] == ["en|qa"]
    apply_buckets(records, ["language", "family"], plan["merge_map"])
    assert {r.bucket_id for r in records} == {"en|qa", "zh|task"}
