"""Trainer mixins that make what is trained end at the chat template's end-of-turn token (see labels.py): the
SFT labels (`EndOfTurnLabelsMixin`, for SFTTrainer subclasses) and the DPO completions
(`EndOfTurnCompletionsMixin`, for DPOTrainer subclasses). Each runs after TRL's own dataset preparation."""

from __future__ import annotations

from typing import Any

from ..models.loading import template_end_of_turn_ids
from .labels import cut_after_end_of_turn, drop_labels_after_end_of_turn

DESCRIPTION = "Dropping template text after the end of turn"


def _end_of_turn(processing_class: Any) -> list[int]:
    return template_end_of_turn_ids(getattr(processing_class, "tokenizer", processing_class))


class EndOfTurnLabelsMixin:
    """SFT: labels after the completion's end-of-turn token are ignored."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, *args: Any, **kwargs: Any) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, *args, **kwargs)
        eot = _end_of_turn(processing_class)
        if not eot or "labels" not in (dataset.column_names or []):
            return dataset
        return dataset.map(lambda ex: {"labels": drop_labels_after_end_of_turn(ex["labels"], eot)}, desc=DESCRIPTION)


class EndOfTurnCompletionsMixin:
    """DPO: chosen and rejected ids end at their end-of-turn token."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, *args: Any, **kwargs: Any) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, *args, **kwargs)
        eot = _end_of_turn(processing_class)
        if not eot or "chosen_ids" not in (dataset.column_names or []):
            return dataset
        return dataset.map(lambda ex: {k: cut_after_end_of_turn(ex[k], eot) for k in ("chosen_ids", "rejected_ids")},
                           desc=DESCRIPTION)
