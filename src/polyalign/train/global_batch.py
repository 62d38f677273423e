"""Statistics of a whole optimizer step, computed before its first forward pass.

transformers' Trainer fetches all gradient-accumulation micro-batches of an optimizer step at once
(`get_batch_samples`) before running any of them. `GlobalBatchStatsMixin` hooks there: a subclass returns additive
statistics of its micro-batches (`step_statistics`, e.g. loss tokens per bucket, or summed pair weights); the mixin
sums them over every rank with ONE all-reduce and stores the result in `self.step_stats`, so that `compute_loss`
can normalize each micro-batch by a global constant. Used by Bucket-Aware SFT (tokens per bucket) and reusable by
the DPO/HDPO trainer (its pair-weight normalizer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def pack_statistics(stats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[str, torch.Size, torch.dtype]]]:
    """Flatten a dict of tensors into one float64 vector (keys in sorted order) plus what is needed to unpack it."""
    layout = [(key, stats[key].shape, stats[key].dtype) for key in sorted(stats)]
    if not layout:
        return torch.zeros(0, dtype=torch.float64), layout
    flat = torch.cat([stats[key].detach().reshape(-1).to(torch.float64) for key, _, _ in layout])
    return flat, layout


def unpack_statistics(flat: torch.Tensor, layout: list[tuple[str, torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """Inverse of `pack_statistics` (values stay float64 for exact counts)."""
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for key, shape, _ in layout:
        n = int(torch.Size(shape).numel())
        out[key] = flat[offset:offset + n].reshape(shape)
        offset += n
    return out


def all_reduce_statistics(stats: dict[str, torch.Tensor], accelerator: Any, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Sum each tensor of `stats` over all processes with a single collective (identity on one process).
    Every rank must pass the same keys and shapes."""
    flat, layout = pack_statistics(stats)
    if flat.numel() == 0:
        return {}
    flat = flat.to(device)
    if accelerator is not None and accelerator.num_processes > 1:
        flat = accelerator.reduce(flat, reduction="sum")
    return unpack_statistics(flat, layout)


class GlobalBatchStatsMixin:
    """Trainer mixin: `self.step_stats` holds, during each optimizer step, the sum over all its micro-batches and
    all ranks of `step_statistics(micro_batches)`. Override `step_statistics` (and optionally
    `on_step_statistics`, called with the global values once per step on every rank)."""

    step_stats: dict[str, torch.Tensor] | None = None

    def step_statistics(self, batch_samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Additive statistics of this rank's micro-batches of the coming optimizer step (fixed keys/shapes)."""
        return {}

    def on_step_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        """Hook: the global statistics of the coming optimizer step are known."""

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int,
                          device: torch.device) -> tuple[list, torch.Tensor | int | None]:
        batch_samples, num_items_in_batch = super().get_batch_samples(  # type: ignore[misc]
            epoch_iterator, num_batches, device)
        local = self.step_statistics(batch_samples)
        self.step_stats = all_reduce_statistics(local, getattr(self, "accelerator", None), device)
        self.on_step_statistics(self.step_stats)
        return batch_samples, num_items_in_batch
