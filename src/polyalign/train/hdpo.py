"""`polyalign train hdpo` / `polyalign train dpo`: preference training of any HF causal LM on a pairs.jsonl.

`run_hdpo(config) -> Path` is the whole stage: validated pairs → TRL conversational preference examples (prompt
cut from the left to fit, completions kept) with the pair columns → `HDPOTrainer` → an HF model folder with
`manifest.json` and `bucket_metrics.jsonl`, written atomically. Plain DPO (`as_plain_dpo`) is the same run with
the regularizer, the anchor, the weights and the on-policy term off. Training runs in a hidden work folder next to
the output (`.<name>.work`, shared with the SFT conventions) so that a killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ..config import StrictModel, load_config
from ..errors import ConfigError, InputError
from ..io import atomic_path, make_manifest, sha256_file, sha256_json, sha256_tree, write_json
from ..data.stratify import random_subset
from .sft import LoraSection, _prepare_work_dir, _trim_bucket_log, _work_dir, bucket_counts, check_trl_keys, \
    last_complete_checkpoint, quiet_console_logs, write_model_files

RESERVED_TRAINING_KEYS = ("output_dir", "seed", "max_length", "beta", "label_smoothing")
DEFAULT_REG_FORM = "expected"  # chosen by benchmarks/hdpo_forms.py (docs/hdpo.md §5, "Choosing the form")


class LossSection(StrictModel):
    """The HDPO loss (docs/hdpo.md §4). `polyalign train dpo` forces reg_lambda = anchor_gamma = 0 and
    use_weights = false."""

    beta: float = Field(0.1, gt=0, description="DPO temperature β.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Conservative-DPO ε (0 = TRL's sigmoid loss).")
    reg_lambda: float = Field(0.5, ge=0, description="Weight λ of the distribution regularizer (0 = off; 0.5 is "
                                                     "the measured setting of docs/hdpo.md §5).")
    reg_form: Literal["expected", "offset"] = Field(
        DEFAULT_REG_FORM, description="'expected': λ·E_p[d] with p = σ(τ·m); 'offset': λ·(d⁻ − d⁺) inside the "
                                      "log-sigmoid.")
    tau: float = Field(2.0, gt=0, description="Temperature τ of p = σ(τ·m), m the per-token reference-relative "
                                              "margin (expected form).")
    offset_sign: Literal[1, -1] = Field(1, description="+1: z − λ(d⁻ − d⁺) (ODPO); −1: the issue's z − λ(d⁺ − d⁻).")
    anchor_gamma: float = Field(0.05, ge=0, description="Weight γ of the SFT anchor on the chosen response.")
    use_weights: bool = Field(True, description="Use the pairs' weights (false: every pair weighs 1).")


class OnPolicySection(StrictModel):
    """The on-policy critic term (REINFORCE with a running baseline), off by default. Its cost is measured and
    logged (on_policy/time_share)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              populate_by_name=True)

    enabled: bool = Field(False, description="Add λ_on · REINFORCE(critic distance of policy samples).")
    lambda_: float = Field(0.05, gt=0, alias="lambda", description="Weight λ_on of the term.")
    every_n_steps: int = Field(10, ge=1, description="Sample and score on every n-th optimizer step.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens sampled at most per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    critic: str | None = Field(None, description="Critic bundle (polyalign critic fit); required when enabled.")
    min_auc: float = Field(0.75, ge=0, le=1, description="Refuse a critic whose held-out AUC is lower.")
    baseline_momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of the running baseline b.")


class HDPORunConfig(StrictModel):
    """One DPO / HDPO run (configs/train/hdpo.yaml, configs/train/dpo.yaml)."""

    model: str = Field(..., description="Policy init and reference: a local HF folder or a Hub id.")
    pairs: str = Field(..., description="Training pairs.jsonl (polyalign pairs build).")
    eval_pairs: str | None = Field(None, description="Held-out pairs.jsonl for per-bucket reward accuracy.")
    output_dir: str = Field(..., description="Output model folder (written when training succeeds).")
    seed: int = Field(0, description="Seed for the data order, subsets and initialization.")
    max_length: int = Field(512, ge=16, description="Tokens per prompt + completion.")
    max_prompt_length: int | None = Field(None, ge=8, description="Cap on prompt tokens (null: whatever the "
                                                                  "longer completion leaves).")
    min_prompt_tokens: int = Field(32, ge=1, description="Prompt tokens kept at least; a completion that still "
                                                         "does not fit is cut at its end.")
    max_train_pairs: int | None = Field(None, ge=1, description="Seeded subset of the training pairs.")
    max_eval_pairs: int | None = Field(1000, ge=1, description="Seeded subset of the held-out pairs.")
    skip_invalid: bool = Field(False, description="Skip (and count) invalid pair rows instead of stopping.")
    resume: bool = Field(True, description="Resume from the last checkpoint of an interrupted identical run.")
    model_dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Weights dtype for training (mixed precision is set in training: bf16/fp16).")
    loss: LossSection = Field(default_factory=LossSection, description="The HDPO loss.")
    on_policy: OnPolicySection = Field(default_factory=OnPolicySection, description="On-policy critic term.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA through PEFT.")
    training: dict[str, Any] = Field(default_factory=dict, description="trl.DPOConfig fields, passed through.")

    @property
    def method(self) -> str:
        return "dpo" if is_plain_dpo(self) else "hdpo"


def load_hdpo_config(path: str | Path, overrides: dict[str, Any] | None = None) -> HDPORunConfig:
    """Load and validate a DPO/HDPO config YAML (with optional overrides)."""
    return load_config(path, HDPORunConfig, overrides)


def is_plain_dpo(config: HDPORunConfig) -> bool:
    """True when the config trains plain sigmoid DPO (no regularizer, anchor, weights or on-policy term)."""
    loss = config.loss
    return (loss.reg_lambda == 0 and loss.anchor_gamma == 0 and not loss.use_weights and loss.label_smoothing == 0
            and not config.on_policy.enabled)


def as_plain_dpo(config: HDPORunConfig) -> tuple[HDPORunConfig, list[str]]:
    """The same run as plain DPO: reg_lambda = anchor_gamma = 0, use_weights = false, on_policy off. Returns
    the new config and a note for every setting that was overridden."""
    notes = []
    loss = config.loss.model_copy()
    if loss.reg_lambda:
        notes.append(f"loss.reg_lambda {loss.reg_lambda} -> 0")
    if loss.anchor_gamma:
        notes.append(f"loss.anchor_gamma {loss.anchor_gamma} -> 0")
    if loss.use_weights:
        notes.append("loss.use_weights true -> false")
    loss = LossSection(**{**loss.model_dump(), "reg_lambda": 0.0, "anchor_gamma": 0.0, "use_weights": False})
    on_policy = config.on_policy
    if on_policy.enabled:
        notes.append("on_policy.enabled true -> false")
        on_policy = OnPolicySection(**{**on_policy.model_dump(), "enabled": False})
    return config.model_copy(update={"loss": loss, "on_policy": on_policy}), notes


def loss_params(config: HDPORunConfig) -> Any:
    """The HDPOLossParams of a config."""
    from .hdpo_loss import HDPOLossParams

    s = config.loss
    return HDPOLossParams(beta=s.beta, label_smoothing=s.label_smoothing, reg_lambda=s.reg_lambda,
                          reg_form=s.reg_form, tau=s.tau, offset_sign=float(s.offset_sign),
                          anchor_gamma=s.anchor_gamma)


# ---------------------------------------------------------------------------------------------------------------
# trl.DPOConfig


def default_dpo_args() -> dict[str, Any]:
    """Our defaults for trl.DPOConfig (the YAML `training:` section overrides them; TRL's own for the rest)."""
    import torch

    return {"bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
            "gradient_checkpointing": False, "report_to": "none", "logging_steps": 10, "save_strategy": "no",
            "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "disable_tqdm": True,
            "ddp_find_unused_parameters": False, "dataloader_pin_memory": torch.cuda.is_available(),
            "precompute_ref_log_probs": True, "prediction_loss_only": True}


def check_training_keys(config: HDPORunConfig) -> None:
    """Every key of `training:` must be a trl.DPOConfig field and not one set elsewhere in the config."""
    from trl import DPOConfig

    where = {key: "in loss" if key in ("beta", "label_smoothing") else "at the top level"
             for key in RESERVED_TRAINING_KEYS}
    check_trl_keys(config.training, DPOConfig, where)


def make_dpo_args(config: HDPORunConfig, output_dir: str | Path) -> Any:
    """trl.DPOConfig from the config's `training:` mapping; an unknown or reserved key is a ConfigError."""
    from trl import DPOConfig

    check_training_keys(config)
    kwargs = {**default_dpo_args(), **config.training, "output_dir": str(output_dir), "seed": config.seed,
              "max_length": config.max_length, "beta": config.loss.beta}
    try:
        return DPOConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------------------------
# Pairs -> TRL preference examples


@dataclasses.dataclass
class PairExampleStats:
    """What fitting to the token budget did to a set of pair examples."""

    n_examples: int = 0
    n_prompt_truncated: int = 0
    n_turns_dropped: int = 0
    n_completion_truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def pair_example(row: dict[str, Any], bucket_index: dict[str, int], language_index: dict[str, int]) -> dict[str, Any]:
    """The TRL conversational preference example of one pairs.jsonl row, with the pair columns."""
    return {"prompt": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
            "weight": float(row["weight"]), "d_chosen": float(row["d_chosen"]),
            "d_rejected": float(row["d_rejected"]), "bucket_index": bucket_index[row["bucket_id"]],
            "language_index": language_index[row["language"]]}


def build_pair_examples(rows: Sequence[dict[str, Any]], tokenizer: Any, bucket_index: dict[str, int],
                        language_index: dict[str, int], *, max_length: int, max_prompt_length: int | None = None,
                        min_prompt_tokens: int = 32,
                        source: str | Path | None = None) -> tuple[list[dict[str, Any]], PairExampleStats]:
    """Preference examples of `rows`, the prompt cut from the left (shared chat fitting: oldest turns first, then
    the start of the user turn) so that prompt + the longer completion fit `max_length` (prompt at least
    `min_prompt_tokens`, at most `max_prompt_length`). Completions are kept; one that still does not fit is cut
    at its end by TRL's collator (counted)."""
    from ..models.chat import count_tokens, fit_chat, pretrim_history

    examples = [pair_example(r, bucket_index, language_index) for r in rows]
    stats = PairExampleStats(n_examples=len(examples))
    if not examples:
        return examples, stats
    n = len(examples)
    texts = [c[0]["content"] for ex in examples for c in (ex["chosen"], ex["rejected"])]
    completion_tokens = count_tokens(tokenizer, texts)
    longest = [max(completion_tokens[2 * i], completion_tokens[2 * i + 1]) + 2 for i in range(n)]  # + end marks
    budgets = [max(min_prompt_tokens, min(max_prompt_length or max_length, max_length - c)) for c in longest]
    dropped = []
    for ex, budget in zip(examples, budgets):
        ex["prompt"], k = pretrim_history(tokenizer, ex["prompt"], budget)
        dropped.append(k)
    rendered = tokenizer.apply_chat_template([ex["prompt"] for ex in examples], tokenize=False,
                                             add_generation_prompt=True)
    prompt_tokens = count_tokens(tokenizer, rendered)
    for i, (ex, budget, n_prompt) in enumerate(zip(examples, budgets, prompt_tokens)):
        turns = dropped[i]
        if n_prompt > budget:
            try:
                fit = fit_chat(tokenizer, ex["prompt"], None, budget, n_tokens=n_prompt)
            except ValueError as exc:
                raise InputError(f"the prompt cannot be fit into {budget} tokens: {exc}", file=source, line=None,
                                 field="prompt") from None
            ex["prompt"], n_prompt = fit.prompt, fit.n_tokens
            turns += fit.dropped_turns
            stats.n_prompt_truncated += 1
        elif turns:
            stats.n_prompt_truncated += 1
        stats.n_turns_dropped += turns
        stats.n_completion_truncated += n_prompt + longest[i] > max_length
    return examples, stats


def _vocabularies(*row_sets: Sequence[dict[str, Any]], source: str) -> tuple[list[str], list[str]]:
    buckets, languages = set(), set()
    for rows in row_sets:
        for row in rows:
            buckets.add(row["bucket_id"])
            language = row.get("language")
            if not isinstance(language, str) or not language:
                raise InputError(f"pair '{row['id']}' has no language", file=source, field="language")
            languages.add(language)
    return sorted(buckets), sorted(languages)


def _load_pair_rows(path: str | Path, skip_invalid: bool, what: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    from ..pairs import load_pairs

    if not Path(path).is_file():
        raise InputError(f"{what} file not found", file=path)
    rows, skipped = load_pairs(path, skip_invalid=skip_invalid)
    if not rows:
        raise InputError(f"no valid pairs in this {what} file", file=path)
    return rows, dict(skipped)


# ---------------------------------------------------------------------------------------------------------------
# The stage


def run_hdpo(config: HDPORunConfig, *, plain_dpo: bool = False, callbacks: list[Any] | None = None,
             log: Any = None) -> Path:
    """Train per `config` (as plain DPO with `plain_dpo`: see `as_plain_dpo`); write the model folder to
    `config.output_dir`; return its path."""
    started = time.time()
    say = log or (lambda *a, **k: None)
    if plain_dpo:
        config, notes = as_plain_dpo(config)
        for note in notes:
            say(f"plain DPO: {note}")
    output_dir = Path(config.output_dir)
    from ..models.loading import check_model_source, load_causal_lm, load_tokenizer

    model_source = check_model_source(config.model)
    check_training_keys(config)
    params = loss_params(config)
    if config.on_policy.enabled and not config.on_policy.critic:
        raise ConfigError("on_policy.critic: a critic bundle is required when on_policy.enabled is true")

    say("loading pairs")
    train_rows, skipped = _load_pair_rows(config.pairs, config.skip_invalid, "pairs")
    eval_rows, eval_skipped = ([], {})
    if config.eval_pairs:
        eval_rows, eval_skipped = _load_pair_rows(config.eval_pairs, config.skip_invalid, "eval pairs")
    train_rows = random_subset(train_rows, config.max_train_pairs, config.seed)
    eval_rows = random_subset(eval_rows, config.max_eval_pairs, config.seed + 1)
    buckets, languages = _vocabularies(train_rows, eval_rows, source=config.pairs)

    critic = None
    if config.on_policy.enabled:
        from ..critic.model import load_critic

        say("loading the critic (on-policy term)")
        critic = load_critic(config.on_policy.critic, min_auc=config.on_policy.min_auc)

    tokenizer = load_tokenizer(model_source, padding_side="right")
    if tokenizer.chat_template is None:
        from ..models.tiny import CHAT_TEMPLATE

        say("the tokenizer has no chat template: using ChatML")
        tokenizer.chat_template = CHAT_TEMPLATE
    work = _work_dir(output_dir)
    config_hash = sha256_json({"config": config.model_dump(by_alias=True), "model": model_source})
    args = make_dpo_args(config, work)

    bucket_index = {b: i for i, b in enumerate(buckets)}
    language_index = {lang: i for i, lang in enumerate(languages)}
    say(f"building {len(train_rows)} training pairs")
    fit = dict(max_length=config.max_length, max_prompt_length=config.max_prompt_length,
               min_prompt_tokens=config.min_prompt_tokens)
    train_examples, train_stats = build_pair_examples(train_rows, tokenizer, bucket_index, language_index,
                                                      source=config.pairs, **fit)
    eval_examples, _ = build_pair_examples(eval_rows, tokenizer, bucket_index, language_index,
                                           source=config.eval_pairs, **fit)

    from accelerate import PartialState
    from datasets import Dataset, load_from_disk

    state = PartialState()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise ConfigError(f"{launched} processes were launched but they are not connected (each would train "
                          f"alone); on CPU set ACCELERATE_USE_CPU=1 (see configs/accelerate/cpu_2proc.yaml)")
    checkpoint = None
    if state.is_main_process:
        checkpoint = _prepare_work_dir(work, config_hash, config.resume)
        if checkpoint:
            say(f"resuming from {checkpoint}")
            _trim_bucket_log(work / BUCKET_METRICS_FILE, int(Path(checkpoint).name.split("-")[-1]))
        # Datasets go through disk: TRL's precomputed reference log-probs are cached next to the dataset, which
        # an in-memory dataset does not have on every rank (trl-facts: 2-rank precompute fails in memory).
        Dataset.from_list(train_examples).save_to_disk(str(work / "train_pairs"))
        if eval_examples:
            Dataset.from_list(eval_examples).save_to_disk(str(work / "eval_pairs"))
    state.wait_for_everyone()
    if not state.is_main_process:
        checkpoint = last_complete_checkpoint(work) if config.resume else None
    train_ds = load_from_disk(str(work / "train_pairs"))
    eval_ds = load_from_disk(str(work / "eval_pairs")) if eval_examples else None

    say("loading the model")
    model = load_causal_lm(model_source, dtype=config.model_dtype, device="cpu")
    model.train()
    peft_config = None
    if config.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    from .hdpo_trainer import HDPOSettings, HDPOTrainer, OnPolicySettings

    on = config.on_policy
    settings = HDPOSettings(loss=params, use_weights=config.loss.use_weights, on_policy=OnPolicySettings(
        critic=critic, weight=on.lambda_, every_n_steps=on.every_n_steps, max_new_tokens=on.max_new_tokens,
        temperature=on.temperature, baseline_momentum=on.baseline_momentum) if on.enabled else None)
    say("preparing the trainer" + (" (precomputing reference log-probs)" if args.precompute_ref_log_probs else ""))
    trainer = HDPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
                          bucket_names=buckets, language_names=languages, hdpo=settings)
    quiet_console_logs(trainer)
    result = trainer.train(resume_from_checkpoint=checkpoint or config.training.get("resume_from_checkpoint"))

    final: dict[str, Any] = {}
    if eval_ds is not None:
        say("evaluating held-out pairs")
        metrics = trainer.evaluate(metric_key_prefix="final_eval")
        summary = trainer.last_bucket_summaries.get("final_eval") or {}
        final = {"summary": summary, "loss": metrics.get("final_eval_loss"),
                 "reward_accuracy": summary.get("pair_accuracy"), "margin": summary.get("pair_margin")}

    say("saving")
    merged = None
    if config.lora.enabled and config.lora.merge:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if state.is_main_process:
        _save_output(output_dir, trainer, merged, tokenizer, work, config, model_source, buckets, train_examples,
                     train_stats, result, checkpoint, final, started,
                     {"train": skipped, "eval": eval_skipped})
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return output_dir


BUCKET_METRICS_FILE = "bucket_metrics.jsonl"


def _save_output(output_dir: Path, trainer: Any, merged: Any, tokenizer: Any, work: Path, config: HDPORunConfig,
                 model_source: str, buckets: list[str], train_examples: list[dict[str, Any]], train_stats: Any,
                 result: Any, checkpoint: str | None, final: dict[str, Any], started: float,
                 skipped: dict[str, Any]) -> None:
    """Write the model folder atomically: weights, tokenizer (left padding for generation), bucket metrics,
    manifest."""
    counts = bucket_counts(train_examples, len(buckets))
    with atomic_path(output_dir) as tmp:
        write_model_files(tmp, trainer, merged, tokenizer, work, BUCKET_METRICS_FILE)
        inputs = {"pairs": sha256_file(config.pairs)}
        if config.eval_pairs:
            inputs["eval_pairs"] = sha256_file(config.eval_pairs)
        if Path(model_source).is_dir():
            inputs["model"] = sha256_tree(model_source)
        if config.on_policy.enabled and config.on_policy.critic:
            inputs["critic"] = sha256_tree(config.on_policy.critic)
        write_json(tmp / "manifest.json", make_manifest(
            stage=f"train.{config.method}", config=config.model_dump(by_alias=True), inputs=inputs,
            seed=config.seed, started=started,
            extra={"method": config.method, "model_source": model_source, "loss_params": loss_params(config).to_dict(),
                   "n_train_pairs": len(train_examples), "skipped_pairs": skipped,
                   "truncation": train_stats.as_dict(), "buckets": buckets,
                   "train_bucket_counts": dict(zip(buckets, counts)), "global_steps": trainer.state.global_step,
                   "train_runtime_s": result.metrics.get("train_runtime"),
                   "train_loss": result.metrics.get("train_loss"), "resumed_from": checkpoint,
                   "precompute_ref_log_probs": bool(trainer.args.precompute_ref_log_probs),
                   "on_policy": ({"calls": trainer.on_policy_calls,
                                  "seconds": round(trainer.on_policy_seconds, 3),
                                  "time_share": round(trainer.on_policy_time_share, 4)}
                                 if config.on_policy.enabled else None),
                   "final_eval": final}))


__all__ = ["HDPORunConfig", "LossSection", "OnPolicySection", "load_hdpo_config", "as_plain_dpo", "is_plain_dpo",
           "run_hdpo", "build_pair_examples", "make_dpo_args", "loss_params"]
