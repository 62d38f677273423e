"""One robust scale (polyalign.data.references.robust_scale) for the references, the critic's bucket statistics
and the evaluation's scalers: bit-identical to the two functions it replaced (kept here verbatim)."""

from __future__ import annotations

import numpy as np
import pytest

from polyalign.critic.distance import bucket_stats_from_matrix
from polyalign.data.references import IQR_TO_SIGMA, robust_scale, shrunk_covariance
from polyalign.eval import naturalness


def legacy_references_scale(q25, q75, std):  # data/references.py @ fcbf114
    scale = (np.asarray(q75, dtype=np.float64) - np.asarray(q25, dtype=np.float64)) / IQR_TO_SIGMA
    scale = np.where(scale > 0, scale, std)
    return np.where(scale > 0, scale, 1.0)


def legacy_naturalness_scale(values):  # eval/naturalness.py @ fcbf114
    values = np.asarray(values, dtype=float)
    q25, q75 = np.percentile(values, [25, 75], axis=0)
    scale = (q75 - q25) / 1.349
    std = values.std(axis=0)
    return np.where(scale > 0, scale, std)


def _matrices():
    """Matrices with heavy tails, ties, mostly-constant and constant columns, one row, many rows."""
    rng = np.random.default_rng(0)
    out = []
    for n in (1, 2, 3, 7, 20, 301):
        x = np.column_stack([rng.normal(size=n), rng.standard_cauchy(size=n), rng.integers(0, 3, size=n),
                             np.where(rng.random(n) < 0.9, 0.0, rng.exponential(size=n)), np.full(n, 4.2),
                             rng.random(n) * 1e-9, np.round(rng.lognormal(size=n), 2)])
        out.append(x)
    return out


@pytest.mark.parametrize("x", _matrices(), ids=lambda x: f"n{len(x)}")
def test_equals_the_references_scale(x):
    old = legacy_references_scale(np.quantile(x, 0.25, axis=0), np.quantile(x, 0.75, axis=0), x.std(axis=0))
    np.testing.assert_array_equal(robust_scale(x, fallback=1.0), old)


@pytest.mark.parametrize("x", _matrices(), ids=lambda x: f"n{len(x)}")
def test_equals_the_evaluation_scale(x):
    np.testing.assert_array_equal(naturalness.robust_scale(x), legacy_naturalness_scale(x))
    np.testing.assert_array_equal(robust_scale(x[:, :1]), legacy_naturalness_scale(x[:, :1]))


@pytest.mark.parametrize("x", _matrices(), ids=lambda x: f"n{len(x)}")
def test_critic_bucket_stats_unchanged(x):
    q10, q25, q50, q75, q90 = np.quantile(x, [0.10, 0.25, 0.50, 0.75, 0.90], axis=0)
    scale = legacy_references_scale(q25, q75, x.std(axis=0))
    stats = bucket_stats_from_matrix(x)
    for got, want in ((stats.q10, q10), (stats.q50, q50), (stats.q90, q90), (stats.scale, scale),
                      (stats.cov, shrunk_covariance(x, scale))):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("x", _matrices(), ids=lambda x: f"n{len(x)}")
def test_feature_scaler_fallback_unchanged(x):
    fallback = np.linspace(0.5, 2.0, x.shape[1])
    old = legacy_naturalness_scale(x)
    old = np.where(old > 0, old, fallback)
    scaler = naturalness.FeatureScaler.fit(x, fallback_scale=fallback)
    np.testing.assert_array_equal(scaler.used, old > 0)
    np.testing.assert_array_equal(scaler.scale, np.where(old > 0, old, 1.0))
