"""Bucket-temperature sampler: probabilities, a chi-square test of the sampled frequencies, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from polyalign.train.sampler import BucketTemperatureSampler, bucket_probabilities, empirical_bucket_frequencies

COUNTS = np.array([500, 120, 30, 8, 2])


def _buckets(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_probabilities_match_hand_formula(temperature: float) -> None:
    expected = np.array([n ** (1 / temperature) for n in COUNTS], dtype=float)
    expected /= expected.sum()
    np.testing.assert_allclose(bucket_probabilities(COUNTS, temperature), expected, rtol=1e-12)


def test_temperature_limits() -> None:
    np.testing.assert_allclose(bucket_probabilities(COUNTS, 1.0), COUNTS / COUNTS.sum())
    np.testing.assert_allclose(bucket_probabilities(COUNTS, math.inf), np.full(5, 0.2))
    # empty buckets get no mass at any temperature
    p = bucket_probabilities([10, 0, 5], math.inf)
    np.testing.assert_allclose(p, [0.5, 0.0, 0.5])
    # huge counts with a small temperature do not overflow
    p = bucket_probabilities([10**9, 10**8], 0.01)
    assert np.isfinite(p).all() and p[0] > 0.999


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        bucket_probabilities(COUNTS, bad)
    with pytest.raises(ValueError, match="temperature"):
        BucketTemperatureSampler(_buckets(COUNTS), bad)


@pytest.mark.parametrize("temperature", [1.0, 2.0, math.inf])
def test_sampled_frequencies_follow_n_to_the_one_over_t(temperature: float) -> None:
    """Chi-square goodness of fit of the sampled bucket counts against p ∝ n_b^(1/T) (fixed seed)."""
    buckets = _buckets(COUNTS)
    sampler = BucketTemperatureSampler(buckets, temperature, seed=123, num_samples=40_000)
    observed = np.bincount(buckets[sampler.indices()], minlength=len(COUNTS))
    expected = bucket_probabilities(COUNTS, temperature) * observed.sum()
    p_value = stats.chisquare(observed, expected).pvalue
    assert p_value > 0.01, (observed, expected)


def test_chi_square_detects_the_wrong_temperature() -> None:
    """The same test rejects a sampler whose temperature differs (the test has power)."""
    buckets = _buckets(COUNTS)
    sampler = BucketTemperatureSampler(buckets, 3.0, seed=123, num_samples=40_000)
    observed = np.bincount(buckets[sampler.indices()], minlength=len(COUNTS))
    expected = bucket_probabilities(COUNTS, 2.0) * observed.sum()
    assert stats.chisquare(observed, expected).pvalue < 1e-6


def test_uniform_within_bucket_and_few_repeats() -> None:
    buckets = _buckets(COUNTS)
    sampler = BucketTemperatureSampler(buckets, math.inf, seed=0, num_samples=5000)
    idx = sampler.indices()
    # bucket 4 has 2 members: 1000 draws cycle through permutations, so each member is drawn exactly 500 times
    small = idx[buckets[idx] == 4]
    values, counts = np.unique(small, return_counts=True)
    assert set(values) == set(np.flatnonzero(buckets == 4)) and abs(counts[0] - counts[1]) <= 1
    # bucket 0 (500 members, ~1000 draws): every member drawn twice
    big = idx[buckets[idx] == 0]
    assert np.bincount(big - 0, minlength=500).max() <= math.ceil(len(big) / 500)


def test_deterministic_per_seed_and_epoch() -> None:
    buckets = _buckets(COUNTS)
    a = BucketTemperatureSampler(buckets, 2.0, seed=7)
    b = BucketTemperatureSampler(buckets, 2.0, seed=7)
    assert list(a) == list(b)  # same on every rank
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = BucketTemperatureSampler(buckets, 2.0, seed=8)
    assert list(c) != list(BucketTemperatureSampler(buckets, 2.0, seed=7))
    assert len(a) == len(buckets)
    assert not hasattr(a, "generator")  # accelerate must not re-seed it per process


def test_empirical_frequencies() -> None:
    freq = empirical_bucket_frequencies([0, 1, 1, 3], [0, 1, 0, 2], num_buckets=3)
    np.testing.assert_allclose(freq, [0.25, 0.5, 0.25])
