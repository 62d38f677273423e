"""The evaluation suite: stratified, capped, seeded, versioned; pools from TRAIN only; clear errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir

from polyalign.errors import InputError
from polyalign.eval.suite import build_suite, load_suite


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_data_dir(root, {"train": make_records(500, seed=1, split="train"),
                                 "val": make_records(60, seed=1, split="val"),
                                 "test": make_records(220, seed=1, split="test")})


def _build(data_dir, out, **kwargs):
    fn, names = feature_fn()
    return build_suite(data_dir, out, feature_fn=fn, feature_names=names, **kwargs)


def test_suite_is_stratified_capped_and_pools_come_from_train(data_dir, tmp_path):
    suite = load_suite(_build(data_dir, tmp_path / "s", cap_per_bucket=15, ref_pool=40, min_pool=5))
    counts = Counter(r.bucket_id for r in suite.items)
    test_counts = Counter(r.bucket_id for r in make_records(220, seed=1, split="test"))
    assert all(counts[b] == min(15, test_counts[b]) for b in counts)
    assert {r.split for r in suite.items} == {"test"}
    assert {r.split for r in suite.pool} == {"train"}
    assert max(Counter(r.bucket_id for r in suite.pool).values()) <= 40
    assert set(suite.buckets) <= {r.bucket_id for r in suite.pool}
    assert suite.item_features.shape == (len(suite.items), len(suite.feature_names))
    assert suite.manifest["buckets"][suite.buckets[0]]["items"] == counts[suite.buckets[0]]
    fn, _ = feature_fn()
    np.testing.assert_allclose(suite.pool_features[:3], fn([r.response for r in suite.pool[:3]],
                                                           [r.language for r in suite.pool[:3]]))


def test_suite_is_deterministic_per_seed(data_dir, tmp_path):
    a = load_suite(_build(data_dir, tmp_path / "a", cap_per_bucket=10, seed=3, min_pool=5))
    b = load_suite(_build(data_dir, tmp_path / "b", cap_per_bucket=10, seed=3, min_pool=5))
    c = load_suite(_build(data_dir, tmp_path / "c", cap_per_bucket=10, seed=4, min_pool=5))
    assert a.version == b.version and [r.id for r in a.items] == [r.id for r in b.items]
    assert a.version != c.version


def test_buckets_without_enough_train_references_are_dropped_and_reported(data_dir, tmp_path):
    suite = load_suite(_build(data_dir, tmp_path / "s", min_pool=30))
    dropped = suite.manifest["dropped_buckets"]
    assert dropped, "the synthetic data has small buckets"
    for bucket, info in dropped.items():
        assert info["train"] < 30 and "fewer than 30" in info["reason"]
        assert bucket not in suite.buckets


def test_edited_suite_is_refused(data_dir, tmp_path):
    path = _build(data_dir, tmp_path / "s", min_pool=5)
    lines = (path / "items.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["response"] += " edited"
    (path / "items.jsonl").write_text("\n".join([json.dumps(row, ensure_ascii=False)] + lines[1:]) + "\n",
                                      encoding="utf-8")
    with pytest.raises(InputError, match="suite_version"):
        load_suite(path)


def test_feature_mismatch_and_missing_suite_are_clear_errors(data_dir, tmp_path):
    path = _build(data_dir, tmp_path / "s", min_pool=5)
    with pytest.raises(InputError, match="rebuild it"):
        load_suite(path, feature_names=["something_else"])
    with pytest.raises(InputError, match="not an evaluation suite"):
        load_suite(tmp_path)
    with pytest.raises(InputError, match="not a data directory"):
        _build(tmp_path / "nowhere", tmp_path / "x")
