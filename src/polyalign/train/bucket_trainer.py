"""`BucketSFTTrainer`: TRL's SFTTrainer with bucket-aware sampling, a bucket-normalized loss with a global
normalizer, optional online (DRO) bucket weights, and per-bucket train/eval losses in the logs.

The math lives in pure modules (sampler.py, sft_loss.py); this class only moves tensors to it:
- `_get_train_sampler` → `BucketTemperatureSampler` when a temperature is set;
- `step_statistics` (GlobalBatchStatsMixin, via `get_batch_samples`) → loss tokens per bucket over the whole
  optimizer step, all micro-batches and all ranks;
- `compute_loss` → one fused forward (per-token log-probs, no full logits, as in TRL), then either TRL's token
  mean (balancing off: the same value TRL returns) or this micro-batch's share of the bucket-normalized loss;
- `log` → per-bucket losses (gathered over ranks) into the trainer's logs and `bucket_losses.jsonl`.

With balancing off this trainer is plain SFT: default sampler, TRL's loss, same everything else.

Padding-free (`padding_free=True`, TRL's own option, without packing): TRL's collator concatenates each batch's
examples into one row with restarting position ids, and the bucket column comes along per token ([1, seq]), so the
per-bucket loss, its global normalizer and the logs are the same as for the padded batch (padding_free.py checks
that the model keeps packed examples apart). Packing across the dataset stays refused: the sampler draws examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTTrainer

from ..errors import ConfigError
from ..io import read_json, write_json
from .bucket_log import BucketLossAccumulator, BucketLossLog, EvalPrefixMixin, flat_log_metrics, \
    summarize_bucket_losses
from .bucket_sft_config import BucketSFTConfig
from .end_of_turn import EndOfTurnLabelsMixin
from .columns import ExtraColumnsMixin, pop_extra_columns
from .global_batch import GlobalBatchStatsMixin
from .options import require_config
from .padding_free import PaddingFreeTruncationMixin, check_packed_attention
from .sampler import BucketTemperatureSampler
from .sft_loss import bucket_loss_sums, bucket_means, bucket_normalized_loss, bucket_token_counts, \
    bucket_weights, dro_loss_weights, dro_update

BUCKET_COLUMN = "bucket_index"


class BucketSFTTrainer(EvalPrefixMixin, GlobalBatchStatsMixin, ExtraColumnsMixin, EndOfTurnLabelsMixin,
                       PaddingFreeTruncationMixin, SFTTrainer):
    """SFTTrainer with Bucket-Aware SFT, set by its `BucketSFTConfig` (`args`). Datasets need an int column
    `bucket_index` (index into `bucket_names`)."""

    extra_columns = (BUCKET_COLUMN,)
    args: BucketSFTConfig

    def __init__(self, *args: Any, bucket_names: Sequence[str], **kwargs: Any):
        self.bucket_names = list(bucket_names)
        self.num_buckets = len(self.bucket_names)
        if self.num_buckets == 0:
            raise ConfigError("bucket_names is empty")
        config = require_config(type(self), BucketSFTConfig, args, kwargs)
        _check_bucket_column(kwargs.get("train_dataset"), "train", self.num_buckets)
        eval_ds = kwargs.get("eval_dataset")
        for name, ds in (eval_ds.items() if isinstance(eval_ds, dict) else [("eval", eval_ds)]):
            if ds is not None:
                _check_bucket_column(ds, name, self.num_buckets)
        # TRL refuses padding_free + max_length without packing; the examples are truncated by TRL's rule instead
        fit_length = config.max_length if config.padding_free and not config.packing else None
        self._padding_free_max_length = fit_length
        if fit_length is not None:
            config.max_length = None
        try:
            super().__init__(*args, **kwargs)
        finally:
            if fit_length is not None:
                config.max_length = fit_length
        self._check_supported()
        if self.padding_free:
            self.packed_attention_gap = check_packed_attention(self.model)
        self._wrap_collator_for_extra_columns(per_token=self.padding_free)
        # Bucket-normalized: each micro-batch returns its share of the step loss (already scaled for GA).
        # Token mean: leave the decision to the Trainer exactly as for TRL's SFTTrainer.
        self.loss_is_scaled_for_ga = True if self.args.normalized_loss else None
        self._train_losses = BucketLossAccumulator(self.num_buckets)
        self._eval_losses = BucketLossAccumulator(self.num_buckets)
        self._step_losses = BucketLossAccumulator(self.num_buckets)  # last step's losses, for DRO
        self.dro_state = torch.full((self.num_buckets,), 1.0 / self.num_buckets)  # q of the EG update
        self.dro_reference = torch.full((self.num_buckets,), float("nan"))
        self.last_bucket_summaries: dict[str, dict[str, Any]] = {}  # split → latest per-bucket summary
        self.bucket_log = BucketLossLog(self.args.output_dir, enabled=self.is_world_process_zero())

    # ---- checks ---------------------------------------------------------------------------------------------
    def _check_supported(self) -> None:
        problems = []
        if self.args.packing:
            problems.append("packing (the sampler draws examples, so each keeps its own bucket; "
                            "use padding_free without packing)")
        if self.args.loss_type != "nll":
            problems.append(f"loss_type={self.args.loss_type!r}")
        if self.label_smoother is not None:
            problems.append("label_smoothing_factor")
        if self.compute_loss_func is not None:
            problems.append("compute_loss_func")
        if self.aux_loss_enabled:
            problems.append("MoE router aux loss")
        pc = getattr(self.accelerator, "parallelism_config", None)
        if pc is not None and (pc.tp_size > 1 or pc.cp_enabled or pc.sp_enabled):
            problems.append("tensor/context/sequence parallelism")
        if problems:
            raise ConfigError("BucketSFTTrainer does not support " + ", ".join(problems))

    # ---- sampler --------------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        temperature = self.args.sampler_temperature
        if temperature is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BucketTemperatureSampler(dataset[BUCKET_COLUMN], temperature, seed=seed)

    # ---- step statistics (GlobalBatchStatsMixin) ------------------------------------------------------------
    def step_statistics(self, batch_samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not self.args.normalized_loss:
            return {}
        device = batch_samples[0]["labels"].device if batch_samples else self.args.device
        tokens = torch.zeros(self.num_buckets, device=device)
        for batch in batch_samples:
            mask = batch["labels"][..., 1:] != -100  # next-token labels, as the fused LM head scores them
            tokens += bucket_token_counts(next_token_buckets(batch[BUCKET_COLUMN]).to(device), mask,
                                          self.num_buckets)
        stats = {"bucket_tokens": tokens}
        if self.args.dro_active:
            sums, counts = self._step_losses.take()
            stats["last_loss_sums"] = sums.to(device)
            stats["last_loss_tokens"] = counts.to(device)
        return stats

    def on_step_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        if self.args.dro_active and "last_loss_tokens" in stats:
            counts = stats["last_loss_tokens"].cpu()
            if counts.sum() > 0:
                means = bucket_means(stats["last_loss_sums"].cpu(), counts)
                present = counts > 0
                reference = None
                if self.args.dro_reference == "initial":
                    first = present & torch.isnan(self.dro_reference)
                    self.dro_reference[first] = means[first].float()
                    reference = self.dro_reference
                self.dro_state = dro_update(self.dro_state, means, present, eta=self.args.dro_eta,
                                            reference=reference)

    @property
    def dro_weights(self) -> torch.Tensor:
        """The DRO bucket weights the loss uses: (1 − ε)·q + ε/K."""
        return dro_loss_weights(self.dro_state, self.args.dro_epsilon)

    # ---- loss -----------------------------------------------------------------------------------------------
    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        mode = "train" if self.model.training else "eval"
        extra = pop_extra_columns(inputs, self.extra_columns)
        if BUCKET_COLUMN not in extra:
            raise ConfigError(f"the batch has no '{BUCKET_COLUMN}' column: it was lost before compute_loss")
        buckets = next_token_buckets(extra[BUCKET_COLUMN])
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        per_token_loss = -outputs.log_probs  # zero on ignored positions
        mask = outputs.label_mask

        if mode == "train" and self.args.normalized_loss:
            if not self.step_stats or "bucket_tokens" not in self.step_stats:
                raise RuntimeError("bucket-normalized loss needs the step statistics from get_batch_samples")
            global_tokens = self.step_stats["bucket_tokens"].to(per_token_loss.device)
            weights = bucket_weights(global_tokens, self.dro_weights if self.args.dro_active else None)
            loss = bucket_normalized_loss(per_token_loss, buckets, mask, global_tokens, weights)
            # DDP/FSDP/DeepSpeed average gradients over ranks; the global normalizer already spans all ranks.
            loss = loss * self.accelerator.num_processes
        else:  # TRL's own token mean (SFTTrainer.compute_loss)
            num_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        sums, counts = bucket_loss_sums(per_token_loss, buckets, mask, self.num_buckets)
        (self._train_losses if mode == "train" else self._eval_losses).add(sums, counts)
        if mode == "train" and self.args.dro_active:
            self._step_losses.add(sums, counts)
        self._record_trl_metrics(mode, inputs, outputs)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, outputs
        return loss

    def _record_trl_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any) -> None:
        """The metrics TRL's SFTTrainer logs (entropy, mean_token_accuracy, num_tokens), computed the same way."""
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        entropy_sum = gather(outputs.entropy.detach().sum()).sum()
        num_correct = gather(outputs.is_top1.sum()).sum()
        self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(
            (num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":  # padding-free: the packed row's length, as TRL counts it
            local = inputs["attention_mask"].sum() if "attention_mask" in inputs else \
                torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            self._total_train_tokens += gather(local).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    # ---- checkpoints: the DRO state travels with them --------------------------------------------------------
    DRO_STATE_FILE = "bucket_dro_state.json"

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.dro_active and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            pending_sums, pending_counts = (self._step_losses.sums, self._step_losses.counts)
            write_json(folder / self.DRO_STATE_FILE, {
                "buckets": self.bucket_names, "state": self.dro_state.tolist(),
                "reference": [None if math.isnan(x) else x for x in self.dro_reference.tolist()],
                "pending_sums": None if pending_sums is None else pending_sums.cpu().tolist(),
                "pending_counts": None if pending_counts is None else pending_counts.cpu().tolist()})

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.args.dro_active and isinstance(resume_from_checkpoint, str):
            path = Path(resume_from_checkpoint) / self.DRO_STATE_FILE
            if path.exists():
                state = read_json(path)
                if state["buckets"] != self.bucket_names:
                    raise ConfigError(f"{path}: the checkpoint's buckets differ from this run's")
                self.dro_state = torch.tensor(state["state"], dtype=torch.float32)
                self.dro_reference = torch.tensor([math.nan if x is None else x for x in state["reference"]])
                if state["pending_sums"] is not None:
                    self._step_losses.add(torch.tensor(state["pending_sums"]), torch.tensor(state["pending_counts"]))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ---- logging --------------------------------------------------------------------------------------------
    def bucket_loss_summary(self, mode: str) -> dict[str, Any]:
        """Per-bucket losses accumulated since the last call (summed over ranks), summarized; resets them."""
        sums, counts = (self._train_losses if mode == "train" else self._eval_losses).take()
        if self.accelerator.num_processes > 1:
            packed = self.accelerator.reduce(torch.stack([sums, counts]).to(self.args.device), reduction="sum")
            sums, counts = packed[0].cpu(), packed[1].cpu()
        return summarize_bucket_losses(sums, counts, self.bucket_names)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        summary = self.bucket_loss_summary(mode)
        if summary["buckets"]:
            split = "train" if mode == "train" else self._eval_prefix
            self.last_bucket_summaries[split] = summary
            prefix = "bucket" if mode == "train" else f"{self._eval_prefix}_bucket"
            logs.update(flat_log_metrics(summary, prefix=prefix))
            extra = {}
            if mode == "train" and self.args.dro_active:
                extra["dro_weights"] = dict(zip(self.bucket_names, (round(float(w), 6) for w in self.dro_weights)))
            self.bucket_log.write(step=self.state.global_step, epoch=self.state.epoch,
                                  split=split, summary=summary,
                                  extra=extra)
        super().log(logs, start_time)


def next_token_buckets(buckets: torch.Tensor) -> torch.Tensor:
    """The bucket of each scored position: a [batch] vector of example buckets as is; per-token buckets
    [batch, seq] (a padding-free row) shifted like the next-token labels, [batch, seq - 1]."""
    return buckets[..., 1:] if buckets.dim() == 2 else buckets


def _check_bucket_column(dataset: Any, name: str, num_buckets: int) -> None:
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None)
    if columns is not None and BUCKET_COLUMN not in columns:
        raise ConfigError(f"the {name} dataset has no '{BUCKET_COLUMN}' column (columns: {', '.join(columns)})")
    if columns is not None and len(dataset):
        values = dataset[BUCKET_COLUMN]
        low, high = min(values), max(values)
        if low < 0 or high >= num_buckets or not all(isinstance(v, int) for v in values[:1]):
            raise ConfigError(f"the {name} dataset's '{BUCKET_COLUMN}' values must be ints in [0, {num_buckets}), "
                              f"got range [{low}, {high}]")


__all__ = ["BucketSFTTrainer", "BUCKET_COLUMN"]
