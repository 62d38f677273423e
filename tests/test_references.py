"""Per-bucket human references: statistics against numpy, shrunk covariance, save/load, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polyalign.data.references import (QUANTILE_LEVELS, BucketReference, References, build_references,
                                       robust_scale)
from polyalign.errors import InputError

NAMES = ("f0", "f1", "f2", "f3")


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    buckets = ["en|single|qa|short"] * 50 + ["zh|multi|task|long"] * 30 + ["en|multi|chat|medium"] * 5
    matrix = rng.lognormal(size=(len(buckets), len(NAMES)))
    matrix[:, 3] = rng.integers(0, 3, size=len(buckets))
    matrix[np.array(buckets) == "en|multi|chat|medium", 2] = 7.0  # a feature constant within a small bucket
    order = rng.permutation(len(buckets))  # buckets interleaved, as rows come from the data build
    ids = [f"r{i}" for i in range(len(buckets))]
    return matrix[order], [buckets[i] for i in order], [ids[i] for i in order]


def test_statistics_match_numpy(data):
    matrix, buckets, ids = data
    refs = build_references(matrix, buckets, ids, NAMES, min_count=20)
    assert refs.bucket_ids() == sorted(set(buckets))
    for bid in set(buckets):
        rows = np.array(buckets) == bid
        x = matrix[rows]
        ref = refs[bid]
        assert ref.count == rows.sum()
        assert ref.ids == [i for i, keep in zip(ids, rows) if keep]
        np.testing.assert_allclose(ref.mean, x.mean(axis=0))
        np.testing.assert_allclose(ref.std, x.std(axis=0, ddof=0))
        np.testing.assert_allclose(ref.quantiles, np.quantile(x, QUANTILE_LEVELS, axis=0, method="linear"))
        for k, level in enumerate(QUANTILE_LEVELS):
            np.testing.assert_allclose(ref.quantile(level), np.quantile(x, level, axis=0))
        iqr = np.subtract(*np.quantile(x, [0.75, 0.25], axis=0))
        std = x.std(axis=0)
        np.testing.assert_allclose(ref.scale, np.where(iqr > 0, iqr / 1.349, np.where(std > 0, std, 1.0)))
    with pytest.raises(KeyError, match="not stored"):
        refs[buckets[0]].quantile(0.3)


def test_below_min_flag_nothing_dropped(data):
    matrix, buckets, ids = data
    refs = build_references(matrix, buckets, ids, NAMES, min_count=20)
    assert {bid: refs[bid].below_min for bid in refs.bucket_ids()} == {
        "en|multi|chat|medium": True, "en|single|qa|short": False, "zh|multi|task|long": False}
    assert sum(refs[b].count for b in refs.bucket_ids()) == len(ids)
    assert not build_references(matrix, buckets, ids, NAMES, min_count=5)["en|multi|chat|medium"].below_min


def test_robust_scale_fallbacks():
    values = np.array([[0.0, 0.0, 5.0], [1.349, 0.0, 5.0], [2.698, 0.0, 5.0], [4.047, 0.0, 5.0], [5.396, 6.0, 5.0]])
    # IQR / 1.349; the std where the IQR is 0; then the fallback where the std is 0 too
    np.testing.assert_allclose(robust_scale(values, fallback=1.0), [2.0, np.std([0, 0, 0, 0, 6]), 1.0])
    assert robust_scale(values)[2] == 0.0  # no fallback: no spread stays 0
    assert robust_scale(values, fallback=np.array([7.0, 8.0, 9.0]))[2] == 9.0


def test_covariance_small_bucket_with_constant_feature_is_spd(data):
    matrix, buckets, ids = data
    refs = build_references(matrix, buckets, ids, NAMES)
    for bid in refs.bucket_ids():
        cov = refs[bid].cov
        np.testing.assert_array_equal(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() > 0, bid
        np.linalg.cholesky(cov)
    small = refs["en|multi|chat|medium"]
    assert small.count == 5 and small.std[2] == 0
    # A wide bucket (more features than rows), as with 57 features and 5 rows, is still invertible.
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(5, 57))
    wide[:, 10] = 3.0
    cov = build_references(wide, ["b"] * 5, list("abcde"), [f"x{i}" for i in range(57)])["b"].cov
    assert np.linalg.eigvalsh(cov).min() > 0
    np.linalg.inv(cov)


def test_covariance_close_to_sample_covariance_for_large_buckets():
    rng = np.random.default_rng(2)
    x = rng.multivariate_normal([0, 10, 100], [[1, 0.5, 0], [0.5, 2, 0], [0, 0, 50]], size=20000)
    cov = build_references(x, ["b"] * len(x), [str(i) for i in range(len(x))], NAMES[:3])["b"].cov
    np.testing.assert_allclose(cov, np.cov(x.T, ddof=0), rtol=0.02, atol=0.02)


def test_single_row_and_constant_buckets():
    refs = build_references(np.array([[1.0, 2.0], [3.0, 3.0], [3.0, 3.0]]), ["one", "const", "const"],
                            ["a", "b", "c"], ["f", "g"])
    np.testing.assert_array_equal(refs["one"].cov, np.eye(2))  # scale falls back to 1.0
    np.testing.assert_array_equal(refs["const"].cov, np.eye(2))
    np.testing.assert_array_equal(refs["one"].scale, [1.0, 1.0])


def test_standardize(data):
    matrix, buckets, ids = data
    refs = build_references(matrix, buckets, ids, NAMES)
    bid = buckets[0]
    ref = refs[bid]
    np.testing.assert_allclose(refs.standardize(matrix[:3], bid), (matrix[:3] - ref.quantile(0.5)) / ref.scale)
    np.testing.assert_allclose(refs.standardize(ref.median, bid), np.zeros(len(NAMES)))
    assert bid in refs and "nope" not in refs
    with pytest.raises(KeyError, match="no reference for bucket 'nope'"):
        refs.standardize(matrix[0], "nope")


def test_save_load_round_trip(data, tmp_path):
    matrix, buckets, ids = data
    refs = build_references(matrix, buckets, ids, NAMES)
    path = refs.save(tmp_path / "references.json")
    loaded = References.load(path, feature_names=NAMES)
    assert loaded.feature_names == NAMES and loaded.quantile_levels == QUANTILE_LEVELS
    assert loaded.bucket_ids() == refs.bucket_ids()
    for bid in refs.bucket_ids():
        a, b = refs[bid], loaded[bid]
        assert (a.count, a.ids, a.below_min, a.bucket_id) == (b.count, b.ids, b.below_min, b.bucket_id)
        for field in ("mean", "std", "quantiles", "scale", "cov"):
            np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-11, atol=0)
        np.linalg.cholesky(b.cov)
    assert [p.name for p in tmp_path.iterdir()] == ["references.json"]  # atomic: no temp file left


def _saved(data, tmp_path):
    matrix, buckets, ids = data
    path = build_references(matrix, buckets, ids, NAMES).save(tmp_path / "references.json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(format="other"), "field 'format'"),
    (lambda d: d.update(feature_names=["f0", "f1", "f3", "f2"]), "different order"),
    (lambda d: d.update(feature_names=["f0", "f1", "f2", "zz"]), r"missing \['f3'\], extra \['zz'\]"),
    (lambda d: d["buckets"]["zh|multi|task|long"].pop("cov"), r"buckets.zh\|multi\|task\|long.cov': missing"),
    (lambda d: d["buckets"]["zh|multi|task|long"].update(mean=[1, 2]), r"mean': has shape \(2,\)"),
    (lambda d: d["buckets"]["zh|multi|task|long"].update(count=0), "count': must be a positive integer"),
    (lambda d: d["buckets"]["zh|multi|task|long"].update(ids=["x"]), "ids': must be a list of 30"),
    (lambda d: d["buckets"]["zh|multi|task|long"]["std"].__setitem__(0, "a"), "std': must be numbers"),
    (lambda d: d.update(quantile_levels=[0.1, 0.9]), "must include 0.5"),
])
def test_load_rejects_malformed(data, tmp_path, mutate, match):
    path, raw = _saved(data, tmp_path)
    mutate(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=match) as info:
        References.load(path, feature_names=NAMES)
    assert str(path) in str(info.value)


def test_load_checks_current_feature_names_by_default(data, tmp_path):
    path, _ = _saved(data, tmp_path)
    with pytest.raises(InputError, match="rebuild the data"):
        References.load(path)  # NAMES are not this version's FEATURE_NAMES
    path.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        References.load(path, feature_names=NAMES)


def test_bad_build_input(data):
    matrix, buckets, ids = data
    with pytest.raises(ValueError, match="rows"):
        build_references(matrix, buckets[:-1], ids, NAMES)
    with pytest.raises(ValueError, match="columns"):
        build_references(matrix, buckets, ids, NAMES[:3])
    bad = matrix.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match=f"record '{ids[4]}' has a non-finite value") as info:
        build_references(bad, buckets, ids, NAMES)
    assert info.value.field == "f1"
    assert len(build_references(np.zeros((0, 4)), [], [], NAMES)) == 0


def test_real_features_end_to_end(tmp_path):
    from polyalign.data.features import FEATURE_NAMES, feature_matrix

    texts = ["Hello there! How are you?", "Fine, thanks.", "Sure - see https://x.org", "ok", "我很好，谢谢！",
             "今天天气不错。", "你呢？", "好的"]
    languages = ["en"] * 4 + ["zh"] * 4
    matrix = feature_matrix(texts, languages)
    refs = build_references(matrix, [f"{lang}|b" for lang in languages], [str(i) for i in range(8)],
                            FEATURE_NAMES, min_count=20)
    assert all(refs[b].below_min for b in refs.bucket_ids())
    loaded = References.load(refs.save(tmp_path / "references.json"))
    assert isinstance(loaded["zh|b"], BucketReference)
    np.linalg.cholesky(loaded["zh|b"].cov)
