"""`polyalign run`: stages wired end to end on a small slice of the bundled data, reruns skip, bad input fails
before any work, and a training stage killed with SIGKILL resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from polyalign.errors import ConfigError, PolyAlignError
from polyalign.pipeline.run import run_pipeline

PLAIN_DPO_LOSS = {"reg_lambda": 0.0, "anchor_gamma": 0.0, "use_weights": False}
SOURCES = [("en_oasst1", "assistant", "en"), ("en_taskmaster4", "task", "en"), ("zh_crosswoz", "task", "zh"),
           ("zh_cmrc2018", "qa", "zh")]


def small_config(tmp: Path, data_dir: Path, *, sft_steps: int = 2, save_steps: int | None = None) -> Path:
    """A pipeline config for a tiny model on 4 sources x 40 conversations (runs in well under a minute)."""
    files = {"en_oasst1": "en_oasst1.jsonl", "en_taskmaster4": "en_taskmaster4.jsonl",
             "zh_crosswoz": "zh_crosswoz.jsonl", "zh_cmrc2018": "zh_cmrc2018.jsonl"}
    data = {"sources": [{"name": n, "path": str(data_dir / files[n]), "format": "messages", "language": lang,
                         "family": fam, "limit": 40} for n, fam, lang in SOURCES],
            "min_bucket_size": 5, "split_ratios": {"train": 0.7, "val": 0.15, "test": 0.15}}
    training = {"max_steps": sft_steps, "logging_steps": 1, "per_device_train_batch_size": 4,
                "save_strategy": "steps" if save_steps else "no", **({"save_steps": save_steps} if save_steps else {})}
    sft = {"max_train_samples": 64, "max_eval_samples": 24, "max_length": 96, "training": training}
    pref = {"max_length": 96, "max_train_pairs": 32, "training": {"max_steps": 2, "per_device_train_batch_size": 4,
                                                                   "save_strategy": "no", "logging_steps": 1}}
    config = {
        "name": "test", "workdir": str(tmp / "runs"), "seed": 0, "data": data,
        "base": {"tiny": {"vocab_size": 600, "hidden": 32, "layers": 1, "heads": 2},
                 "pretrain": {"max_steps": 2, "batch_size": 4, "block_size": 32, "save_steps": 1}},
        "sft": sft, "bucket_sft": {**sft, "balance": {"enabled": True}},
        "dpo": {**pref, "loss": PLAIN_DPO_LOSS}, "hdpo": {**pref, "loss": {"reg_lambda": 0.5, "anchor_gamma": 0.05}},
        "critic": {"min_auc": 0.0, "max_epochs": 2, "baseline": False},
        "pairs": {"min_auc": 0.0, "allow_weak": True, "unknown_bucket": "pooled"},
        "samples": {"per_bucket": 2}, "decoding": {"max_new_tokens": 8, "batch_size": 16},
        "suite": {"cap_per_bucket": 3, "ref_pool": 20}, "methods": ["base", "sft"],
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def _quiet(_: str) -> None:
    pass


def test_bad_input_fails_before_any_work(tmp_path, shared_data_dir):
    config = small_config(tmp_path, shared_data_dir)
    with pytest.raises(ConfigError, match="unknown stage.*'nope'"):
        run_pipeline(config, targets=["nope"], log=_quiet)
    raw = yaml.safe_load(config.read_text())
    raw["stages"] = ["sft", "evaluate_everything"]
    bad = tmp_path / "bad_stage.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="evaluate_everything"):
        run_pipeline(bad, log=_quiet)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["sources"][0]["path"] = str(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad_data.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="missing.jsonl"):
        run_pipeline(bad, log=_quiet)
    raw = yaml.safe_load(config.read_text())
    raw["base"]["model"] = str(tmp_path / "no_such_model")
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolyAlignError, match="no_such_model"):
        run_pipeline(bad, log=_quiet)
    (tmp_path / "not_a_model").mkdir()
    raw["base"]["model"] = str(tmp_path / "not_a_model")
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolyAlignError, match="cannot be loaded|not_a_model"):
        run_pipeline(bad, log=_quiet)
    raw = yaml.safe_load(config.read_text())
    raw["sft"]["training"]["no_such_arg"] = 1
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="no_such_arg"):
        run_pipeline(bad, log=_quiet)
    raw = yaml.safe_load(config.read_text())
    raw["unknown_top_key"] = 1
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown_top_key"):
        run_pipeline(bad, log=_quiet)
    assert not (tmp_path / "runs").exists(), "a failed check must not leave stage folders behind"


def test_run_then_rerun_skips_everything(tmp_path, shared_data_dir):
    from transformers import TrainerCallback

    trainings: list[int] = []

    class CountTrainings(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            trainings.append(state.max_steps)

    config = small_config(tmp_path, shared_data_dir)
    _, results = run_pipeline(config, targets=["eval_sft"], log=_quiet,
                              trainer_callbacks=lambda: [CountTrainings()])
    assert [r.status for r in results] == ["ran"] * len(results)
    assert trainings == [2, 2], "the callbacks reach the base pretraining and the SFT stage"
    names = [r.name for r in results]
    assert names.index("data") < names.index("sft") < names.index("gen_sft") < names.index("eval_sft")
    runs = tmp_path / "runs"
    assert (runs / "sft" / "model" / "config.json").exists()
    assert (runs / "eval_sft" / "metrics.json").exists()
    messages: list[str] = []
    _, again = run_pipeline(config, targets=["eval_sft"], log=messages.append)
    assert {r.status for r in again} == {"cached"}
    assert sum(m.startswith("[skip]") for m in messages) == len(again)
    _, changed = run_pipeline(config, targets=["eval_sft"], overrides={"sft": {"max_train_samples": 48}},
                              log=_quiet)
    status = {r.name: r.status for r in changed}
    assert status["data"] == status["base"] == status["suite"] == "cached"
    assert status["sft"] == status["gen_sft"] == status["eval_sft"] == "ran"


@pytest.mark.slow
def test_sigkill_during_training_resumes_from_checkpoint(tmp_path, shared_data_dir):
    # enough steps after the first checkpoint that the kill always lands mid-training (a step takes ~10 ms here)
    config = small_config(tmp_path, shared_data_dir, sft_steps=600, save_steps=50)
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "polyalign.cli", "run", str(config), "--stages", "sft"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    partial = tmp_path / "runs" / ".sft.partial"
    deadline = time.time() + 300
    while time.time() < deadline:
        checkpoints = [p for p in partial.rglob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if checkpoints:
            break
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    else:
        pytest.fail("no checkpoint appeared")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "runs" / "sft").exists()
    config_text = yaml.safe_load(config.read_text())
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "[resume] sft" in text and "resuming from" in text and "checkpoint-" in text
    assert (tmp_path / "runs" / "sft" / "model" / "config.json").exists()
    assert config_text["sft"]["training"]["max_steps"] == 600


def test_ladder_trains_every_rung_on_one_shared_pairs_stage_per_policy(tmp_path, shared_data_dir):
    pipelines = Path(__file__).resolve().parents[1] / "configs" / "pipeline"
    declared = {**yaml.safe_load((pipelines / "demo.yaml").read_text())["preference"],
                **yaml.safe_load((pipelines / "ladder.yaml").read_text())["preference"]}
    config = small_config(tmp_path, shared_data_dir)
    raw = yaml.safe_load(config.read_text())
    raw.update(preference=declared, methods=["base", *declared])
    config.write_text(yaml.safe_dump(raw))
    _, results = run_pipeline(config, targets=list(declared), log=_quiet)
    names = [r.name for r in results]
    assert sorted(n for n in names if n.startswith("pairs_")) == ["pairs_bucket_sft", "pairs_sft"]
    runs = tmp_path / "runs"
    manifests = {m: json.loads((runs / m / "model" / "manifest.json").read_text()) for m in declared}
    assert {m: manifests[m]["method"] for m in declared} == {
        "dpo": "dpo", "hdpo": "hdpo", "dpo_bsft": "dpo", "dpo_w_bsft": "hdpo", "dpo_wr_bsft": "hdpo",
        "hdpo_sft": "hdpo"}
    terms = {m: (manifests[m]["config"]["loss"]["use_weights"], manifests[m]["loss_params"]["reg_lambda"],
                 manifests[m]["loss_params"]["anchor_gamma"]) for m in declared}
    assert [terms[m] for m in ("dpo_bsft", "dpo_w_bsft", "dpo_wr_bsft", "hdpo")] == [
        (False, 0.0, 0.0), (True, 0.0, 0.0), (True, 0.5, 0.0), (True, 0.5, 0.05)]
    assert terms["dpo"] == terms["dpo_bsft"] and terms["hdpo_sft"] == terms["hdpo"]
    for method in declared:
        pairs = "pairs_sft" if method in ("dpo", "hdpo_sft") else "pairs_bucket_sft"
        assert manifests[method]["config"]["pairs"] == str(runs / pairs / "pairs.jsonl")


def test_every_stage_records_its_artifacts_summary(tmp_path, shared_data_dir):
    """stage.json summaries come from the artifact classes (polyalign.artifacts), so their keys cannot drift from
    what the stages write: every stage kind of a pipeline with a preference method is checked."""
    config = small_config(tmp_path, shared_data_dir)
    raw = yaml.safe_load(config.read_text())
    raw.update(methods=["base", "sft", "hdpo"])
    config.write_text(yaml.safe_dump(raw))
    _, results = run_pipeline(config, log=_quiet)
    expected = {"data": {"records", "buckets", "splits"}, "base": {"train_loss", "n_parameters"},
                "suite": {"suite_version", "n_items", "groups"}, "sft": {"train_loss", "val_macro", "val_spread"},
                "bucket_sft": {"train_loss", "val_macro"}, "samples_sft": {"n_rows", "new_tokens"},
                "samples_bucket_sft": {"n_rows"}, "critic": {"heldout_auc"}, "pairs_bucket_sft": {"n_pairs"},
                "hdpo": {"method", "train_loss", "n_train_pairs"}, "gen_sft": {"n_rows"},
                "eval_sft": {"f1", "chrf", "n_scored"}, "compare": {"methods", "tests"}}
    recorded = {r.name: json.loads((tmp_path / "runs" / r.name / "stage.json").read_text())["summary"]
                for r in results}
    assert set(expected) <= set(recorded)
    for stage, keys in expected.items():
        assert keys <= set(recorded[stage]), (stage, recorded[stage])
    assert all(recorded[name] for name in recorded), [n for n in recorded if not recorded[n]]
    assert recorded["hdpo"]["method"] == "hdpo" and recorded["data"]["records"] > 0
