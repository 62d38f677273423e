"""Closed-form support distances against independent computations (loops, scipy, sklearn)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.neighbors import NearestNeighbors

from polyalign.critic.distance import SupportDistance, band_distance, bucket_stats_from_matrix, human_baseline, \
    knn_mean_distance, mahalanobis_distance, standardize
from polyalign.errors import PolyAlignError


@pytest.fixture()
def buckets():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (120, 6)) * [1, 2, 0.5, 1, 3, 1] + [0, 5, 1, 0, 2, 0]
    b = rng.lognormal(0, 1, (80, 6))
    return {"a": a, "b": b}


def test_band_distance_matches_a_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (30, 5))
    low, high, std = np.full(5, -1.0), np.array([1.0, 2.0, 0.5, 1.0, 1.0]), np.array([0.5, 3.0, 0.1, 0.0, 1.0])
    low[3] = high[3] = 0.2  # a degenerate band: scale falls back to std, then eps
    expected = []
    for row in x:
        total = 0.0
        for f in range(5):
            scale = max(high[f] - low[f], std[f], 1e-6)
            if row[f] < low[f]:
                total += (low[f] - row[f]) / scale
            elif row[f] > high[f]:
                total += (row[f] - high[f]) / scale
        expected.append(total / 5)
    np.testing.assert_allclose(band_distance(x, low, high, std), expected, rtol=1e-12)
    inside = np.array([[0.0, 0.0, 0.0, 0.2, 0.0]])
    assert band_distance(inside, low, high, std)[0] == 0.0


def test_mahalanobis_matches_scipy(buckets):
    stats = bucket_stats_from_matrix(buckets["a"])
    x = np.random.default_rng(2).normal(0, 3, (25, 6))
    vi = np.linalg.inv(stats.cov)
    expected = [mahalanobis(row, stats.mean, vi) / np.sqrt(6) for row in x]
    np.testing.assert_allclose(mahalanobis_distance(x, stats.mean, stats.cov), expected, rtol=1e-9)


def test_knn_mean_distance_matches_sklearn(buckets):
    ref = buckets["a"]
    q = np.random.default_rng(3).normal(0, 2, (40, 6))
    nn = NearestNeighbors(n_neighbors=7).fit(ref)
    dist, _ = nn.kneighbors(q)
    np.testing.assert_allclose(knn_mean_distance(q, ref, 7, chunk=16), dist.mean(axis=1), rtol=1e-9)
    # leave-one-out on the reference itself: sklearn's kneighbors() without X excludes each point
    dist_loo, _ = nn.kneighbors()
    np.testing.assert_allclose(knn_mean_distance(ref, ref, 7, exclude_self=True, chunk=50), dist_loo.mean(axis=1),
                               rtol=1e-7)


def test_support_distance_per_bucket(buckets):
    stats = {b: bucket_stats_from_matrix(x) for b, x in buckets.items()}
    sd = SupportDistance(stats, buckets, k=5)
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (10, 6)), rng.lognormal(0, 1, (10, 6))])
    ids = ["a"] * 10 + ["b"] * 10
    order = rng.permutation(20)
    x, ids = x[order], [ids[i] for i in order]
    for method in ("band", "mahalanobis", "knn"):
        got = sd.compute(method, x, ids)
        for b in ("a", "b"):
            m = np.array(ids) == b
            s = stats[b]
            if method == "band":
                exp = band_distance(x[m], s.q10, s.q90, s.std)
            elif method == "mahalanobis":
                exp = mahalanobis_distance(x[m], s.mean, s.cov)
            else:
                ref_z = standardize(buckets[b], s)
                nn = NearestNeighbors(n_neighbors=5).fit(ref_z)
                norm = np.median(nn.kneighbors()[0].mean(axis=1))
                exp = nn.kneighbors(standardize(x[m], s))[0].mean(axis=1) / norm
            np.testing.assert_allclose(got[m], exp, rtol=1e-7)
    with pytest.raises(PolyAlignError, match="bucket"):
        sd.compute("band", x[:1], ["nope"])
    with pytest.raises(PolyAlignError, match="unknown distance method"):
        sd.compute("cosine", x[:1], ["a"])


def test_distances_are_small_for_humans_and_large_for_outliers(buckets):
    stats = {"a": bucket_stats_from_matrix(buckets["a"][:80])}
    sd = SupportDistance(stats, {"a": buckets["a"][:80]}, k=5)
    held_in = buckets["a"][80:]
    far = held_in + 10.0
    for method in ("band", "mahalanobis", "knn"):
        assert np.median(sd.compute(method, far, ["a"] * 40)) > 3 * np.median(sd.compute(method, held_in, ["a"] * 40))
    # the k-NN ratio is about 1 for held-out humans of the same distribution
    assert 0.7 < np.median(sd.knn(held_in, ["a"] * 40)) < 1.5


def test_human_baseline_quantiles(buckets):
    stats = {b: bucket_stats_from_matrix(x[:60]) for b, x in buckets.items()}
    sd = SupportDistance(stats, {b: x[:60] for b, x in buckets.items()}, k=5)
    held = np.concatenate([buckets["a"][60:], buckets["b"][60:]])
    ids = ["a"] * 60 + ["b"] * 20 + ["unknown"]
    held = np.concatenate([held, held[:1]])
    out = human_baseline(sd, held, ids)
    for method in ("band", "mahalanobis", "knn"):
        assert out[method]["skipped"] == 1
        assert out[method]["pooled"]["n"] == 80
        values = sd.compute(method, held[:80], ids[:80])
        assert out[method]["pooled"]["q50"] == pytest.approx(np.quantile(values, 0.5))
        assert out[method]["pooled"]["q99"] == pytest.approx(np.quantile(values, 0.99))
        assert out[method]["buckets"]["b"]["q90"] == pytest.approx(np.quantile(values[60:], 0.9))
