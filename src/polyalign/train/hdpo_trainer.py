"""HDPOTrainer: TRL 1.16's DPOTrainer with the HDPO loss (`polyalign.train.hdpo_loss`), pair weights normalized
over the whole optimizer step, per-bucket reward accuracy and margin, and an optional on-policy critic term.

What it reuses from TRL: dataset preparation and tokenization, the preference collator ([chosen; rejected]
stacked, `completion_mask`), reference log-probs (precomputed columns or `compute_ref_log_probs`, which also
handles PEFT), the fused LM head, the metrics log. What it adds: the pair columns `weight, d_chosen, d_rejected,
bucket_index, language_index` through the collator (`ExtraColumnsMixin`), the step-wide weight total
(`GlobalBatchStatsMixin`), and `compute_loss`. TRL 1.16 has no loss hook and no public policy forward
(`concatenated_forward` was removed), so `completion_log_probs` below repeats the five lines of
`DPOTrainer._compute_loss` that compute summed completion log-probs; the contract tests prove it equals TRL.

Its options are the fields of `HDPOConfig` (`self.args`). Plain DPO is this trainer with every HDPO term off
(`HDPOConfig.is_plain_dpo`: reg_lambda = anchor_gamma = 0, uniform weights, no on-policy term): its loss then
equals TRL's sigmoid loss (tested), so the baseline shares every other line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.utils import pad

from ..errors import ConfigError
from ..models.loading import eos_token_ids
from .bucket_log import BucketLossAccumulator, BucketLossLog, EvalPrefixMixin
from .columns import ExtraColumnsMixin, pop_extra_columns
from .end_of_turn import EndOfTurnCompletionsMixin
from .global_batch import GlobalBatchStatsMixin
from .hdpo_config import HDPOConfig
from .hdpo_loss import hdpo_loss, leave_one_out_baselines, reinforce_loss, update_baseline
from .options import require_config

PAIR_COLUMNS = ("weight", "d_chosen", "d_rejected", "bucket_index", "language_index")
TRL_NON_MODEL_KEYS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")
UNKNOWN_BUCKET = "pooled"  # how the critic scores a sample of a bucket it was not fitted on


def completion_log_probs(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Summed completion log-probs and completion token counts of each row of a TRL preference batch
    (input_ids, attention_mask, completion_mask), as `DPOTrainer._compute_loss` computes them (ld_alpha=None),
    plus the fused-head outputs (entropy, is_top1 ... for metrics)."""
    model_kwargs = {k: v for k, v in inputs.items() if k not in TRL_NON_MODEL_KEYS}
    model_kwargs["use_cache"] = False
    completion_mask = inputs["completion_mask"]
    shift_completion_mask = completion_mask[..., 1:]
    labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
    outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
    seq_len = shift_completion_mask.size(1)  # prompt-learning PEFT prepends virtual tokens: keep the real ones
    per_token_logps = outputs.log_probs[:, -seq_len:]
    return per_token_logps.sum(dim=1), shift_completion_mask.sum(dim=1), outputs


def prompt_ids_of_batch(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The prompt token ids of each pair of a TRL preference batch (the chosen half: tokens before the first
    completion token)."""
    n = inputs["input_ids"].shape[0] // 2
    out = []
    for ids, mask in zip(inputs["input_ids"][:n], inputs["completion_mask"][:n]):
        start = int(mask.nonzero()[0]) if mask.any() else int(inputs["attention_mask"][0].sum())
        out.append(ids[:start])
    return out


def sequences_batch(prompts: Sequence[torch.Tensor], completions: Sequence[torch.Tensor],
                    pad_token_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch {input_ids, attention_mask, completion_mask} of prompt + completion token ids, laid
    out like TRL's preference collator, for `completion_log_probs`."""
    ids = [torch.cat([p, c]) for p, c in zip(prompts, completions)]
    masks = [torch.cat([torch.zeros_like(p), torch.ones_like(c)]) for p, c in zip(prompts, completions)]
    return {"input_ids": pad(ids, padding_value=pad_token_id, padding_side="right"),
            "attention_mask": pad([torch.ones_like(x) for x in ids], padding_value=0, padding_side="right"),
            "completion_mask": pad(masks, padding_value=0, padding_side="right")}


class HDPOTrainer(EvalPrefixMixin, ExtraColumnsMixin, GlobalBatchStatsMixin, EndOfTurnCompletionsMixin,
                  DPOTrainer):
    """DPOTrainer with the HDPO loss, set by its `HDPOConfig` (`args`). Datasets: TRL conversational preference
    examples (prompt messages, chosen/rejected assistant messages) plus the columns of `PAIR_COLUMNS`. `critic`
    (anything with `.score(texts, languages, bucket_ids, unknown=...)`) is needed by the on-policy term only."""

    extra_columns = PAIR_COLUMNS
    args: HDPOConfig

    def __init__(self, *args: Any, bucket_names: Sequence[str], language_names: Sequence[str] = ("en", "zh"),
                 critic: Any = None, **kwargs: Any):
        self.bucket_names = list(bucket_names)
        self.language_names = list(language_names)
        if not self.bucket_names:
            raise ConfigError("bucket_names is empty")
        config = require_config(type(self), HDPOConfig, args, kwargs)
        if config.on_policy and not callable(getattr(critic, "score", None)):
            raise ConfigError("on_policy: a critic with .score(texts, languages, bucket_ids) is required")
        for name, ds in _datasets(kwargs.get("train_dataset"), kwargs.get("eval_dataset")):
            _check_pair_columns(ds, name, len(self.bucket_names), len(self.language_names))
        self.critic = critic
        super().__init__(*args, **kwargs)
        self._check_supported()
        self._wrap_collator_for_extra_columns()
        # Each micro-batch returns its share of the step loss (divided by the step-wide weight total): the
        # Trainer must not divide by the gradient-accumulation steps again.
        self.loss_is_scaled_for_ga = True
        self._bucket_stats = {"train": BucketLossAccumulator(len(self.bucket_names)),
                              "eval": BucketLossAccumulator(len(self.bucket_names))}
        self.last_bucket_summaries: dict[str, dict[str, Any]] = {}
        self.bucket_log = BucketMetricsLog(self.args.output_dir, enabled=self.is_world_process_zero())
        self.on_policy_baseline: float | None = None
        self.on_policy_seconds = 0.0
        self.on_policy_calls = 0
        self.train_step_seconds = 0.0

    # ---- checks ---------------------------------------------------------------------------------------------
    def _check_supported(self) -> None:
        problems = []
        if list(self.loss_types) != ["sigmoid"]:
            problems.append(f"loss_type={self.loss_types!r} (HDPO is built on the sigmoid loss)")
        if self.f_divergence_type != "reverse_kl":
            problems.append(f"f_divergence_type={self.f_divergence_type!r}")
        if self.ld_alpha is not None:
            problems.append("ld_alpha")
        if self.use_weighting:
            problems.append("use_weighting (WPO)")
        if self.aux_loss_enabled:
            problems.append("MoE router aux loss")
        if self._is_vision_dataset:
            problems.append("vision datasets")
        if self.compute_loss_func is not None:
            problems.append("compute_loss_func")
        pc = getattr(self.accelerator, "parallelism_config", None)
        if pc is not None and (pc.tp_size > 1 or pc.cp_enabled or pc.sp_enabled):
            problems.append("tensor/context/sequence parallelism")
        if self.args.on_policy:
            ds = self.accelerator.state.deepspeed_plugin
            if self.is_fsdp_enabled or (ds is not None and ds.zero_stage == 3):
                problems.append("the on-policy term under FSDP / ZeRO-3 (generation needs gathered weights)")
        if problems:
            raise ConfigError("HDPOTrainer does not support " + ", ".join(problems))

    # ---- step statistics (GlobalBatchStatsMixin) ------------------------------------------------------------
    def step_statistics(self, batch_samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Σw (or the pair count with uniform weights) and the pair count over this rank's micro-batches."""
        weight_total = torch.zeros((), dtype=torch.float64)
        pairs = torch.zeros((), dtype=torch.float64)
        for batch in batch_samples:
            w = batch["weight"].detach().to("cpu", torch.float64)
            pairs += w.numel()
            weight_total += w.sum() if self.args.use_weights else w.numel()
        return {"weight_total": weight_total, "pairs": pairs}

    # ---- loss -----------------------------------------------------------------------------------------------
    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        mode = "train" if self.model.training else "eval"
        extra = pop_extra_columns(inputs, self.extra_columns)
        missing = [c for c in PAIR_COLUMNS if c not in extra]
        if missing:
            raise ConfigError(f"the batch has no {missing} column(s): they were lost before compute_loss")
        logps, lengths, outputs = completion_log_probs(model, inputs)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        chosen_lengths, rejected_lengths = lengths.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(
                self.ref_model if self.ref_model is not None else model, inputs)
        weights = extra["weight"].to(chosen_logps.dtype)
        if not self.args.use_weights:
            weights = torch.ones_like(weights)
        if mode == "train":
            if not self.step_stats or "weight_total" not in self.step_stats:
                raise RuntimeError("the HDPO loss needs the step statistics from get_batch_samples")
            weight_total = self.step_stats["weight_total"]
        else:  # evaluation: each batch is its own step
            weight_total = weights.sum()
        loss, metrics = hdpo_loss(chosen_logps, rejected_logps, ref_chosen.to(chosen_logps.dtype),
                                  ref_rejected.to(chosen_logps.dtype), chosen_lengths, rejected_lengths,
                                  extra["d_chosen"], extra["d_rejected"], weights, weight_total,
                                  **self.args.loss_kwargs())
        scale = float(weight_total) / max(float(weights.sum()), 1e-12)  # share of the step -> micro-batch mean
        if mode == "train":
            # DDP/FSDP/DeepSpeed average gradients over ranks; the weight total already spans all ranks.
            loss = loss * self.accelerator.num_processes
            if self.args.on_policy and self.state.global_step % self.args.on_policy_every_n_steps == 0:
                loss = loss + self._on_policy_term(model, inputs, extra) * self.accelerator.num_processes
        self._record_metrics(mode, inputs, outputs, metrics, chosen_logps, rejected_logps, scale)
        self._bucket_stats[mode].add(*_bucket_sums(extra["bucket_index"], metrics, weights, len(self.bucket_names)))
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k not in TRL_NON_MODEL_KEYS})
            return loss, outputs
        return loss

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        started = time.perf_counter()
        try:
            return super().training_step(*args, **kwargs)
        finally:
            self.train_step_seconds += time.perf_counter() - started

    # ---- on-policy critic term ------------------------------------------------------------------------------
    def _on_policy_term(self, model: Any, inputs: dict[str, torch.Tensor], extra: dict[str, torch.Tensor]) -> torch.Tensor:
        """This micro-batch's share of lambda * mean_j (d_j - b_j) log pi(y_j) / max_new_tokens over the step's
        samples (summed log-probs: unbiased at any sample length, see reinforce_loss)."""
        started = time.perf_counter()
        prompts = prompt_ids_of_batch(inputs)
        samples = self._sample(model, prompts)
        tokenizer = self._tokenizer
        texts = [tokenizer.decode(s, skip_special_tokens=True).strip() for s in samples]
        languages = [self.language_names[int(i)] for i in extra["language_index"]]
        buckets = [self.bucket_names[int(i)] for i in extra["bucket_index"]]
        distances = torch.as_tensor(self.critic.score(texts, languages, buckets, unknown=UNKNOWN_BUCKET),
                                    dtype=torch.float32, device=self.accelerator.device)
        batch = sequences_batch(prompts, samples, tokenizer.pad_token_id)
        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
        sample_logps, sample_lengths, _ = completion_log_probs(model, batch)
        all_distances = self.accelerator.gather(distances)
        # The baseline never depends on the sample it is subtracted from: the running mean of earlier steps, or
        # (first call) the mean of the other samples.
        baseline = (self.on_policy_baseline if self.on_policy_baseline is not None
                    else leave_one_out_baselines(distances))
        n_step = float(self.step_stats["pairs"])
        term = (self.args.on_policy_lambda * reinforce_loss(sample_logps, distances, baseline,
                                                            float(self.args.on_policy_max_new_tokens))
                * (len(samples) / n_step))
        self.on_policy_baseline = update_baseline(self.on_policy_baseline, all_distances,
                                                  self.args.on_policy_baseline_momentum)
        self.on_policy_calls += 1
        self.on_policy_seconds += time.perf_counter() - started
        m = self._metrics["train"]
        m["on_policy/distance"].append(float(all_distances.mean()))
        m["on_policy/baseline"].append(float(self.on_policy_baseline))
        m["on_policy/sample_tokens"].append(float(sample_lengths.float().mean()))
        m["on_policy/term"].append(float(term.detach()) * n_step / len(samples))
        return term

    def _sample(self, model: Any, prompts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One sampled completion per prompt from the current policy (no grad), cut after its first end token."""
        unwrapped = self.accelerator.unwrap_model(model)
        pad_id = self._tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        device = self.accelerator.device
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
        attention = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        for i, p in enumerate(prompts):  # left padding for generation
            ids[i, width - len(p):] = p.to(device)
            attention[i, width - len(p):] = 1
        eos_ids = eos_token_ids(unwrapped, self._tokenizer)
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            with torch.no_grad():
                out = unwrapped.generate(input_ids=ids, attention_mask=attention, do_sample=True,
                                         temperature=self.args.on_policy_temperature, top_p=1.0, top_k=0,
                                         max_new_tokens=self.args.on_policy_max_new_tokens, eos_token_id=eos_ids,
                                         pad_token_id=pad_id, use_cache=True)
        finally:
            unwrapped.train(was_training)
        samples = []
        ends = torch.tensor(eos_ids, device=out.device)
        for row in out[:, width:]:
            hit = torch.isin(row, ends).nonzero()
            samples.append(row[: int(hit[0]) + 1] if len(hit) else row)
        return [s.detach() for s in samples]

    @property
    def on_policy_time_share(self) -> float:
        """Share of the training-step time spent on the on-policy term (sampling, scoring, its forward)."""
        return self.on_policy_seconds / self.train_step_seconds if self.train_step_seconds > 0 else 0.0

    # ---- metrics --------------------------------------------------------------------------------------------
    def _record_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any, metrics: dict[str, torch.Tensor],
                        chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, scale: float) -> None:
        """TRL's DPO metrics (rewards/*, logps/*, entropy, num_tokens, mean_token_accuracy) and the HDPO terms
        (hdpo/dpo, hdpo/reg, hdpo/anchor as weighted micro-batch means; p_mean, d_gap_mean), gathered in two
        collectives."""
        gather = self.accelerator.gather_for_metrics
        pairs = torch.stack([metrics["pair/reward_chosen"], metrics["pair/reward_rejected"], metrics["pair/correct"],
                             chosen_logps.detach(), rejected_logps.detach()]).float()
        pairs = gather(pairs.T.contiguous()).T
        shift_mask = inputs["completion_mask"][..., 1:]
        seq_len = shift_mask.size(1)
        chosen_mask = shift_mask.chunk(2, dim=0)[0].bool()
        chosen_top1 = outputs.is_top1[:, -seq_len:].chunk(2, dim=0)[0]
        scalars = torch.stack([
            (outputs.entropy[:, -seq_len:].detach() * shift_mask).sum().float(), shift_mask.sum().float(),
            (chosen_top1 & chosen_mask).sum().float(), chosen_mask.sum().float(),
            inputs["attention_mask"].sum().float(),
            metrics["dpo"].float() * scale, metrics["reg"].float() * scale, metrics["anchor"].float() * scale,
            metrics["p_mean"].float(), metrics["d_gap_mean"].float()]).to(self.accelerator.device)
        totals = gather(scalars[None]).reshape(-1, scalars.numel())
        sums, means = totals.sum(0), totals.mean(0)
        m = self._metrics[mode]
        m["entropy"].append(float(sums[0] / sums[1]) if sums[1] > 0 else 0.0)
        m["mean_token_accuracy"].append(float(sums[2] / sums[3]) if sums[3] > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += int(sums[4]) // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
        m["rewards/chosen"].append(float(pairs[0].mean()))
        m["rewards/rejected"].append(float(pairs[1].mean()))
        m["rewards/accuracies"].append(float(pairs[2].mean()))
        m["rewards/margins"].append(float((pairs[0] - pairs[1]).mean()))
        m["logps/chosen"].append(float(pairs[3].mean()))
        m["logps/rejected"].append(float(pairs[4].mean()))
        for i, key in enumerate(("hdpo/dpo", "hdpo/reg", "hdpo/anchor", "hdpo/p_mean", "hdpo/d_gap_mean"), start=5):
            m[key].append(float(means[i]))

    def bucket_summary(self, mode: str) -> dict[str, Any]:
        """Per-bucket reward accuracy and margin accumulated since the last call (summed over ranks); resets."""
        acc = self._bucket_stats[mode]
        k = len(self.bucket_names)
        if acc.empty():
            sums, counts = torch.zeros(3, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        else:
            sums, counts = acc.take()
        if self.accelerator.num_processes > 1:
            packed = torch.cat([sums, counts[None]]).to(self.accelerator.device)
            packed = self.accelerator.reduce(packed, reduction="sum").cpu()
            sums, counts = packed[:3], packed[3]
        return summarize_bucket_preferences(sums.cpu(), counts.cpu(), self.bucket_names)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        summary = self.bucket_summary(mode)
        if summary["buckets"]:
            split = "train" if mode == "train" else self._eval_prefix
            self.last_bucket_summaries[split] = summary
            prefix = "bucket" if mode == "train" else f"{self._eval_prefix}_bucket"
            logs.update(flat_bucket_metrics(summary, prefix))
            extra = {}
            if mode == "train" and self.args.on_policy:
                extra["on_policy_time_share"] = round(self.on_policy_time_share, 4)
            self.bucket_log.write(step=self.state.global_step, epoch=self.state.epoch, split=split,
                                  summary=summary, extra=extra)
        if mode == "train" and self.args.on_policy:
            logs["on_policy/time_share"] = self.on_policy_time_share
        super().log(logs, start_time)


class BucketMetricsLog(BucketLossLog):
    """Appends one JSON row per logging event to `<output_dir>/bucket_metrics.jsonl` (main process only)."""

    FILENAME = "bucket_metrics.jsonl"


def _bucket_sums(bucket_index: torch.Tensor, metrics: dict[str, torch.Tensor], weights: torch.Tensor,
                 num_buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bucket sums of (correct, margin, weight) [3, K] and pair counts [K] of one micro-batch."""
    index = bucket_index.to(metrics["pair/correct"].device).long()
    values = torch.stack([metrics["pair/correct"], metrics["pair/reward_chosen"] - metrics["pair/reward_rejected"],
                          weights.detach()]).double()
    sums = torch.zeros(3, num_buckets, dtype=torch.float64, device=values.device).index_add_(1, index, values)
    counts = torch.zeros(num_buckets, dtype=torch.float64, device=values.device).index_add_(
        0, index, torch.ones_like(values[0]))
    return sums.cpu(), counts.cpu()


def summarize_bucket_preferences(sums: torch.Tensor, counts: torch.Tensor, names: Sequence[str]) -> dict[str, Any]:
    """Reward accuracy, mean margin and mean weight per bucket with pairs; the macro accuracy and margin over
    buckets, the worst bucket, and the accuracy and margin over all pairs."""
    buckets = {}
    for j, name in enumerate(names):
        n = float(counts[j])
        if n > 0:
            buckets[name] = {"pairs": int(n), "reward_accuracy": float(sums[0, j]) / n,
                             "margin": float(sums[1, j]) / n, "mean_weight": float(sums[2, j]) / n}
    if not buckets:
        return {"buckets": {}, "macro_accuracy": math.nan, "worst_bucket": None, "pair_accuracy": math.nan,
                "pair_margin": math.nan}
    accuracy = {b: v["reward_accuracy"] for b, v in buckets.items()}
    worst = min(accuracy, key=accuracy.get)
    return {"buckets": buckets, "macro_accuracy": sum(accuracy.values()) / len(accuracy),
            "worst_bucket": worst, "worst_accuracy": accuracy[worst],
            "macro_margin": sum(v["margin"] for v in buckets.values()) / len(buckets),
            "pair_accuracy": float(sums[0].sum() / counts.sum()), "pair_margin": float(sums[1].sum() / counts.sum())}


def flat_bucket_metrics(summary: dict[str, Any], prefix: str = "bucket") -> dict[str, float]:
    """Scalars for the trainer log (tensorboard / wandb): accuracy and margin per bucket, macro and worst."""
    out: dict[str, float] = {}
    for name, v in summary["buckets"].items():
        out[f"{prefix}_reward_accuracy/{name}"] = v["reward_accuracy"]
        out[f"{prefix}_margin/{name}"] = v["margin"]
    if summary["buckets"]:
        out[f"{prefix}_reward_accuracy_macro"] = summary["macro_accuracy"]
        out[f"{prefix}_reward_accuracy_worst"] = summary["worst_accuracy"]
        out[f"{prefix}_margin_macro"] = summary["macro_margin"]
    return out


def _datasets(train: Any, eval_: Any) -> list[tuple[str, Any]]:
    out = [("train", train)]
    if isinstance(eval_, dict):
        out += list(eval_.items())
    elif eval_ is not None:
        out.append(("eval", eval_))
    return out


def _check_pair_columns(dataset: Any, name: str, num_buckets: int, num_languages: int) -> None:
    columns = getattr(dataset, "column_names", None)
    if dataset is None or columns is None:
        return
    missing = [c for c in PAIR_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(f"the {name} dataset lacks the pair column(s) {missing} (columns: {', '.join(columns)})")
    if len(dataset):
        for column, limit in (("bucket_index", num_buckets), ("language_index", num_languages)):
            values = dataset[column]
            if min(values) < 0 or max(values) >= limit:
                raise ConfigError(f"the {name} dataset's '{column}' values must be in [0, {limit})")


__all__ = ["HDPOTrainer", "PAIR_COLUMNS", "completion_log_probs", "summarize_bucket_preferences"]
