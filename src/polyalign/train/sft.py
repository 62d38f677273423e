"""`polyalign train sft`: plain SFT or Bucket-Aware SFT of any HF causal LM on a data directory.

`run_sft(config) -> Path` is the whole stage: records → fitted prompt-completion examples → `BucketSFTTrainer`
(balancing on or off) → an HF model folder with `manifest.json` and `bucket_losses.jsonl`. What is SFT's own is
here (the run config, the examples, the final per-bucket losses, the manifest fields); the work folder, resume,
LoRA and the atomic save are `run.run_training`'s. The `balance:` section is built from `BucketSFTConfig`'s fields,
so the YAML and the trainer share one set of defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset
from pydantic import Field
from trl import SFTConfig
from trl.chat_template_utils import has_generation_markers

from ..config import StrictModel, load_config
from ..data.build import load_records
from ..errors import InputError
from ..io import sha256_file
from ..models.loading import check_model_source
from .bucket_log import BucketLossLog
from .bucket_sft_config import BucketSFTConfig
from .bucket_trainer import BucketSFTTrainer
from ..data.stratify import random_subset, stratified_sample
from .examples import ExampleStats, build_sft_examples, bucket_counts, bucket_vocabulary
from .options import option_values, reserved_training_keys, section_model
from .run import LoraSection, TrainerParts, TrainingRun, check_trl_keys, make_trainer_args, run_training, silent, \
    trainer_defaults, training_tokenizer, work_dir
from .sampler import bucket_probabilities

RESERVED_TRAINING_KEYS = ("output_dir", "seed", "max_length")

DROSection = section_model(
    BucketSFTConfig, "balance.dro", "DROSection",
    "Online bucket reweighting (group DRO / excess-loss DRO); see docs/training.md for the update rule.")
BalanceSection = section_model(
    BucketSFTConfig, "balance", "BalanceSection",
    "Bucket-Aware SFT switches. `enabled: false` is plain SFT (default sampler, TRL's token-mean loss).",
    nested={"dro": (DROSection, "Online bucket reweighting.")})


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


def training_defaults() -> dict[str, Any]:
    """Our defaults for trl.SFTConfig (the YAML `training:` section overrides them)."""
    return {**trainer_defaults(), "learning_rate": 5e-4, "lr_scheduler_type": "cosine", "warmup_steps": 0.03,
            "dataloader_drop_last": False}


def check_training_keys(config: SFTRunConfig) -> None:
    """Every key of `training:` must be a trl.SFTConfig field and not one set elsewhere in the config."""
    reserved = {key: "at the top level" for key in RESERVED_TRAINING_KEYS}
    check_trl_keys(config.training, SFTConfig, {**reserved, **reserved_training_keys(BucketSFTConfig)})


def make_sft_args(config: SFTRunConfig, output_dir: str | Path, *, assistant_only_loss: bool) -> BucketSFTConfig:
    """The trainer's BucketSFTConfig: our defaults, `training:`, the top-level keys and the `balance:` section;
    an unknown or reserved key, or a bad value, is a ConfigError."""
    check_training_keys(config)
    return make_trainer_args(BucketSFTConfig, {
        **training_defaults(), "assistant_only_loss": assistant_only_loss, **config.training,
        "output_dir": str(output_dir), "seed": config.seed, "max_length": config.max_length,
        **option_values(config, BucketSFTConfig)})


def _records_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / "records" / f"{split}.jsonl"


def load_split(data_dir: str | Path, split: str) -> list[Any]:
    """Records of a split, each checked to carry a bucket_id (error names file, line and field)."""
    records = load_records(data_dir, split)
    path = _records_path(data_dir, split)
    for line, record in enumerate(records, start=1):
        if not record.bucket_id:
            raise InputError(f"record '{record.id}' has no bucket_id (rebuild the data with `polyalign data "
                             f"build`)", file=path, line=line, field="bucket_id")
    if not records:
        raise InputError("no records in this split", file=path)
    return records


@dataclass
class SFTData:
    """The examples of one SFT run: bucket names, the training examples and what fitting did to them, and the
    datasets (train; val and train subsets for the per-bucket evaluation)."""

    buckets: list[str]
    train_examples: list[dict[str, Any]]
    train_stats: ExampleStats
    train: Dataset
    evals: dict[str, Dataset]


def build_sft_data(config: SFTRunConfig, data_dir: Path, tokenizer: Any, say: Any) -> SFTData:
    """Load the splits and build the fitted examples of a run."""
    say("loading records")
    train_records = load_split(data_dir, "train")
    eval_records = load_split(data_dir, config.eval_split) if config.eval_split else []
    buckets = bucket_vocabulary(train_records, eval_records)
    bucket_index = {b: i for i, b in enumerate(buckets)}
    fit = dict(max_length=config.max_length, profile=config.profile, min_prompt_tokens=config.min_prompt_tokens)
    train_subset = random_subset(train_records, config.max_train_samples, config.seed)
    say(f"building {len(train_subset)} training examples")
    train_examples, train_stats = build_sft_examples(train_subset, tokenizer, bucket_index, **fit)
    evals: dict[str, list[dict[str, Any]]] = {}
    if eval_records:
        evals["val"], _ = build_sft_examples(
            stratified_sample(eval_records, config.seed, total=config.max_eval_samples, order="input"), tokenizer, bucket_index, **fit)
    if config.final_eval:
        evals["train"], _ = build_sft_examples(
            stratified_sample(train_subset, config.seed + 1, total=config.max_eval_samples, order="input"), tokenizer, bucket_index,
            **fit)
    return SFTData(buckets, train_examples, train_stats, Dataset.from_list(train_examples),
                   {name: Dataset.from_list(rows) for name, rows in evals.items()})


def run_sft(config: SFTRunConfig, *, callbacks: list[Any] | None = None, log: Any = None) -> Path:
    """Train per `config`; write the model folder to `config.output_dir`; return its path."""
    started = time.time()
    say = log or silent
    model_source = check_model_source(config.model)
    data_dir = Path(config.data)
    if not data_dir.is_dir():
        raise InputError("data directory not found", file=data_dir)
    check_training_keys(config)
    tokenizer = training_tokenizer(model_source)
    assistant_only = bool(config.training.get("assistant_only_loss", has_generation_markers(tokenizer.chat_template)))
    args = make_sft_args(config, work_dir(config.output_dir), assistant_only_loss=assistant_only)
    data = build_sft_data(config, data_dir, tokenizer, say)

    def build(parts: TrainerParts) -> BucketSFTTrainer:
        return BucketSFTTrainer(
            model=parts.model, args=args, train_dataset=data.train,
            eval_dataset=data.evals.get("val") if args.eval_strategy != "no" else None, processing_class=tokenizer,
            peft_config=parts.peft_config, callbacks=callbacks, bucket_names=data.buckets)

    def summarize(trainer: BucketSFTTrainer, result: Any) -> dict[str, Any]:
        final = final_bucket_losses(trainer, data.evals) if config.final_eval else {}
        return sft_summary(config, data, trainer, final)

    return run_training(TrainingRun(
        stage="train.sft", model_source=model_source, output_dir=Path(config.output_dir),
        config=config.model_dump(), seed=config.seed, tokenizer=tokenizer, build_trainer=build, summarize=summarize,
        inputs=lambda: sft_inputs(config, data_dir), started=started, resume=config.resume,
        resume_from=config.training.get("resume_from_checkpoint"), model_dtype=config.model_dtype,
        attn_implementation=(config.training.get("model_init_kwargs") or {}).get("attn_implementation"),
        lora=config.lora, log_file=BucketLossLog.FILENAME), log=say)


def final_bucket_losses(trainer: BucketSFTTrainer, evals: dict[str, Dataset]) -> dict[str, Any]:
    """Per-bucket losses of the trained model on each evaluation set (all processes take part)."""
    final = {}
    for name, dataset in evals.items():
        trainer.evaluate(eval_dataset=dataset, metric_key_prefix=f"final_{name}")
        final[name] = trainer.last_bucket_summaries.get(f"final_{name}")
    return final


def sft_summary(config: SFTRunConfig, data: SFTData, trainer: BucketSFTTrainer,
                final: dict[str, Any]) -> dict[str, Any]:
    """SFT's own manifest fields: examples, buckets, sampler probabilities, final losses, DRO weights."""
    args, buckets = trainer.args, data.buckets
    counts = bucket_counts(data.train_examples, len(buckets))
    probabilities = None
    if args.sampler_temperature is not None:
        probabilities = dict(zip(buckets, bucket_probabilities(counts, args.sampler_temperature).round(6)))
    return {"method": config.method, "n_train_examples": len(data.train_examples),
            "truncation": data.train_stats.as_dict(), "buckets": buckets,
            "train_bucket_counts": dict(zip(buckets, counts)), "sampler_probabilities": probabilities,
            "assistant_only_loss": args.assistant_only_loss, "final_bucket_losses": final,
            "dro_weights": dict(zip(buckets, trainer.dro_weights.tolist())) if args.dro_active else None}


def sft_inputs(config: SFTRunConfig, data_dir: Path) -> dict[str, str]:
    """Hashes of the record files a run read."""
    inputs = {"train_records": sha256_file(_records_path(data_dir, "train"))}
    if config.eval_split:
        inputs["eval_records"] = sha256_file(_records_path(data_dir, config.eval_split))
    return inputs


__all__ = ["SFTRunConfig", "BalanceSection", "DROSection", "LoraSection", "load_sft_config", "make_sft_args",
           "check_training_keys", "load_split", "run_sft"]
