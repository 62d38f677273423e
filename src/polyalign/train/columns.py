"""Carry extra per-example columns (e.g. `bucket_index`, pair weights) through a TRL trainer into `compute_loss`.

TRL drops unknown columns twice: `Trainer._remove_unused_columns` keeps only the signature columns, and TRL's
collators ignore keys they do not know. `ExtraColumnsMixin` adds the names to the signature columns and wraps the
trainer's collator with `ExtraColumnsCollator`, which stacks them into tensors next to the model inputs.
`pop_extra_columns` takes them out again before the model forward (a model silently accepts unknown kwargs).
Under padding-free batching (all examples of a batch concatenated into one row) a column is per token instead:
`per_token=True` repeats each example's value over its tokens, giving a [1, seq] tensor aligned with `input_ids`.
Used by the SFT trainer and reusable by the DPO/HDPO trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def stack_column(values: Sequence[Any], name: str) -> torch.Tensor:
    """A tensor from one column's values: int64 for ints/bools, float32 for floats, stacked for tensors/lists."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack([torch.as_tensor(v) for v in values])
    if isinstance(first, bool) or isinstance(first, int):
        return torch.tensor(values, dtype=torch.long)
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)
    if isinstance(first, (list, tuple)):
        return torch.tensor(values)
    raise TypeError(f"extra column '{name}' has values of type {type(first).__name__}; use numbers")


def per_token_column(values: Sequence[Any], lengths: Sequence[int], width: int, name: str) -> torch.Tensor:
    """A [1, width] tensor holding each example's value over its `lengths` tokens, in order (a padding-free row);
    positions past the examples (padding to a multiple) hold 0."""
    if sum(lengths) > width:
        raise ValueError(f"extra column '{name}': {sum(lengths)} tokens do not fit the packed row of {width}")
    per_example = stack_column(values, name)
    if per_example.dim() != 1:
        raise TypeError(f"extra column '{name}' must hold one number per example to be spread over its tokens")
    row = torch.repeat_interleave(per_example, torch.as_tensor(list(lengths)))
    return torch.cat([row, row.new_zeros(width - row.numel())])[None]


class ExtraColumnsCollator:
    """Wrap a collator: collate as usual, then add each extra column as a [batch] tensor, or with `per_token` (a
    padding-free collator, one row per batch) as a [1, seq] tensor aligned with `input_ids`."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]], columns: Sequence[str],
                 per_token: bool = False):
        self.collator = collator
        self.columns = tuple(columns)
        self.per_token = per_token

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        for name in self.columns:
            if name not in examples[0]:
                raise KeyError(f"extra column '{name}' is missing from the batch (did the dataset lose it, e.g. "
                               f"through packing?)")
            values = [ex[name] for ex in examples]
            if self.per_token:
                lengths = [len(ex["input_ids"]) for ex in examples]
                batch[name] = per_token_column(values, lengths, batch["input_ids"].shape[-1], name)
            else:
                batch[name] = stack_column(values, name)
        return batch

    def __getattr__(self, name: str) -> Any:  # expose the wrapped collator's attributes (pad_token_id, ...)
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


def pop_extra_columns(inputs: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """Remove the extra columns from `inputs` (in place) and return them."""
    return {name: inputs.pop(name) for name in columns if name in inputs}


class ExtraColumnsMixin:
    """Trainer mixin: keep `extra_columns` through column removal and the collator.

    Call `self._wrap_collator_for_extra_columns()` right after `super().__init__()`."""

    extra_columns: tuple[str, ...] = ()

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # type: ignore[misc]
        for name in self.extra_columns:
            if name not in self._signature_columns:  # type: ignore[attr-defined]
                self._signature_columns.append(name)  # type: ignore[attr-defined]

    def _wrap_collator_for_extra_columns(self, per_token: bool = False) -> None:
        if self.extra_columns and not isinstance(self.data_collator, ExtraColumnsCollator):  # type: ignore
            self.data_collator = ExtraColumnsCollator(self.data_collator, self.extra_columns,  # type: ignore
                                                      per_token=per_token)
