"""The whole chain on a real pretrained chat model (SmolLM2-135M-Instruct, imported from its PyPI wheel) with a
handful of steps: full and LoRA SFT / Bucket-SFT, samples, a critic with the model's hidden states, pairs, DPO
(LoRA) and HDPO (full), generation and evaluation with the model's hidden-states featurizer. `make test-slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from polyalign.pipeline.run import run_pipeline

pytestmark = pytest.mark.slow

EN_SOURCES = [("en_oasst1", "assistant"), ("en_taskmaster4", "task"), ("en_chitchat_byu", "open_chat")]
LORA = {"enabled": True, "r": 8, "alpha": 16, "target_modules": "all-linear"}


def real_model_config(tmp: Path, data_dir: Path, model: Path) -> Path:
    data = {"sources": [{"name": n, "path": str(data_dir / f"{n}.jsonl"), "format": "messages", "language": "en",
                         "family": fam, "limit": 30} for n, fam in EN_SOURCES],
            "min_bucket_size": 5, "split_ratios": {"train": 0.7, "val": 0.15, "test": 0.15}}
    training = {"max_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 2, "save_strategy": "no",
                "learning_rate": 1.0e-4}
    sft = {"max_train_samples": 16, "max_eval_samples": 8, "max_length": 128, "training": training}
    pref = {"max_length": 128, "max_train_pairs": 4, "max_eval_pairs": 4, "training": training}
    config = {
        "name": "real-model", "workdir": str(tmp / "runs"), "seed": 0, "data": data, "base": {"model": str(model)},
        "sft": sft, "bucket_sft": {**sft, "balance": {"enabled": True}, "lora": LORA},
        "dpo": {**pref, "loss": {"reg_lambda": 0.0, "anchor_gamma": 0.0, "use_weights": False}, "lora": LORA},
        "hdpo": {**pref, "loss": {"reg_lambda": 0.5, "anchor_gamma": 0.05}},
        "critic": {"min_auc": 0.0, "max_epochs": 2, "baseline": False, "hidden_states_model": str(model),
                   "hidden_states_max_length": 64, "hidden_states_batch_size": 8},
        "pairs": {"min_auc": 0.0, "allow_weak": True, "unknown_bucket": "pooled"},
        "samples": {"per_bucket": 1, "decoding": {"max_new_tokens": 16}},
        "decoding": {"max_new_tokens": 24, "batch_size": 8, "max_prompt_tokens": 128},
        "suite": {"cap_per_bucket": 2, "ref_pool": 20},
        "eval": {"featurizer": "hidden-states", "featurizer_options": {"model": str(model), "max_length": 64}},
        "methods": ["base", "sft", "bucket_sft", "dpo", "hdpo"],
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def test_every_stage_runs_on_the_real_model(tmp_path, shared_data_dir, smollm2_dir):
    config = real_model_config(tmp_path, shared_data_dir, smollm2_dir)
    _, results = run_pipeline(config, log=print)
    runs = tmp_path / "runs"
    for method in ("sft", "bucket_sft", "dpo", "hdpo"):
        model = runs / method / "model"
        assert (model / "config.json").exists() and not (model / "adapter_config.json").exists()  # LoRA merged
        assert json.loads((model / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    for method in ("base", "sft", "bucket_sft", "dpo", "hdpo"):
        rows = [json.loads(line) for line in (runs / f"gen_{method}" / "predictions.jsonl").open()]
        assert rows and all("<|im_end|>" not in r["prediction"] for r in rows)
        assert (runs / f"eval_{method}" / "metrics.json").exists()
    critic = json.loads((runs / "critic" / "manifest.json").read_text())
    assert str(smollm2_dir) in json.dumps(critic)  # the critic used this model's hidden states
    assert (runs / "compare" / "report.md").exists()
