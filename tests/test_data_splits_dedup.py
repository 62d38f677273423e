"""Conversation-level splits (no leakage, determinism, ratios) and exact dedup with test > val > train priority."""

from __future__ import annotations

from collections import Counter

import pytest

from polyalign.data.dedup import dedup_key, deduplicate
from polyalign.data.schema import Record
from polyalign.data.splits import assign_split, assign_splits, split_unit

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}


def rec(conv: str, turn: int = 0, response: str = "r", prompt: str = "p", history=None, split: str = "",
        source: str = "s", context: str = "") -> Record:
    return Record(id=f"{conv}#{turn}", conversation_id=conv, source=source, language="en", prompt=prompt,
                  response=response, history=history or [], split=split, context=context)


def test_split_unit_is_in_unit_interval_and_stable():
    values = [split_unit(0, f"c{i}") for i in range(1000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert split_unit(0, "abc") == split_unit(0, "abc") != split_unit(1, "abc")


def test_no_conversation_spans_two_splits():
    records = [rec(f"c{i}", t) for i in range(300) for t in range(4)]
    assign_splits(records, seed=3, ratios=RATIOS)
    by_conv: dict[str, set[str]] = {}
    for r in records:
        by_conv.setdefault(r.conversation_id, set()).add(r.split)
    assert all(len(s) == 1 for s in by_conv.values())
    train = {r.conversation_id for r in records if r.split == "train"}
    held_out = {r.conversation_id for r in records if r.split in ("val", "test")}
    assert not train & held_out


def test_deterministic_and_order_independent():
    ids = [f"conv-{i}" for i in range(500)]
    a = [assign_split(c, 7, RATIOS) for c in ids]
    b = [assign_split(c, 7, RATIOS) for c in reversed(ids)][::-1]
    assert a == b
    assert a != [assign_split(c, 8, RATIOS) for c in ids]  # another seed moves some conversations


def test_ratios_approximately_respected():
    n = 20_000
    counts = Counter(assign_split(f"c{i}", 0, RATIOS) for i in range(n))
    for split, ratio in RATIOS.items():
        # binomial sd at n=20000 is <= 0.0029; 4 sd
        assert abs(counts[split] / n - ratio) < 0.012, (split, counts)
    assert Counter(assign_split(f"c{i}", 0, {"train": 1.0, "val": 0.0, "test": 0.0}) for i in range(200)) == \
        {"train": 200}


def test_fixed_split_per_source():
    records = [rec(f"a{i}", source="eval_set") for i in range(50)] + [rec(f"b{i}") for i in range(50)]
    assign_splits(records, 0, RATIOS, fixed={"eval_set": "test"})
    assert {r.split for r in records if r.source == "eval_set"} == {"test"}
    assert {r.split for r in records if r.source == "s"} > {"train"}


def test_dedup_key_uses_context_history_prompt_response():
    base = rec("a")
    assert dedup_key(base) == dedup_key(rec("b"))  # ids do not matter
    assert dedup_key(base) != dedup_key(rec("a", response="other"))
    assert dedup_key(base) != dedup_key(rec("a", context="ctx"))
    assert dedup_key(base) != dedup_key(rec("a", history=[{"role": "user", "content": "x"},
                                                          {"role": "assistant", "content": "y"}]))


@pytest.mark.parametrize("order", [("train", "val", "test"), ("test", "train", "val"), ("val", "test", "train")])
def test_dedup_keeps_highest_priority_split(order):
    records = [rec(f"{s}-conv", split=s) for s in order]
    kept, report = deduplicate(records)
    assert [r.split for r in kept] == ["test"]
    assert report["removed"] == 2 and report["across_splits"] == 2 and report["within_split"] == 0
    assert report["by_split_pair"] == {"train<-test": 1, "val<-test": 1}


def test_dedup_within_split_keeps_first_and_input_order():
    records = [rec("x", split="train", response="same"), rec("y", split="train", response="unique"),
               rec("z", split="train", response="same"), rec("w", split="val", response="other")]
    kept, report = deduplicate(records)
    assert [r.conversation_id for r in kept] == ["x", "y", "w"]
    assert report["within_split"] == 1 and report["examples"][0]["removed"] == "z#0"


def test_split_group_keeps_a_group_together():
    records = [rec(f"thread{i}") for i in range(40)]
    for i, r in enumerate(records):
        r.meta = {"split_group": f"tree{i % 4}"}
    assign_splits(records, 0, RATIOS)
    by_group: dict[str, set[str]] = {}
    for r in records:
        by_group.setdefault(r.meta["split_group"], set()).add(r.split)
    assert all(len(s) == 1 for s in by_group.values())
    # with 4 groups the 40 threads fall into at most 4 (group-determined) splits
    assert {r.split for r in records} == {assign_split("group:" + g, 0, RATIOS) for g in by_group}
