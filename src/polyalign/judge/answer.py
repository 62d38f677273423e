"""Judge answers: the JSON object out of an answer's text, validated against the schema the rubric implies."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .rubric import Rubric


class AnswerError(ValueError):
    """An answer that is not a JSON object of the asked shape (the message says what is wrong, briefly)."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def extract_json(text: str) -> Any:
    """The JSON value of an answer: the whole text, or inside a ``` fence; nothing is guessed from prose."""
    text = text.strip()
    match = _FENCE.match(text)
    if match:
        text = match.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"not JSON: {exc.msg} at character {exc.pos}") from None


@lru_cache(maxsize=16)
def _pointwise_schema(dimensions: tuple[str, ...], flags: tuple[str, ...], low: int, high: int) -> type[BaseModel]:
    strict = ConfigDict(extra="forbid")
    scores = create_model("Scores", __config__=strict,
                          **{d: (int, Field(..., ge=low, le=high, strict=True)) for d in dimensions})
    flag_model = create_model("Flags", __config__=strict, **{f: (bool, Field(..., strict=True)) for f in flags})
    return create_model("PointwiseAnswer", __config__=strict, scores=(scores, ...), flags=(flag_model, ...))


class PairwiseAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    winner: Literal["1", "2", "tie"]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "<root>"
    return f"{where}: {err['msg']}" + (f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")


def parse_pointwise(text: str, rubric: Rubric, dimensions: list[str]) -> tuple[dict[str, int], dict[str, bool]]:
    """(scores, flags) of a pointwise answer; AnswerError when it is not of the asked shape."""
    schema = _pointwise_schema(tuple(dimensions), tuple(rubric.caps), rubric.scale.min, rubric.scale.max)
    try:
        answer = schema.model_validate(extract_json(text))
    except ValidationError as exc:
        raise AnswerError(_first_error(exc)) from None
    return answer.scores.model_dump(), answer.flags.model_dump()


def parse_pairwise(text: str) -> str:
    """'1', '2' or 'tie'; AnswerError when the answer is not of the asked shape."""
    value = extract_json(text)
    try:
        return PairwiseAnswer.model_validate(value).winner
    except ValidationError as exc:
        raise AnswerError(_first_error(exc)) from None
