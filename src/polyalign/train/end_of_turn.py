"""Trainer mixins that make what is trained end at the chat template's end-of-turn token (see labels.py): the
SFT labels (`EndOfTurnLabelsMixin`, for SFTTrainer subclasses) and the DPO completions
(`EndOfTurnCompletionsMixin`, for DPOTrainer subclasses). Each runs after TRL's own dataset preparation."""

from __future__ import annotations

from typing import Any

from ..models.loading import template_end_of_turn_ids
from .labels import COMPLETION_CUT, cut_after_end_of_turn, drop_labels_after_end_of_turn, drop_last_end_of_turn_label

DESCRIPTION = "Dropping template text after the end of turn"


def _end_of_turn(processing_class: Any) -> list[int]:
    return template_end_of_turn_ids(getattr(processing_class, "tokenizer", processing_class))


def sft_labels(example: dict[str, Any], eot: list[int]) -> list[int]:
    """An SFT example's labels ending at its end-of-turn token, without it when the completion was cut."""
    labels = drop_labels_after_end_of_turn(example["labels"], eot)
    return drop_last_end_of_turn_label(labels, eot) if example.get(COMPLETION_CUT) else labels


class EndOfTurnLabelsMixin:
    """SFT: labels after the completion's end-of-turn token are ignored, and so is the end-of-turn token of a
    completion that was cut to fit (column `completion_cut`)."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, *args: Any, **kwargs: Any) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, *args, **kwargs)
        eot = _end_of_turn(processing_class)
        if not eot or "labels" not in (dataset.column_names or []):
            return dataset
        return dataset.map(lambda ex: {"labels": sft_labels(ex, eot)}, desc=DESCRIPTION)


class EndOfTurnCompletionsMixin:
    """DPO: chosen and rejected ids end at their end-of-turn token."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, *args: Any, **kwargs: Any) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, *args, **kwargs)
        eot = _end_of_turn(processing_class)
        if not eot or "chosen_ids" not in (dataset.column_names or []):
            return dataset
        return dataset.map(lambda ex: {k: cut_after_end_of_turn(ex[k], eot) for k in ("chosen_ids", "rejected_ids")},
                           desc=DESCRIPTION)
