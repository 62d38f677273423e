"""Short causal-LM pretraining of a (tiny) model on the train split's human text, so that the stand-in base model
writes language-like text in both languages before any SFT.

Documents are whole conversations (context, every turn, the response; each conversation once), tokenized, joined
with <|endoftext|> and packed into fixed-length blocks. Training is transformers' Trainer on those blocks, run by
`train.run.run_training` like every other stage (work folder with checkpoints, so an interrupted run resumes;
atomic save; manifest).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from transformers import Trainer, TrainingArguments

from ..config import StrictModel
from ..errors import ConfigError
from ..train.run import TrainerParts, TrainingRun, run_training, silent
from .loading import check_model_source, load_tokenizer
from .tiny import count_parameters

DOCUMENT_SEPARATOR = "<|endoftext|>"


class PretrainConfig(StrictModel):
    """Pretraining settings (configs/train/pretrain.yaml)."""

    max_steps: int = Field(150, ge=1, description="Optimizer steps.")
    block_size: int = Field(256, ge=16, description="Tokens per packed block.")
    batch_size: int = Field(16, ge=1, description="Blocks per optimizer step.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (cosine decay, linear warmup).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps for the linear warmup.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    seed: int = Field(0, description="Seed for block order and initialization-free randomness.")
    max_documents: int | None = Field(None, ge=1, description="Use a seeded subset of conversations.")
    logging_steps: int = Field(25, ge=1, description="Log the loss every N steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (for resume).")
    training: dict[str, Any] = Field(default_factory=dict,
                                     description="Extra transformers.TrainingArguments fields, passed through.")


def pretraining_documents(records: Sequence[Any]) -> list[str]:
    """One text per conversation: its context, all turns and the final response of its last record, joined by
    newlines (records of one conversation share their history, so only the longest is kept)."""
    last: dict[str, Any] = {}
    for record in records:
        key = record.conversation_id or record.id
        if key not in last or len(record.history) > len(last[key].history):
            last[key] = record
    docs = []
    for key in sorted(last):
        r = last[key]
        parts = [r.context] if r.context else []
        parts += [t["content"] for t in r.history] + [r.prompt, r.response]
        docs.append("\n".join(p for p in parts if p))
    return docs


def pack_blocks(tokenizer: Any, documents: Sequence[str], block_size: int) -> Any:
    """Token blocks [n_blocks, block_size]: documents tokenized, each followed by <|endoftext|> (or eos),
    concatenated and cut into full blocks (the remainder is dropped)."""
    sep = tokenizer.convert_tokens_to_ids(DOCUMENT_SEPARATOR)
    if sep is None or sep == tokenizer.unk_token_id:
        sep = tokenizer.eos_token_id
    ids: list[int] = []
    for start in range(0, len(documents), 1000):
        for doc in tokenizer(list(documents[start:start + 1000]), add_special_tokens=False)["input_ids"]:
            ids.extend(doc)
            ids.append(sep)
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ConfigError(f"not enough text for one block of {block_size} tokens ({len(ids)} tokens)")
    return torch.tensor(ids[:n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


class _Blocks:
    """A map-style dataset of packed blocks (labels = inputs; the model shifts them)."""

    def __init__(self, blocks: Any):
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def pretrain(model_source: str | Path, records: Sequence[Any], out_dir: str | Path,
             config: PretrainConfig | None = None, *, callbacks: list[Any] | None = None,
             inputs: dict[str, str] | None = None, log: Any = None) -> Path:
    """Pretrain `model_source` on the text of `records` (the train split) and write the model folder to
    `out_dir` atomically (model, tokenizer, manifest with the loss curve). Returns `out_dir`."""
    config = config or PretrainConfig()
    say = log or silent
    started = time.time()
    source = check_model_source(model_source)
    docs = pretraining_documents(records)
    if config.max_documents is not None and config.max_documents < len(docs):
        docs = random.Random(config.seed).sample(docs, config.max_documents)
    tokenizer = load_tokenizer(source)
    say(f"packing {len(docs)} documents into blocks of {config.block_size} tokens")
    blocks = pack_blocks(tokenizer, docs, config.block_size)
    check_training_keys(config)

    def build(parts: TrainerParts) -> Trainer:
        return Trainer(model=parts.model, args=pretrain_args(config, parts.work), train_dataset=_Blocks(blocks),
                       callbacks=callbacks)

    def summarize(trainer: Trainer, result: Any) -> dict[str, Any]:
        return {"n_documents": len(docs), "n_blocks": int(blocks.shape[0]), "tokens_per_epoch": int(blocks.numel()),
                "tokens_seen": config.max_steps * config.batch_size * config.block_size,
                "n_parameters": count_parameters(trainer.model),
                "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history
                               if "loss" in h]}

    return run_training(TrainingRun(
        stage="model.pretrain", model_source=source, output_dir=Path(out_dir), config=config.model_dump(),
        seed=config.seed, tokenizer=tokenizer, build_trainer=build, summarize=summarize,
        inputs=lambda: dict(inputs or {}), started=started, fingerprint={"n_blocks": int(blocks.shape[0])}),
        log=say)


def check_training_keys(config: PretrainConfig) -> None:
    """Every key of `training:` must be a transformers.TrainingArguments field."""
    known = set(TrainingArguments.__dataclass_fields__)
    for key in config.training:
        if key not in known:
            raise ConfigError(f"training.{key}: unknown transformers.TrainingArguments field")


def pretrain_args(config: PretrainConfig, output_dir: Path) -> TrainingArguments:
    """The TrainingArguments of a pretraining run: our defaults, `training:`, then the config's own fields."""
    defaults = {"report_to": "none", "disable_tqdm": True, "lr_scheduler_type": "cosine",
                "save_strategy": "steps", "save_total_limit": 1, "dataloader_drop_last": True,
                "dataloader_pin_memory": torch.cuda.is_available()}
    return TrainingArguments(**{**defaults, **config.training, "output_dir": str(output_dir),
                                "max_steps": config.max_steps, "per_device_train_batch_size": config.batch_size,
                                "learning_rate": config.learning_rate, "warmup_steps": config.warmup_ratio,
                                "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm,
                                "seed": config.seed, "logging_steps": config.logging_steps,
                                "save_steps": config.save_steps})
