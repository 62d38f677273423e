"""`polyalign train sft` end to end on a synthetic data directory: outputs, resume, LoRA, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from model_factory import make_tiny_model_dir
from records_factory import make_records, write_data_dir
from typer.testing import CliRunner

from polyalign.cli import app
from polyalign.errors import PolyAlignError
from polyalign.train.sft import SFTRunConfig, run_sft

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_cli")
    data = write_data_dir(root / "data", {"train": make_records(96, 0), "val": make_records(40, 1, "val"),
                                          "test": make_records(20, 2, "test")})
    return {"root": root, "data": data, "model": make_tiny_model_dir(root)}


def _config(env, out: Path, **changes) -> dict:
    cfg = {"model": str(env["model"]), "data": str(env["data"]), "output_dir": str(out), "seed": 0,
           "max_length": 96, "max_eval_samples": 24,
           "balance": {"enabled": True, "temperature": 2.0, "normalize": True, "dro": {"enabled": True}},
           "training": {"max_steps": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                        "learning_rate": 5e-3, "logging_steps": 2, "save_strategy": "no",
                        "dataloader_pin_memory": False}}
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_train_sft_cli_writes_a_loadable_model_with_bucket_logs(env, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "bucket_sft"
    result = runner.invoke(app, ["train", "sft", str(_write(tmp_path / "c.yaml", _config(env, out))), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Per-bucket loss" in result.output and "worst" in result.output
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "bucket_sft" and manifest["global_steps"] == 4
    assert set(manifest["final_bucket_losses"]) == {"train", "val"}
    assert abs(sum(manifest["sampler_probabilities"].values()) - 1) < 1e-4 and manifest["dro_weights"]
    rows = [json.loads(x) for x in (out / "bucket_losses.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "final_train", "final_val"}
    assert not (tmp_path / ".bucket_sft.work").exists()


def test_plain_sft_and_set_overrides(env, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    cfg = _write(tmp_path / "c.yaml", _config(env, out, balance={"enabled": False}))
    result = runner.invoke(app, ["train", "sft", str(cfg), "--quiet", "--set", "training.max_steps=2",
                                 "--set", "final_eval=false"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "sft" and manifest["global_steps"] == 2 and manifest["sampler_probabilities"] is None


def test_resume_from_the_last_checkpoint_after_a_crash(env, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill")

    training = {**_config(env, tmp_path)["training"], "save_strategy": "steps", "save_steps": 2}
    cfg = SFTRunConfig(**_config(env, tmp_path / "resumed", training=training, final_eval=False))
    with pytest.raises(KeyboardInterrupt):
        run_sft(cfg, callbacks=[Crash()])
    assert (tmp_path / ".resumed.work" / "checkpoint-2").is_dir() and not (tmp_path / "resumed").exists()
    run_sft(cfg)
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith("checkpoint-2") and manifest["global_steps"] == 4
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "bucket_losses.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # the crashed run's rows after the checkpoint were dropped
    # the resumed run ends where an uninterrupted one does (sampler stream, optimizer and DRO state restored)
    run_sft(SFTRunConfig(**{**cfg.model_dump(), "output_dir": str(tmp_path / "straight")}))
    straight = json.loads((tmp_path / "straight" / "manifest.json").read_text())
    for bucket, weight in straight["dro_weights"].items():
        assert manifest["dro_weights"][bucket] == pytest.approx(weight, rel=1e-4)
    rows = [json.loads(x) for x in (tmp_path / "straight" / "bucket_losses.jsonl").read_text().splitlines()]
    resumed_rows = [json.loads(x) for x in (tmp_path / "resumed" / "bucket_losses.jsonl").read_text().splitlines()]
    assert resumed_rows[-1]["macro"] == pytest.approx(rows[-1]["macro"], rel=1e-4)


def test_lora_output_is_merged_into_a_plain_model(env, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cfg = SFTRunConfig(**_config(env, tmp_path / "lora", final_eval=False,
                                 lora={"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    out = run_sft(cfg)
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(env["model"])
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters())
               if not torch.equal(p, q)]
    assert changed and all("q_proj" in n or "v_proj" in n for n in changed)


@pytest.mark.parametrize("change, message", [
    ({"unknown_key": 1}, "unknown key"),
    ({"training": {"max_stepz": 3}}, "training.max_stepz: unknown trl.SFTConfig field"),
    ({"training": {"output_dir": "x"}}, "set 'output_dir' at the top level"),
    ({"balance": {"enabled": True, "temperature": 0}}, "balance.temperature"),
    ({"balance": {"enabled": True, "temperature": -2}}, "balance.temperature"),
    ({"model": "/definitely/not/a/model"}, "does not exist"),
])
def test_bad_config_is_a_one_line_error_and_writes_nothing(env, tmp_path: Path, change: dict, message: str) -> None:
    out = tmp_path / "never"
    cfg = _write(tmp_path / "bad.yaml", _config(env, out, **change))
    result = runner.invoke(app, ["train", "sft", str(cfg), "--quiet"])
    assert isinstance(result.exception, PolyAlignError), result.output  # main() prints it as one line, exit 2
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists() and not (tmp_path / ".never.work").exists()


def test_cli_prints_one_line_and_exits_2(env, tmp_path: Path) -> None:
    cfg = _write(tmp_path / "bad.yaml", _config(env, tmp_path / "never", balance={"enabled": True,
                                                                                 "temperature": 0}))
    proc = subprocess.run([str(Path(sys.executable).parent / "polyalign"), "train", "sft", str(cfg)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "balance.temperature" in lines[0]


def test_missing_bucket_column_in_the_data(env, tmp_path: Path) -> None:
    records = make_records(20, 0)
    records[5].bucket_id = ""
    data = write_data_dir(tmp_path / "nobucket", {"train": records, "val": make_records(8, 1, "val")})
    out = tmp_path / "never"
    cfg = _write(tmp_path / "c.yaml", _config(env, out, data=str(data)))
    result = runner.invoke(app, ["train", "sft", str(cfg), "--quiet"])
    assert isinstance(result.exception, PolyAlignError)
    text = str(result.exception)
    assert "train.jsonl:6" in text and "bucket_id" in text
    assert not out.exists()
