"""The evaluation suite: stratified, capped, seeded, versioned; pools from TRAIN only; clear errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir

from polyalign.errors import ConfigError, InputError
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


def _context(r):
    return f"{r.language}|{r.track}|{r.family}"


def test_suite_is_drawn_per_context_group_capped_and_pools_come_from_train(data_dir, tmp_path):
    suite = load_suite(_build(data_dir, tmp_path / "s", cap_per_bucket=15, ref_pool=40, min_pool=5))
    counts = Counter(_context(r) for r in suite.items)
    test_counts = Counter(_context(r) for r in make_records(220, seed=1, split="test"))
    assert all(counts[g] == min(15, test_counts[g]) for g in counts)
    assert {r.split for r in suite.items} == {"test"}
    assert {r.split for r in suite.pool} == {"train"}
    assert max(Counter(_context(r) for r in suite.pool).values()) <= 40
    assert set(counts) <= {_context(r) for r in suite.pool}
    assert suite.context_key == ("language", "track", "family")
    assert suite.view("context").groups == sorted(counts)
    assert suite.item_features.shape == (len(suite.items), len(suite.feature_names))
    first = sorted(counts)[0]
    assert suite.manifest["groups"][first]["items"] == counts[first]
    assert sum(suite.manifest["groups"][first]["items_by_bucket"].values()) == counts[first]
    fn, _ = feature_fn()
    np.testing.assert_allclose(suite.pool_features[:3], fn([r.response for r in suite.pool[:3]],
                                                           [r.language for r in suite.pool[:3]]))


def test_items_keep_the_length_mix_of_their_context_group(tmp_path):
    """Drawn uniformly inside a context group, not per gold length bin: the test split's bin shares survive."""
    records = make_records(900, seed=5, split="test")
    root = write_data_dir(tmp_path / "d", {"train": make_records(600, seed=6, split="train"), "val": [],
                                           "test": records})
    suite = load_suite(_build(root, tmp_path / "s", cap_per_bucket=10_000, ref_pool=40, min_pool=5))
    by_group = Counter((_context(r), r.length_bin) for r in suite.items)
    expected = Counter((_context(r), r.length_bin) for r in records if _context(r) in suite.view("context").groups)
    assert by_group == expected


def test_context_key_naming_the_response_or_an_unknown_field_is_refused_before_any_work(data_dir, tmp_path):
    for key, message in ((["language", "length_bin"], "property of the response"),
                         (["language", "bucket_id"], "property of the response"),
                         (["language", "colour"], "no record field")):
        out = tmp_path / key[-1]
        with pytest.raises(ConfigError, match=message):
            _build(data_dir, out, context_key=key, min_pool=5)
        assert not out.exists()


def test_suite_is_deterministic_per_seed(data_dir, tmp_path):
    a = load_suite(_build(data_dir, tmp_path / "a", cap_per_bucket=10, seed=3, min_pool=5))
    b = load_suite(_build(data_dir, tmp_path / "b", cap_per_bucket=10, seed=3, min_pool=5))
    c = load_suite(_build(data_dir, tmp_path / "c", cap_per_bucket=10, seed=4, min_pool=5))
    assert a.version == b.version and [r.id for r in a.items] == [r.id for r in b.items]
    assert a.version != c.version


def test_groups_without_enough_train_references_are_dropped_and_reported(data_dir, tmp_path):
    train = Counter(_context(r) for r in make_records(500, seed=1, split="train"))
    threshold = sorted(train.values())[len(train) // 2]
    suite = load_suite(_build(data_dir, tmp_path / "s", min_pool=threshold))
    dropped = suite.manifest["dropped_groups"]
    assert dropped, "half of the synthetic context groups are below the threshold"
    for group, info in dropped.items():
        assert info["train"] < threshold and f"fewer than {threshold}" in info["reason"]
        assert group not in suite.view("context").groups


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
