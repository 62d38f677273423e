"""Per-bucket loss bookkeeping: accumulate token-loss sums per bucket, summarize them (mean per bucket, macro
mean, spread, worst bucket) and append them to `bucket_losses.jsonl`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io import append_jsonl


class EvalPrefixMixin:
    """Remembers the metric prefix of the evaluation in progress (`eval`, or e.g. `test` for a final evaluation on
    another split), so that per-bucket metrics are logged under the same prefix as the trainer's own."""

    _eval_prefix = "eval"

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        self._eval_prefix = metric_key_prefix
        try:
            return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys,  # type: ignore[misc]
                                    metric_key_prefix=metric_key_prefix)
        finally:
            self._eval_prefix = "eval"


class BucketLossAccumulator:
    """Running Σℓ and token counts per bucket (float64, on the device of the first update)."""

    def __init__(self, num_buckets: int):
        self.num_buckets = num_buckets
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def add(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Add one batch's per-bucket loss sums and token counts."""
        sums, counts = sums.detach().double(), counts.detach().double()
        if self.sums is None:
            self.sums, self.counts = sums.clone(), counts.clone()
        else:
            self.sums += sums.to(self.sums.device)
            self.counts += counts.to(self.counts.device)

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sums, counts) and reset (zeros when nothing was added)."""
        if self.sums is None:
            zeros = torch.zeros(self.num_buckets, dtype=torch.float64)
            return zeros, zeros.clone()
        out = (self.sums, self.counts)
        self.sums = self.counts = None
        return out

    def empty(self) -> bool:
        return self.sums is None


def summarize_bucket_losses(sums: Sequence[float] | torch.Tensor, counts: Sequence[float] | torch.Tensor,
                            names: Sequence[str]) -> dict[str, Any]:
    """Mean token loss per bucket with tokens, plus the macro mean over buckets seen, the spread (max − min),
    the worst bucket and the token-weighted mean."""
    sums_list = [float(x) for x in (sums.tolist() if isinstance(sums, torch.Tensor) else sums)]
    counts_list = [float(x) for x in (counts.tolist() if isinstance(counts, torch.Tensor) else counts)]
    buckets = {name: {"loss": s / c, "tokens": int(c)} for name, s, c in zip(names, sums_list, counts_list) if c > 0}
    if not buckets:
        return {"buckets": {}, "macro": math.nan, "spread": math.nan, "worst_bucket": None, "token_mean": math.nan}
    losses = {name: v["loss"] for name, v in buckets.items()}
    worst = max(losses, key=losses.get)
    return {"buckets": buckets, "macro": sum(losses.values()) / len(losses),
            "spread": max(losses.values()) - min(losses.values()), "worst_bucket": worst,
            "worst_loss": losses[worst], "token_mean": sum(sums_list) / sum(counts_list)}


def flat_log_metrics(summary: dict[str, Any], prefix: str = "bucket") -> dict[str, float]:
    """Scalar metrics for the trainer's log (tensorboard/wandb): one per bucket plus macro, spread, worst."""
    out = {f"{prefix}_loss/{name}": v["loss"] for name, v in summary["buckets"].items()}
    if summary["buckets"]:
        out[f"{prefix}_loss_macro"] = summary["macro"]
        out[f"{prefix}_loss_spread"] = summary["spread"]
        out[f"{prefix}_loss_worst"] = summary["worst_loss"]
    return out


class BucketLossLog:
    """Appends one JSON row per logging event to `<output_dir>/bucket_losses.jsonl` (main process only)."""

    FILENAME = "bucket_losses.jsonl"

    def __init__(self, output_dir: str | Path, enabled: bool = True):
        self.path = Path(output_dir) / self.FILENAME
        self.enabled = enabled

    def write(self, *, step: int, epoch: float | None, split: str, summary: dict[str, Any],
              extra: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch, "split": split, **summary, **(extra or {})}
        append_jsonl(self.path, [row])
