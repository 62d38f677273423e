"""`polyalign train hdpo` / `train dpo` end to end on a tiny pairs file: a loadable model, per-bucket metrics,
plain DPO forced by `train dpo`, the critic never called unless the on-policy term is on, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from hdpo_trainer_fixtures import make_pair_rows, write_pairs
from model_factory import make_tiny_model_dir
from typer.testing import CliRunner

from polyalign.cli import app
from polyalign.errors import ConfigError, InputError, PolyAlignError
from polyalign.train.hdpo import HDPORunConfig, as_plain_dpo, load_hdpo_config, run_hdpo

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hdpo_cli")
    return {"root": root, "model": make_tiny_model_dir(root),
            "pairs": write_pairs(root / "pairs.jsonl", make_pair_rows(24, seed=2)),
            "eval_pairs": write_pairs(root / "eval_pairs.jsonl", make_pair_rows(12, seed=3))}


def _config(env, out: Path, **changes) -> dict:
    cfg = {"model": str(env["model"]), "pairs": str(env["pairs"]), "eval_pairs": str(env["eval_pairs"]),
           "output_dir": str(out), "seed": 0, "max_length": 96, "min_prompt_tokens": 16,
           "loss": {"beta": 0.1, "reg_lambda": 0.2, "reg_form": "expected", "anchor_gamma": 0.05},
           "training": {"max_steps": 3, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                        "learning_rate": 1e-3, "logging_steps": 1, "dataloader_pin_memory": False}}
    cfg.update(changes)
    return cfg


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_train_hdpo_cli_writes_a_loadable_model_with_bucket_metrics(env, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hdpo"
    result = runner.invoke(app, ["train", "hdpo", str(_write(tmp_path / "c.yaml", _config(env, out))), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Held-out pairs after hdpo" in result.output and "macro accuracy" in result.output
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "hdpo" and manifest["global_steps"] == 3
    dropped = manifest["truncation"]["n_dropped_too_long"]  # pairs whose completions cannot fit 96 tokens whole
    assert manifest["loss_params"]["reg_lambda"] == 0.2 and manifest["n_train_pairs"] == 24 - dropped > 0
    assert manifest["final_eval"]["summary"]["buckets"]
    rows = [json.loads(line) for line in (out / "bucket_metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "final_eval"}
    assert all(0 <= b["reward_accuracy"] <= 1 for r in rows for b in r["buckets"].values())
    assert not list(tmp_path.glob(".hdpo.work"))  # work folder removed


def test_train_dpo_forces_plain_dpo_and_says_so(env, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    cfg = _config(env, out, on_policy={"enabled": True, "critic": "nowhere", "lambda": 0.1})
    result = runner.invoke(app, ["train", "dpo", str(_write(tmp_path / "c.yaml", cfg)), "--quiet"])
    assert result.exit_code == 0, result.output
    for note in ("loss.reg_lambda 0.2 -> 0", "loss.anchor_gamma 0.05 -> 0", "use_weights true -> false",
                 "on_policy.enabled true -> false"):
        assert note in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "dpo"
    assert manifest["loss_params"]["reg_lambda"] == 0 and manifest["config"]["loss"]["use_weights"] is False


def test_as_plain_dpo_keeps_everything_else(env, tmp_path: Path) -> None:
    cfg = HDPORunConfig(**_config(env, tmp_path / "x"))
    plain, notes = as_plain_dpo(cfg)
    assert len(notes) == 3 and plain.method == "dpo" and cfg.method == "hdpo"
    assert plain.loss.beta == cfg.loss.beta and plain.training == cfg.training and plain.seed == cfg.seed


def _count_critic_calls(monkeypatch) -> dict[str, int]:
    """Count every way the trainer could reach a critic: loading a bundle and scoring texts."""
    import numpy as np

    import polyalign.critic.model as critic_model

    calls = {"load": 0, "score": 0}

    class CountingCritic:
        def score(self, texts, languages, bucket_ids, unknown="error"):
            calls["score"] += 1
            return np.array([len(t) / 40.0 for t in texts])

    def fake_load(path, **kwargs):
        calls["load"] += 1
        return CountingCritic()

    def counted(original):
        def wrapper(*a, **k):
            calls["score"] += 1
            return original(*a, **k)
        return wrapper

    monkeypatch.setattr(critic_model, "load_critic", fake_load)
    for cls in (critic_model.Critic, critic_model.LearnedCritic, critic_model.ClosedFormCritic):
        for name in ("score", "score_features"):
            if name in vars(cls):
                monkeypatch.setattr(cls, name, counted(vars(cls)[name]))
    return calls


def test_critic_is_never_called_during_training_without_the_on_policy_term(env, tmp_path, monkeypatch) -> None:
    calls = _count_critic_calls(monkeypatch)
    cfg = HDPORunConfig(**_config(env, tmp_path / "off", eval_pairs=None))
    run_hdpo(cfg)
    assert calls == {"load": 0, "score": 0}
    # with the term on (every 2nd of 4 steps, no gradient accumulation): loaded once, scored on 2 steps
    cfg = HDPORunConfig(**_config(env, tmp_path / "on", eval_pairs=None, on_policy={
        "enabled": True, "critic": "bundle", "lambda": 0.1, "every_n_steps": 2, "max_new_tokens": 8},
        training={**_config(env, tmp_path)["training"], "max_steps": 4, "gradient_accumulation_steps": 1}))
    out = run_hdpo(cfg)
    assert calls == {"load": 1, "score": 2}
    on_policy = json.loads((out / "manifest.json").read_text())["on_policy"]
    assert on_policy["calls"] == 2 and 0 < on_policy["time_share"] < 1


@pytest.mark.parametrize("change, message", [
    ({"loss": {"beta": 0.1, "lamda": 0.1}}, "loss.lamda"),
    ({"training": {"max_stepz": 3}}, "training.max_stepz: unknown trl.DPOConfig field"),
    ({"training": {"beta": 0.2}}, "training.beta: set 'beta' in loss"),
    ({"on_policy": {"enabled": True}}, "on_policy.critic"),
    ({"model": "/nonexistent/model"}, "does not exist"),
    ({"training": {"loss_type": ["ipo"]}}, "loss_type"),
])
def test_bad_config_is_a_clear_one_line_error(env, tmp_path: Path, change: dict, message: str) -> None:
    out = tmp_path / "bad"
    result = runner.invoke(app, ["train", "hdpo", str(_write(tmp_path / "c.yaml", _config(env, out, **change))),
                               "--quiet"])
    assert isinstance(result.exception, PolyAlignError), result.output  # main() prints it as one line, exit 2
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not out.exists()


def test_bad_pairs_name_file_line_and_field(env, tmp_path: Path) -> None:
    rows = make_pair_rows(6, seed=5)
    rows[3]["d_rejected"] = float("nan")
    bad = write_pairs(tmp_path / "bad.jsonl", rows)
    cfg = HDPORunConfig(**_config(env, tmp_path / "o", pairs=str(bad), eval_pairs=None))
    with pytest.raises(InputError) as err:
        run_hdpo(cfg)
    assert "bad.jsonl:4" in str(err.value) and "d_rejected" in str(err.value)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="unknown key"):
        load_hdpo_config(_write(tmp_path / "k.yaml", {**_config(env, tmp_path / "o"), "pairz": "x"}))


def test_the_shipped_configs_are_valid(repo_root: Path) -> None:
    for name in ("hdpo.yaml", "dpo.yaml"):
        cfg = load_hdpo_config(repo_root / "configs" / "train" / name)
        from polyalign.train.hdpo import check_training_keys

        check_training_keys(cfg)
    assert load_hdpo_config(repo_root / "configs/train/dpo.yaml").method == "dpo"
    assert load_hdpo_config(repo_root / "configs/train/hdpo.yaml").method == "hdpo"


def test_lora_run_merges_adapters_into_a_plain_model(env, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    cfg = HDPORunConfig(**_config(env, out, eval_pairs=None, lora={"enabled": True, "r": 4, "alpha": 8}))
    run_hdpo(cfg)
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(env["model"])
    assert not any("lora" in name for name, _ in model.named_parameters())
    changed = [name for (name, p), q in zip(model.named_parameters(), base.parameters()) if not torch.equal(p, q)]
    assert changed and all("proj" in name for name in changed)  # only adapted linear layers moved


def test_run_hdpo_plain_dpo_flag_equals_train_dpo(env, tmp_path: Path) -> None:
    notes: list[str] = []
    out = run_hdpo(HDPORunConfig(**_config(env, tmp_path / "p", eval_pairs=None)), plain_dpo=True, log=notes.append)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "dpo" and manifest["loss_params"]["anchor_gamma"] == 0
    assert any("reg_lambda 0.2 -> 0" in n for n in notes)
