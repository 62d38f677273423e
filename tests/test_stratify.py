"""The one seeded stratified sampler (polyalign.data.stratify) and the uniform subset: counts, seeding, input
order independence, and the same draws as the helpers it replaced (kept here verbatim as the reference)."""

import random
from collections import Counter, defaultdict
from types import SimpleNamespace

import pytest

from polyalign.data.stratify import random_subset, round_robin_quotas, sample_stratum, stratified_sample
from polyalign.errors import InputError


def _records():
    sizes = {"en|single|qa|short": 50, "zh|multi|task|long": 7, "en|multi|open_chat|medium": 30}
    return [SimpleNamespace(id=f"{b}#{i}", bucket_id=b) for b, n in sizes.items() for i in range(n)], sizes


def _shuffled_records(seed: int, n_buckets: int = 9, max_size: int = 60):
    rng = random.Random(seed)
    records = [SimpleNamespace(id=f"r{rng.randrange(10**9):09d}-{b}-{i}", bucket_id=f"b{b}")
               for b in range(n_buckets) for i in range(rng.randrange(1, max_size))]
    rng.shuffle(records)
    return records


# --- the helpers this module replaced, verbatim (data/stratify.py, eval/suite.py, train/examples.py @ fcbf114)

def legacy_stratified_records(records, per_bucket, seed):
    by_bucket = defaultdict(list)
    for record in records:
        by_bucket[record.bucket_id].append(record)
    rng = random.Random(seed)
    chosen = []
    for bucket in sorted(by_bucket):
        group = sorted(by_bucket[bucket], key=lambda r: r.id)
        chosen.extend(group if len(group) <= per_bucket else rng.sample(group, per_bucket))
    return chosen


def legacy_suite_sample(records, k, seed):
    ordered = sorted(records, key=lambda r: r.id)
    if len(ordered) <= k:
        return ordered
    return sorted(random.Random(seed).sample(ordered, k), key=lambda r: r.id)


def legacy_random_subset(records, n, seed):
    if n is None or n >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def legacy_stratified_subset(records, n, seed):
    if n is None or n >= len(records):
        return list(records)
    rng = random.Random(seed)
    by_bucket = defaultdict(list)
    for i, record in enumerate(records):
        by_bucket[record.bucket_id].append(i)
    queues = []
    for name in sorted(by_bucket):
        members = by_bucket[name]
        rng.shuffle(members)
        queues.append(members)
    chosen = []
    depth = 0
    while len(chosen) < n:
        for members in queues:
            if depth < len(members) and len(chosen) < n:
                chosen.append(members[depth])
        depth += 1
    return [records[i] for i in sorted(chosen)]


# --- behaviour

def test_takes_min_of_bucket_size_and_cap_without_repeats():
    records, sizes = _records()
    chosen = stratified_sample(records, 0, per_group=10)
    counts = Counter(r.bucket_id for r in chosen)
    assert counts == {b: min(n, 10) for b, n in sizes.items()}
    assert len({r.id for r in chosen}) == len(chosen)


def test_seeded_and_independent_of_input_order():
    records, _ = _records()
    first = [r.id for r in stratified_sample(records, 3, per_group=10)]
    assert first == [r.id for r in stratified_sample(list(reversed(records)), 3, per_group=10)]
    assert first != [r.id for r in stratified_sample(records, 4, per_group=10)]


def test_rejects_a_non_positive_cap_and_two_caps():
    records, _ = _records()
    with pytest.raises(ValueError, match="per_group"):
        stratified_sample(records, 0, per_group=0)
    with pytest.raises(ValueError, match="total"):
        stratified_sample(records, 0, total=0)
    with pytest.raises(ValueError, match="not both"):
        stratified_sample(records, 0, per_group=1, total=1)


def test_a_record_without_bucket_is_an_input_error():
    records, _ = _records()
    records[3].bucket_id = ""
    with pytest.raises(InputError, match="bucket_id"):
        stratified_sample(records, 0, per_group=5)


def test_total_covers_every_bucket_round_robin_in_input_order():
    records, sizes = _records()
    chosen = stratified_sample(records, 0, total=40, order="input")
    counts = Counter(r.bucket_id for r in chosen)
    assert len(chosen) == 40 and set(counts) == set(sizes)
    assert counts["zh|multi|task|long"] == 7  # the small bucket keeps everything
    position = {id(r): i for i, r in enumerate(records)}
    assert [position[id(r)] for r in chosen] == sorted(position[id(r)] for r in chosen)
    assert stratified_sample(records, 0, total=len(records) + 5, order="input") == records
    assert stratified_sample(records, 0, order="input") == records  # no cap: everything


def test_round_robin_quotas():
    assert round_robin_quotas([5, 1, 3], 6) == [3, 1, 2]
    assert round_robin_quotas([5, 1, 3], 2) == [1, 1, 0]
    assert round_robin_quotas([2, 2], 10) == [2, 2]


def test_random_subset_is_seeded_in_input_order():
    records, _ = _records()
    assert random_subset(records, 20, 1) == random_subset(records, 20, 1)
    assert random_subset(records, 20, 1) != random_subset(records, 20, 2)
    assert random_subset(records, None, 0) == records


# --- the same draws as the helpers it replaced (cached artifacts: policy samples, suites, training subsets)

@pytest.mark.parametrize("seed", range(8))
def test_per_group_draw_equals_the_policy_sample_helper(seed):
    records = _shuffled_records(seed)
    for cap in (1, 5, 20, 100):
        assert stratified_sample(records, seed, per_group=cap) == legacy_stratified_records(records, cap, seed)


@pytest.mark.parametrize("seed", range(8))
def test_stratum_draw_equals_the_suite_helper(seed):
    records = _shuffled_records(seed, n_buckets=1, max_size=200)
    for k in (1, 10, 50, 500):
        for group_seed in (f"{seed}|items|en|single|qa", f"{seed}|pool|zh|multi|task"):
            new = sorted(sample_stratum(records, k, group_seed), key=lambda r: r.id)
            assert new == legacy_suite_sample(records, k, group_seed)


@pytest.mark.parametrize("seed", range(8))
def test_random_subset_equals_the_training_helper(seed):
    records = _shuffled_records(seed)
    for n in (None, 1, 30, len(records), len(records) + 1):
        assert random_subset(records, n, seed) == legacy_random_subset(records, n, seed)


@pytest.mark.parametrize("seed", range(8))
def test_total_draw_has_the_per_bucket_counts_of_the_round_robin_helper(seed):
    """SFT's eval subsets (stratified_subset before): the same number of records per bucket and the input
    order; WHICH records differ (the old helper shuffled each bucket, this one samples it), reported."""
    records = _shuffled_records(seed)
    for n in (1, 5, 40, 200, len(records)):
        new = stratified_sample(records, seed, total=n, order="input")
        old = legacy_stratified_subset(records, n, seed)
        assert Counter(r.bucket_id for r in new) == Counter(r.bucket_id for r in old)
        position = {id(r): i for i, r in enumerate(records)}
        assert [position[id(r)] for r in new] == sorted(position[id(r)] for r in new)
    assert stratified_sample(records, seed, total=len(records), order="input") == \
        legacy_stratified_subset(records, len(records), seed)
