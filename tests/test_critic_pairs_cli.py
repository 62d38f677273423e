"""`polyalign critic fit|score|baseline` and `polyalign pairs build` end to end on a small real data build,
with synthetic model-like predictions; bad input gives a clear error and writes nothing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from hdpo_fixtures import model_like, write_jsonl
from polyalign.cli import app
from polyalign.critic.model import load_critic
from polyalign.data.build import build_dataset, load_records
from polyalign.data.sources import load_data_config
from polyalign.errors import PolyAlignError
from polyalign.io import read_json
from polyalign.pairs import load_pairs, same_text

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(repo_root, shared_data_dir, tmp_path_factory):
    """A data build of at most 60 conversations per bundled source, with predictions for train and val."""
    tmp = tmp_path_factory.mktemp("hdpo")
    data = yaml.safe_load((repo_root / "configs" / "data" / "bundled.yaml").read_text(encoding="utf-8"))
    for src in data["sources"]:
        src["path"] = str(shared_data_dir / Path(src["path"]).name)
        src["limit"] = 60
    data["min_bucket_size"] = 5
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    build_dataset(load_data_config(tmp / "data.yaml"), tmp / "data", progress=False)
    rng = random.Random(0)
    for split, samples in (("train", 2), ("val", 1)):
        rows = [{"id": r.id, "sample": k, "bucket_id": r.bucket_id, "language": r.language, "track": r.track,
                 "family": r.family, "length_bin": r.length_bin,
                 "prediction": model_like(r.response, r.language, rng)}
                for r in load_records(tmp / "data", split) for k in range(samples)]
        write_jsonl(tmp / f"pred_{split}.jsonl", rows)
    return tmp


@pytest.fixture(scope="module")
def critic_dir(workdir):
    result = runner.invoke(app, ["critic", "fit", "--data", str(workdir / "data"), "--predictions",
                                 str(workdir / "pred_train.jsonl"), "--out", str(workdir / "critic")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "held-out AUC" in result.output and "collapse check passed" in result.output
    return workdir / "critic"


def test_critic_fit_bundle(critic_dir):
    assert {p.name for p in critic_dir.iterdir()} == {"critic.pt", "critic.json", "metrics.json", "manifest.json",
                                                      "baseline.json"}
    metrics = read_json(critic_dir / "metrics.json")
    assert metrics["heldout_auc"] > 0.8
    assert set(metrics["auc_by_language"]) == {"en", "zh"} and set(metrics["auc_by_track"]) == {"single", "multi"}
    manifest = read_json(critic_dir / "manifest.json")
    assert manifest["stage"] == "critic" and manifest["config"]["min_auc"] == 0.75
    baseline = read_json(critic_dir / "baseline.json")
    assert set(baseline) == {"band", "mahalanobis", "knn", "critic"}
    assert baseline["knn"]["pooled"]["n"] > 0
    config = read_json(critic_dir / "critic.json")
    assert config["method"] == "learned" and "softplus" in config["target"]


def test_critic_score_cli(workdir, critic_dir):
    out = workdir / "scored.jsonl"
    result = runner.invoke(app, ["critic", "score", "--critic", str(critic_dir), "--input",
                                 str(workdir / "pred_val.jsonl"), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    inputs = [json.loads(line) for line in (workdir / "pred_val.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in inputs]
    critic = load_critic(critic_dir)
    expected = critic.score([r["prediction"] for r in inputs], [r["language"] for r in inputs],
                            [r["bucket_id"] for r in inputs])
    np.testing.assert_allclose([r["d"] for r in rows], expected, rtol=1e-12)


def test_critic_score_refuses_a_weak_critic(workdir, critic_dir):
    out = workdir / "never.jsonl"
    result = runner.invoke(app, ["critic", "score", "--critic", str(critic_dir), "--input",
                                 str(workdir / "pred_val.jsonl"), "--out", str(out), "--min-auc", "0.9999"])
    assert isinstance(result.exception, PolyAlignError) and "AUC" in str(result.exception)
    assert not out.exists()


def test_critic_score_bad_input_names_line_and_field(workdir, critic_dir):
    bad = write_jsonl(workdir / "bad.jsonl", [{"id": "a", "prediction": "hi", "language": "en", "bucket_id": "x"},
                                              {"id": "b", "language": "en", "bucket_id": "x"}])
    result = runner.invoke(app, ["critic", "score", "--critic", str(critic_dir), "--input", str(bad), "--out",
                                 str(workdir / "bad_out.jsonl")])
    assert "bad.jsonl:2: field 'prediction'" in str(result.exception)
    assert not (workdir / "bad_out.jsonl").exists()


def test_critic_baseline_cli(workdir):
    out = workdir / "baseline.json"
    result = runner.invoke(app, ["critic", "baseline", "--data", str(workdir / "data"), "--out", str(out),
                                 "--buckets"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Human baseline" in result.output
    assert set(read_json(out)) == {"band", "mahalanobis", "knn"}


def test_pairs_build_cli(workdir, critic_dir, repo_root):
    out = workdir / "pairs"
    result = runner.invoke(app, ["pairs", "build", str(repo_root / "configs" / "pairs" / "pairs.yaml"),
                                 "--data", str(workdir / "data"), "--predictions", str(workdir / "pred_train.jsonl"),
                                 "--critic", str(critic_dir), "--out", str(out),
                                 "--types", "human_over_model,human_ranked,critic_ranked"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows, skipped = load_pairs(out / "pairs.jsonl")
    assert not skipped
    assert {r["pair_type"] for r in rows} == {"human_over_model", "human_ranked", "critic_ranked"}
    assert not any(same_text(r["chosen"], r["rejected"]) for r in rows)
    assert np.mean([r["weight"] for r in rows]) == pytest.approx(1.0)
    summary = read_json(out / "summary.json")
    assert summary["n_pairs"] == len(rows)
    records = {r.id: r for r in load_records(workdir / "data", "train")}
    for r in rows[:50]:
        assert r["bucket_id"] == records[r["record_id"]].bucket_id
        if r["pair_type"] == "human_over_model":
            assert r["chosen"] == records[r["record_id"]].response and r["d_chosen"] < r["d_rejected"] + 50
    assert read_json(out / "manifest.json")["stage"] == "pairs"


def test_pairs_build_bad_input_writes_nothing(workdir, critic_dir):
    out = workdir / "pairs_bad"
    result = runner.invoke(app, ["pairs", "build", "--data", str(workdir / "data"), "--predictions",
                                 str(workdir / "missing.jsonl"), "--critic", str(critic_dir), "--out", str(out)])
    assert isinstance(result.exception, PolyAlignError) and "missing.jsonl" in str(result.exception)
    bad = write_jsonl(workdir / "bad_pred.jsonl", [{"id": "x", "sample": 0}])
    result = runner.invoke(app, ["pairs", "build", "--data", str(workdir / "data"), "--predictions", str(bad),
                                 "--critic", str(critic_dir), "--out", str(out)])
    assert "bad_pred.jsonl:1: field 'prediction'" in str(result.exception)
    result = runner.invoke(app, ["pairs", "build", "--data", str(workdir / "data"), "--critic",
                                 str(workdir / "nowhere"), "--out", str(out), "--types", "human_ranked"])
    assert "not a critic bundle" in str(result.exception)
    assert not out.exists()
    result = runner.invoke(app, ["critic", "fit", "--data", str(workdir / "data"), "--out", str(workdir / "c2")])
    assert "predictions" in str(result.exception) and not (workdir / "c2").exists()
