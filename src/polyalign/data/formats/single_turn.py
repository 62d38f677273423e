"""One-turn formats from named fields: Alpaca rows (`alpaca`: instruction, input, output) and `fields` (prompt,
response, context), each with an optional [[user, assistant], ...] history; one record per row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Format, RawConversation, Row, row_converter
from .fields import Fields, assistant_turn, history_pairs, text_or_empty, user_turn

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


def _one_turn(row: Row, source: SourceConfig, prompt: str, response: str, context: str) -> RawConversation:
    """One record from named prompt/response/context fields, after an optional [[user, assistant], ...] history."""
    f = Fields(row, source.columns)
    history = history_pairs(f, "history")
    turns = [*history, user_turn(f, prompt), assistant_turn(f, response, source)]
    cid = f.conversation_id(source)
    return RawConversation(cid, turns, row.file, row.line, context=text_or_empty(f, context),
                           context_field=f.name(context), system=text_or_empty(f, "system"),
                           language=f.language(), meta=f.meta(source), respond="last",
                           record_id=f"{cid}#{len(history) // 2}")


def parse_alpaca(row: Row, source: SourceConfig) -> RawConversation:
    """Alpaca rows: {instruction, input, output, history, system}; one record (the output) per row."""
    return _one_turn(row, source, prompt="instruction", response="output", context="input")


def parse_fields(row: Row, source: SourceConfig) -> RawConversation:
    """`fields` rows: one turn from named fields {id, prompt, response, context, history, system}."""
    return _one_turn(row, source, prompt="prompt", response="response", context="context")


ALPACA = Format("alpaca", ("id", "instruction", "input", "output", "history", "system", "lang", "meta"),
                row_converter(parse_alpaca), "{instruction, input, output, history: [[user, assistant]]}")
FIELDS = Format("fields", ("id", "prompt", "response", "context", "history", "system", "lang", "meta"),
                row_converter(parse_fields), "{id, prompt, response, context, history}")
