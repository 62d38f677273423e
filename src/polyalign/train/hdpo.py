"""`polyalign train hdpo` / `polyalign train dpo`: preference training of any HF causal LM on a pairs.jsonl.

`run_hdpo(config) -> Path` is the whole stage: validated pairs → TRL conversational preference examples (prompt
cut from the left to fit, completions kept) with the pair columns → `HDPOTrainer` → an HF model folder with
`manifest.json` and `bucket_metrics.jsonl`. What is preference training's own is here (the run config, the pair
examples, the held-out evaluation, the manifest fields); the work folder, resume, LoRA and the atomic save are
`run.run_training`'s. The `loss:` and `on_policy:` sections are built from `HDPOConfig`'s fields, so the YAML and
the trainer share one set of defaults. Plain DPO (`as_plain_dpo`) is the same run with every HDPO term off.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, load_from_disk
from pydantic import Field
from trl import DPOConfig

from ..config import StrictModel, load_config
from ..critic import model as critic_model
from ..errors import ConfigError, InputError
from ..io import sha256_file, sha256_tree
from ..models.chat import count_tokens, fit_chat, pretrim_history
from ..models.loading import check_model_source, template_end_of_turn_ids
from ..pairs import load_pairs
from . import hdpo_config
from ..data.stratify import random_subset
from .examples import bucket_counts
from .hdpo_config import HDPOConfig, hdpo_terms
from .hdpo_trainer import BucketMetricsLog, HDPOTrainer
from .options import option_fields, option_values, reserved_training_keys, section_model, value_at
from .run import LoraSection, TrainerParts, TrainingRun, check_trl_keys, make_trainer_args, run_training, silent, \
    trainer_defaults, training_tokenizer, work_dir

RESERVED_TRAINING_KEYS = ("output_dir", "seed", "max_length")

LossSection = section_model(
    HDPOConfig, "loss", "LossSection",
    "The HDPO loss (docs/hdpo.md §4). `polyalign train dpo` forces reg_lambda = anchor_gamma = 0 and "
    "use_weights = false.")
OnPolicySection = section_model(
    HDPOConfig, "on_policy", "OnPolicySection",
    "The on-policy critic term (REINFORCE with a running baseline), off by default. Its cost is measured and "
    "logged (on_policy/time_share).")


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
    """True when the config trains plain sigmoid DPO (decided by `hdpo_config.is_plain_dpo`)."""
    return hdpo_config.is_plain_dpo(option_values(config, HDPOConfig))


def as_plain_dpo(config: HDPORunConfig) -> tuple[HDPORunConfig, list[str]]:
    """The same run as plain DPO: every HDPO term off (reg_lambda = anchor_gamma = 0, use_weights = false,
    on_policy off). Returns the new config and a note for every setting that was overridden."""
    paths = {f.name: f.metadata["yaml"] for f in option_fields(HDPOConfig)}
    data, notes = config.model_dump(by_alias=True), []
    for name, off in hdpo_terms().items():
        value = value_at(config, paths[name])
        if value != off:
            notes.append(f"{paths[name]} {_yaml_word(value)} -> {_yaml_word(off)}")
            *parents, key = paths[name].split(".")
            node = data
            for parent in parents:
                node = node[parent]
            node[key] = off
    return (HDPORunConfig.model_validate(data) if notes else config), notes


def _yaml_word(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ---------------------------------------------------------------------------------------------------------------
# trl.DPOConfig


def training_defaults() -> dict[str, Any]:
    """Our defaults for trl.DPOConfig (the YAML `training:` section overrides them; TRL's own for the rest)."""
    return {**trainer_defaults(), "precompute_ref_log_probs": True, "prediction_loss_only": True}


def check_training_keys(config: HDPORunConfig) -> None:
    """Every key of `training:` must be a trl.DPOConfig field and not one set elsewhere in the config."""
    reserved = {key: "at the top level" for key in RESERVED_TRAINING_KEYS}
    check_trl_keys(config.training, DPOConfig, {**reserved, **reserved_training_keys(HDPOConfig)})


def make_dpo_args(config: HDPORunConfig, output_dir: str | Path) -> HDPOConfig:
    """The trainer's HDPOConfig: our defaults, `training:`, the top-level keys and the `loss:` / `on_policy:`
    sections; an unknown or reserved key, or a bad value, is a ConfigError."""
    check_training_keys(config)
    return make_trainer_args(HDPOConfig, {
        **training_defaults(), **config.training, "output_dir": str(output_dir), "seed": config.seed,
        "max_length": config.max_length, **option_values(config, HDPOConfig)})


# ---------------------------------------------------------------------------------------------------------------
# Pairs -> TRL preference examples


@dataclasses.dataclass
class PairExampleStats:
    """What fitting to the token budget did to a set of pair examples."""

    n_examples: int = 0
    n_prompt_truncated: int = 0
    n_turns_dropped: int = 0
    n_dropped_too_long: int = 0  # pairs whose longer completion (with its end of turn) cannot fit at all

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
                        min_prompt_tokens: int = 32) -> tuple[list[dict[str, Any]], PairExampleStats]:
    """Preference examples of `rows`, the prompt cut from the left (shared chat fitting: oldest turns first, then
    the start of the user turn) so that prompt + the longer completion fit `max_length` (prompt at least
    `min_prompt_tokens`, at most `max_prompt_length`). Completions are never cut: a pair in which either one,
    with its end-of-turn token, still does not fit is dropped and counted (a cut chosen response would teach
    that human answers do not end)."""
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
    fitted = []
    for i, (ex, budget, n_prompt) in enumerate(zip(examples, budgets, prompt_tokens)):
        turns = dropped[i]
        if n_prompt > budget:
            try:
                fit = fit_chat(tokenizer, ex["prompt"], None, budget, n_tokens=n_prompt)
            except ValueError:  # not even the chat template's frame fits beside the completions: dropped below
                continue
            ex["prompt"], n_prompt = fit.prompt, fit.n_tokens
            turns += fit.dropped_turns
            stats.n_prompt_truncated += 1
        elif turns:
            stats.n_prompt_truncated += 1
        stats.n_turns_dropped += turns
        fitted.append(ex)
    totals = chat_lengths_as_trained(tokenizer, [ex["prompt"] + c for ex in fitted
                                                 for c in (ex["chosen"], ex["rejected"])]) if fitted else []
    kept = [ex for i, ex in enumerate(fitted) if max(totals[2 * i], totals[2 * i + 1]) <= max_length]
    stats.n_dropped_too_long = len(examples) - len(kept)
    stats.n_examples = len(kept)
    return kept, stats


def chat_lengths_as_trained(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
    """Tokens of each conversation as the trainers see it: the chat template's rendering up to the last
    end-of-turn token (template text after it is not trained, see labels.py)."""
    eot = set(template_end_of_turn_ids(tokenizer))
    rendered = tokenizer.apply_chat_template(list(conversations), tokenize=False)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    out = []
    for seq in ids:
        last = max((k for k, t in enumerate(seq) if t in eot), default=len(seq) - 1)
        out.append(last + 1)
    return out


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
    if not Path(path).is_file():
        raise InputError(f"{what} file not found", file=path)
    rows, skipped = load_pairs(path, skip_invalid=skip_invalid)
    if not rows:
        raise InputError(f"no valid pairs in this {what} file", file=path)
    return rows, dict(skipped)


# ---------------------------------------------------------------------------------------------------------------
# The stage


@dataclasses.dataclass
class PairData:
    """The examples of one preference run: bucket and language names, the fitted training and held-out
    examples, what fitting did to the training ones, and the invalid rows skipped per file."""

    buckets: list[str]
    languages: list[str]
    train_examples: list[dict[str, Any]]
    train_stats: PairExampleStats
    eval_examples: list[dict[str, Any]]
    skipped: dict[str, dict[str, int]]


def build_pair_data(config: HDPORunConfig, tokenizer: Any, say: Any) -> PairData:
    """Load the pair files and build the fitted examples of a run."""
    say("loading pairs")
    train_rows, skipped = _load_pair_rows(config.pairs, config.skip_invalid, "pairs")
    eval_rows, eval_skipped = ([], {})
    if config.eval_pairs:
        eval_rows, eval_skipped = _load_pair_rows(config.eval_pairs, config.skip_invalid, "eval pairs")
    buckets, languages = _vocabularies(train_rows, eval_rows, source=config.pairs)
    bucket_index = {b: i for i, b in enumerate(buckets)}
    language_index = {lang: i for i, lang in enumerate(languages)}
    say(f"fitting {len(train_rows)} training pairs to {config.max_length} tokens")
    fit = dict(max_length=config.max_length, max_prompt_length=config.max_prompt_length,
               min_prompt_tokens=config.min_prompt_tokens)
    # fit first, then draw the subset: pairs that cannot fit never take a place in it
    train_examples, train_stats = build_pair_examples(train_rows, tokenizer, bucket_index, language_index, **fit)
    eval_examples, _ = build_pair_examples(eval_rows, tokenizer, bucket_index, language_index, **fit)
    train_examples = random_subset(train_examples, config.max_train_pairs, config.seed)
    eval_examples = random_subset(eval_examples, config.max_eval_pairs, config.seed + 1)
    if not train_examples:
        raise InputError(f"no training pair fits max_length={config.max_length} ({train_stats.n_dropped_too_long} "
                         f"dropped: a completion alone is too long)", file=config.pairs)
    say(f"{len(train_examples)} training pairs ({train_stats.n_dropped_too_long} dropped: a completion could not "
        f"fit with its end of turn)")
    return PairData(buckets, languages, train_examples, train_stats, eval_examples,
                    {"train": skipped, "eval": eval_skipped})


def run_hdpo(config: HDPORunConfig, *, plain_dpo: bool = False, callbacks: list[Any] | None = None,
             log: Any = None) -> Path:
    """Train per `config` (as plain DPO with `plain_dpo`: see `as_plain_dpo`); write the model folder to
    `config.output_dir`; return its path."""
    started = time.time()
    say = log or silent
    if plain_dpo:
        config, notes = as_plain_dpo(config)
        for note in notes:
            say(f"plain DPO: {note}")
    model_source = check_model_source(config.model)
    if config.on_policy.enabled and not config.on_policy.critic:
        raise ConfigError("on_policy.critic: a critic bundle is required when on_policy.enabled is true")
    args = make_dpo_args(config, work_dir(config.output_dir))
    tokenizer = training_tokenizer(model_source)
    data = build_pair_data(config, tokenizer, say)
    critic = None
    if args.on_policy:
        say("loading the critic (on-policy term)")
        critic = critic_model.load_critic(args.on_policy_critic, min_auc=args.on_policy_min_auc)

    def build(parts: TrainerParts) -> HDPOTrainer:
        train_ds, eval_ds = pair_datasets(parts, data)
        say("preparing the trainer" + (" (precomputing reference log-probs)" if args.precompute_ref_log_probs else ""))
        return HDPOTrainer(model=parts.model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                           processing_class=tokenizer, peft_config=parts.peft_config, callbacks=callbacks,
                           bucket_names=data.buckets, language_names=data.languages, critic=critic)

    def summarize(trainer: HDPOTrainer, result: Any) -> dict[str, Any]:
        final = held_out_evaluation(trainer, say) if data.eval_examples else {}
        return hdpo_summary(config, data, trainer, final)

    return run_training(TrainingRun(
        stage=f"train.{config.method}", model_source=model_source, output_dir=Path(config.output_dir),
        config=config.model_dump(by_alias=True), seed=config.seed, tokenizer=tokenizer, build_trainer=build,
        summarize=summarize, inputs=lambda: hdpo_inputs(config), started=started, resume=config.resume,
        resume_from=config.training.get("resume_from_checkpoint"), model_dtype=config.model_dtype,
        lora=config.lora, log_file=BucketMetricsLog.FILENAME), log=say)


def pair_datasets(parts: TrainerParts, data: PairData) -> tuple[Dataset, Dataset | None]:
    """The training and held-out datasets, through the work folder: TRL caches the precomputed reference
    log-probs next to the dataset, which an in-memory dataset does not have on every rank (trl-facts: 2-rank
    precompute fails in memory)."""
    if parts.state.is_main_process:
        Dataset.from_list(data.train_examples).save_to_disk(str(parts.work / "train_pairs"))
        if data.eval_examples:
            Dataset.from_list(data.eval_examples).save_to_disk(str(parts.work / "eval_pairs"))
    parts.state.wait_for_everyone()
    eval_ds = load_from_disk(str(parts.work / "eval_pairs")) if data.eval_examples else None
    return load_from_disk(str(parts.work / "train_pairs")), eval_ds


def held_out_evaluation(trainer: HDPOTrainer, say: Any) -> dict[str, Any]:
    """Per-bucket reward accuracy and margin of the trained model on the held-out pairs (all processes)."""
    say("evaluating held-out pairs")
    metrics = trainer.evaluate(metric_key_prefix="final_eval")
    summary = trainer.last_bucket_summaries.get("final_eval") or {}
    return {"summary": summary, "loss": metrics.get("final_eval_loss"),
            "reward_accuracy": summary.get("pair_accuracy"), "margin": summary.get("pair_margin")}


def hdpo_summary(config: HDPORunConfig, data: PairData, trainer: HDPOTrainer,
                 final: dict[str, Any]) -> dict[str, Any]:
    """Preference training's own manifest fields: the loss settings, pairs, buckets, the on-policy cost, the
    held-out evaluation."""
    counts = bucket_counts(data.train_examples, len(data.buckets))
    on_policy = None
    if trainer.args.on_policy:
        on_policy = {"calls": trainer.on_policy_calls, "seconds": round(trainer.on_policy_seconds, 3),
                     "time_share": round(trainer.on_policy_time_share, 4)}
    return {"method": config.method, "loss_params": trainer.args.loss_kwargs(),
            "n_train_pairs": len(data.train_examples), "skipped_pairs": data.skipped,
            "truncation": data.train_stats.as_dict(), "buckets": data.buckets,
            "train_bucket_counts": dict(zip(data.buckets, counts)),
            "precompute_ref_log_probs": bool(trainer.args.precompute_ref_log_probs), "on_policy": on_policy,
            "final_eval": final}


def hdpo_inputs(config: HDPORunConfig) -> dict[str, str]:
    """Hashes of the pair files and the critic bundle a run read."""
    inputs = {"pairs": sha256_file(config.pairs)}
    if config.eval_pairs:
        inputs["eval_pairs"] = sha256_file(config.eval_pairs)
    if config.on_policy.enabled and config.on_policy.critic:
        inputs["critic"] = sha256_tree(config.on_policy.critic)
    return inputs


__all__ = ["HDPORunConfig", "LossSection", "OnPolicySection", "LoraSection", "load_hdpo_config", "as_plain_dpo",
           "is_plain_dpo", "run_hdpo", "build_pair_examples", "make_dpo_args", "check_training_keys"]
