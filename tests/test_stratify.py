"""Bucket-stratified record subsets."""

from collections import Counter
from types import SimpleNamespace

import pytest

from polyalign.data.stratify import stratified_records


def _records():
    sizes = {"en|single|qa|short": 50, "zh|multi|task|long": 7, "en|multi|open_chat|medium": 30}
    return [SimpleNamespace(id=f"{b}#{i}", bucket_id=b) for b, n in sizes.items() for i in range(n)], sizes


def test_takes_min_of_bucket_size_and_cap_without_repeats():
    records, sizes = _records()
    chosen = stratified_records(records, per_bucket=10, seed=0)
    counts = Counter(r.bucket_id for r in chosen)
    assert counts == {b: min(n, 10) for b, n in sizes.items()}
    assert len({r.id for r in chosen}) == len(chosen)


def test_seeded_and_independent_of_input_order():
    records, _ = _records()
    first = [r.id for r in stratified_records(records, 10, seed=3)]
    assert first == [r.id for r in stratified_records(list(reversed(records)), 10, seed=3)]
    assert first != [r.id for r in stratified_records(records, 10, seed=4)]


def test_rejects_a_non_positive_cap():
    records, _ = _records()
    with pytest.raises(ValueError, match="per_bucket"):
        stratified_records(records, 0, seed=0)
