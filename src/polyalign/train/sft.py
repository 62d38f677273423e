"""`polyalign train sft`: plain SFT or Bucket-Aware SFT of any HF causal LM on a data directory.

`run_sft(config) -> Path` is the whole stage: records → fitted prompt-completion examples → `BucketSFTTrainer`
(balancing on or off) → an HF model folder with `manifest.json` and `bucket_losses.jsonl`, written atomically.
Training runs in a hidden work folder next to the output (`.<name>.work`) that holds the checkpoints, so a killed
run resumes from its last checkpoint when started again with the same config.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import StrictModel, load_config
from ..errors import ConfigError, InputError
from ..io import atomic_path, make_manifest, read_jsonl, sha256_file, sha256_json, sha256_tree, write_json, \
    write_jsonl

RESERVED_TRAINING_KEYS = ("output_dir", "seed", "max_length")


class DROSection(StrictModel):
    """Online bucket reweighting (group DRO / excess-loss DRO); see docs/training.md for the update rule."""

    enabled: bool = Field(False, description="Reweight buckets online by their recent loss.")
    eta: float = Field(0.05, gt=0, description="Step size η of the exponentiated-gradient update.")
    epsilon: float = Field(0.1, ge=0, le=1, description="Loss weights (1-ε)·q + ε/K: every bucket keeps ≥ ε/K.")
    reference: Literal["none", "initial"] = Field(
        "none", description="'none': group DRO on the raw bucket loss; 'initial': excess over the bucket's first "
                            "observed loss.")


class BalanceSection(StrictModel):
    """Bucket-Aware SFT switches. `enabled: false` is plain SFT (default sampler, TRL's token-mean loss)."""

    enabled: bool = Field(False, description="Turn Bucket-Aware SFT on.")
    temperature: float | None = Field(
        2.0, gt=0, description="Sampler temperature T: p(bucket) ∝ n_b^(1/T); 1 = natural mix, .inf = equal "
                               "mass per bucket, null = the Trainer's default sampler.")
    normalize: bool = Field(True, description="Per-bucket loss normalization with a global normalizer.")
    dro: DROSection = Field(default_factory=DROSection, description="Online bucket reweighting.")


class LoraSection(StrictModel):
    """LoRA adapters through PEFT (merged into the base weights when saved, so the output loads as a plain
    causal LM)."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt (PEFT syntax).")
    merge: bool = Field(True, description="Merge the adapters into the saved model.")


class SFTRunConfig(StrictModel):
    """One SFT run (configs/train/sft.yaml, configs/train/bucket_sft.yaml)."""

    model: str = Field(..., description="Base model: a local HF folder or a Hub id.")
    data: str = Field(..., description="Data directory from `polyalign data build`.")
    output_dir: str = Field(..., description="Output model folder (written when training succeeds).")
    seed: int = Field(0, description="Seed for sampling, subsets and initialization.")
    profile: bool = Field(False, description="Profile system prompt (language, track, family; never length).")
    max_length: int = Field(512, ge=16, description="Tokens per example (prompt cut from the left first).")
    min_prompt_tokens: int = Field(32, ge=1, description="Tokens of the last user turn kept before the response "
                                                         "itself is cut.")
    max_train_samples: int | None = Field(None, ge=1, description="Seeded uniform subset of the train split.")
    max_eval_samples: int | None = Field(1000, ge=1, description="Bucket-stratified subset for per-bucket "
                                                                 "validation loss (and the final train table).")
    eval_split: str | None = Field("val", description="Split for the per-bucket validation loss (null: none).")
    final_eval: bool = Field(True, description="Evaluate per-bucket loss on train and val after training.")
    resume: bool = Field(True, description="Resume from the last checkpoint of an interrupted identical run.")
    model_dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Weights dtype for training (mixed precision is set in training: bf16/fp16).")
    balance: BalanceSection = Field(default_factory=BalanceSection, description="Bucket-Aware SFT.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA through PEFT.")
    training: dict[str, Any] = Field(default_factory=dict, description="trl.SFTConfig fields, passed through.")

    @property
    def method(self) -> str:
        return "bucket_sft" if self.balance.enabled else "sft"


def load_sft_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SFTRunConfig:
    """Load and validate an SFT config YAML (with optional overrides)."""
    return load_config(path, SFTRunConfig, overrides)


def balance_settings(config: SFTRunConfig) -> Any:
    """The trainer's BalanceSettings for a config (all off when balance is disabled)."""
    from .bucket_trainer import BalanceSettings

    bal = config.balance
    if not bal.enabled:
        return BalanceSettings()
    return BalanceSettings(temperature=bal.temperature, normalize=bal.normalize, dro=bal.dro.enabled,
                           dro_eta=bal.dro.eta, dro_epsilon=bal.dro.epsilon, dro_reference=bal.dro.reference)


def default_training_args() -> dict[str, Any]:
    """Our defaults for trl.SFTConfig (the YAML `training:` section overrides them)."""
    import torch

    return {"bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
            "gradient_checkpointing": False, "report_to": "none", "logging_steps": 10, "save_strategy": "no",
            "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "learning_rate": 5e-4,
            "lr_scheduler_type": "cosine", "warmup_steps": 0.03, "disable_tqdm": True,
            "ddp_find_unused_parameters": False, "dataloader_drop_last": False,
            "dataloader_pin_memory": torch.cuda.is_available()}


def check_trl_keys(training: dict[str, Any], trl_config: type, reserved: dict[str, str]) -> None:
    """Every key of a `training:` mapping must be a field of `trl_config` and not one of `reserved` (key → where it
    is set instead, e.g. "at the top level")."""
    known = {f.name for f in dataclasses.fields(trl_config) if f.init}
    for key in training:
        if key not in known:
            raise ConfigError(f"training.{key}: unknown trl.{trl_config.__name__} field (check the spelling)")
        if key in reserved:
            raise ConfigError(f"training.{key}: set '{key}' {reserved[key]} of the config, not under training")


def check_training_keys(config: SFTRunConfig) -> None:
    """Every key of `training:` must be a trl.SFTConfig field and not one set at the top level."""
    from trl import SFTConfig

    check_trl_keys(config.training, SFTConfig, {key: "at the top level" for key in RESERVED_TRAINING_KEYS})


def make_sft_args(config: SFTRunConfig, output_dir: str | Path, *, assistant_only_loss: bool) -> Any:
    """trl.SFTConfig from the config's `training:` mapping; an unknown or reserved key is a ConfigError."""
    from trl import SFTConfig

    check_training_keys(config)
    kwargs = {**default_training_args(), "assistant_only_loss": assistant_only_loss, **config.training,
              "output_dir": str(output_dir), "seed": config.seed, "max_length": config.max_length}
    try:
        return SFTConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).splitlines()[0]}") from None


def quiet_console_logs(trainer: Any) -> None:
    """Drop transformers' stdout printer of log dicts (logs still reach report_to, our JSONL and callbacks)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _records_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / "records" / f"{split}.jsonl"


def load_split(data_dir: str | Path, split: str) -> list[Any]:
    """Records of a split, each checked to carry a bucket_id (error names file, line and field)."""
    from ..data.build import load_records

    records = load_records(data_dir, split)
    path = _records_path(data_dir, split)
    for line, record in enumerate(records, start=1):
        if not record.bucket_id:
            raise InputError(f"record '{record.id}' has no bucket_id (rebuild the data with `polyalign data "
                             f"build`)", file=path, line=line, field="bucket_id")
    if not records:
        raise InputError("no records in this split", file=path)
    return records


def _work_dir(output_dir: Path) -> Path:
    return output_dir.parent / f".{output_dir.name}.work"


def _prepare_work_dir(work: Path, config_hash: str, resume: bool) -> str | None:
    """Create the work folder; return the checkpoint to resume from (only for the same config)."""
    marker = work / "run_config_hash.txt"
    if work.exists():
        same = marker.exists() and marker.read_text().strip() == config_hash
        checkpoint = last_complete_checkpoint(work) if same and resume else None
        if checkpoint:
            return checkpoint
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.write_text(config_hash + "\n")
    return None


def last_complete_checkpoint(work: str | Path) -> str | None:
    """The newest checkpoint-N folder of `work` that was written completely (has trainer_state.json)."""
    done = [p for p in Path(work).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _trim_bucket_log(path: Path, max_step: int) -> None:
    """Drop log rows written after the checkpoint we resume from."""
    if path.exists():
        write_jsonl(path, [row for row in read_jsonl(path) if row.get("step", 0) <= max_step])


def run_sft(config: SFTRunConfig, *, callbacks: list[Any] | None = None, log: Any = None) -> Path:
    """Train per `config`; write the model folder to `config.output_dir`; return its path."""
    started = time.time()
    say = log or (lambda *a, **k: None)
    output_dir = Path(config.output_dir)
    from ..models.loading import check_model_source

    model_source = check_model_source(config.model)
    data_dir = Path(config.data)
    if not data_dir.is_dir():
        raise InputError("data directory not found", file=data_dir)
    settings = balance_settings(config)  # validates the balance section
    check_training_keys(config)

    say("loading records")
    train_records = load_split(data_dir, "train")
    eval_records = load_split(data_dir, config.eval_split) if config.eval_split else []

    from ..models.loading import load_causal_lm, load_tokenizer
    from .bucket_trainer import BucketSFTTrainer
    from ..data.stratify import random_subset, stratified_sample
    from .examples import build_sft_examples, bucket_vocabulary

    tokenizer = load_tokenizer(model_source, padding_side="right")
    if tokenizer.chat_template is None:
        from ..models.tiny import CHAT_TEMPLATE

        say("the tokenizer has no chat template: using ChatML")
        tokenizer.chat_template = CHAT_TEMPLATE
    from trl.chat_template_utils import has_generation_markers

    assistant_only = bool(config.training.get("assistant_only_loss", has_generation_markers(tokenizer.chat_template)))
    work = _work_dir(output_dir)
    config_hash = sha256_json({"config": config.model_dump(), "model": model_source})
    args = make_sft_args(config, work, assistant_only_loss=assistant_only)

    buckets = bucket_vocabulary(train_records, eval_records)
    bucket_index = {b: i for i, b in enumerate(buckets)}
    train_subset = random_subset(train_records, config.max_train_samples, config.seed)
    say(f"building {len(train_subset)} training examples")
    train_examples, train_stats = build_sft_examples(train_subset, tokenizer, bucket_index,
                                                     max_length=config.max_length, profile=config.profile,
                                                     min_prompt_tokens=config.min_prompt_tokens)
    eval_sets: dict[str, list[dict[str, Any]]] = {}
    if eval_records:
        eval_sets["val"], _ = build_sft_examples(
            stratified_sample(eval_records, config.seed, total=config.max_eval_samples, order="input"), tokenizer,
            bucket_index,
            max_length=config.max_length, profile=config.profile, min_prompt_tokens=config.min_prompt_tokens)
    if config.final_eval:
        eval_sets["train"], _ = build_sft_examples(
            stratified_sample(train_subset, config.seed + 1, total=config.max_eval_samples, order="input"), tokenizer,
            bucket_index,
            max_length=config.max_length, profile=config.profile, min_prompt_tokens=config.min_prompt_tokens)

    from datasets import Dataset

    train_ds = Dataset.from_list(train_examples)
    eval_ds = {name: Dataset.from_list(rows) for name, rows in eval_sets.items()}
    from accelerate import PartialState

    state = PartialState()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise ConfigError(f"{launched} processes were launched but they are not connected (each would train "
                          f"alone); on CPU set ACCELERATE_USE_CPU=1 (see configs/accelerate/cpu_2proc.yaml)")
    if state.is_main_process:
        checkpoint = _prepare_work_dir(work, config_hash, config.resume)
        if checkpoint:
            say(f"resuming from {checkpoint}")
            _trim_bucket_log(work / "bucket_losses.jsonl", int(Path(checkpoint).name.split("-")[-1]))
    state.wait_for_everyone()
    if not state.is_main_process:
        checkpoint = last_complete_checkpoint(work) if config.resume else None

    say("loading the model")
    model = load_causal_lm(model_source, dtype=config.model_dtype, device="cpu")
    model.train()
    peft_config = None
    if config.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    trainer = BucketSFTTrainer(
        model=model, args=args, train_dataset=train_ds,
        eval_dataset=eval_ds.get("val") if args.eval_strategy != "no" else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks, bucket_names=buckets,
        balance=settings)
    quiet_console_logs(trainer)
    result = trainer.train(resume_from_checkpoint=checkpoint or config.training.get("resume_from_checkpoint"))

    final: dict[str, Any] = {}
    if config.final_eval:
        for name, ds in eval_ds.items():
            trainer.evaluate(eval_dataset=ds, metric_key_prefix=f"final_{name}")
            final[name] = trainer.last_bucket_summaries.get(f"final_{name}")

    say("saving")
    merged = None
    if config.lora.enabled and config.lora.merge:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if state.is_main_process:
        _save_output(output_dir, trainer, merged, tokenizer, work, config, data_dir, model_source, settings,
                     buckets, train_examples, train_stats, result, checkpoint, assistant_only, final, started)
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return output_dir


def bucket_counts(examples: list[dict[str, Any]], num_buckets: int) -> list[int]:
    """Number of examples per bucket index."""
    counts = [0] * num_buckets
    for ex in examples:
        counts[ex["bucket_index"]] += 1
    return counts


def write_model_files(folder: Path, trainer: Any, merged: Any, tokenizer: Any, work: Path, bucket_log: str) -> None:
    """Save the trained model (the merged LoRA model when given) and its tokenizer (left padding, for generation)
    into `folder`, with the run's per-bucket log and TensorBoard event files from the work folder."""
    from ..models.tiny import fix_tokenizer_config

    model_out = merged if merged is not None else trainer.accelerator.unwrap_model(trainer.model)
    model_out.save_pretrained(folder)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(folder)
    fix_tokenizer_config(folder)
    if (work / bucket_log).exists():
        shutil.copy(work / bucket_log, folder / bucket_log)
    if (work / "runs").is_dir():  # tensorboard event files (report_to: tensorboard)
        shutil.copytree(work / "runs", folder / "runs")


def _save_output(output_dir: Path, trainer: Any, merged: Any, tokenizer: Any, work: Path, config: SFTRunConfig,
                 data_dir: Path, model_source: str, settings: Any, buckets: list[str],
                 train_examples: list[dict[str, Any]], train_stats: Any, result: Any, checkpoint: str | None,
                 assistant_only: bool, final: dict[str, Any], started: float) -> None:
    """Write the model folder atomically: weights, tokenizer (left padding for generation), bucket log,
    manifest."""
    train_counts = bucket_counts(train_examples, len(buckets))
    with atomic_path(output_dir) as tmp:
        write_model_files(tmp, trainer, merged, tokenizer, work, "bucket_losses.jsonl")
        inputs = {"train_records": sha256_file(_records_path(data_dir, "train"))}
        if config.eval_split:
            inputs["eval_records"] = sha256_file(_records_path(data_dir, config.eval_split))
        if Path(model_source).is_dir():
            inputs["model"] = sha256_tree(model_source)
        probabilities = None
        if settings.temperature is not None:
            from .sampler import bucket_probabilities

            probabilities = dict(zip(buckets, bucket_probabilities(train_counts, settings.temperature).round(6)))
        write_json(tmp / "manifest.json", make_manifest(
            stage="train.sft", config=config.model_dump(), inputs=inputs, seed=config.seed, started=started,
            extra={"method": config.method, "model_source": model_source,
                   "n_train_examples": len(train_examples), "truncation": train_stats.as_dict(),
                   "buckets": buckets, "train_bucket_counts": dict(zip(buckets, train_counts)),
                   "sampler_probabilities": probabilities, "global_steps": trainer.state.global_step,
                   "train_runtime_s": result.metrics.get("train_runtime"),
                   "train_loss": result.metrics.get("train_loss"), "resumed_from": checkpoint,
                   "assistant_only_loss": assistant_only, "final_bucket_losses": final,
                   "dro_weights": (dict(zip(buckets, trainer.dro_weights.tolist()))
                                   if settings.dro else None)}))
