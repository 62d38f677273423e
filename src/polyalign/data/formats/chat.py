"""Chat formats: a list of {role, content} messages (`messages`, the bundled data's format) and ShareGPT's
{from, value} conversations (`sharegpt`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Format, RawConversation, Row, row_converter
from .fields import Fields, alternatives, split_system, text_or_empty, turn_list

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


def parse_messages(row: Row, source: SourceConfig) -> RawConversation:
    """`messages` rows: {id, lang, messages, ranked_alternatives, meta, context, license}."""
    f = Fields(row, source.columns)
    turns, system = split_system(turn_list(f, "messages", "role", "content"))
    meta = f.meta(source)
    return RawConversation(f.conversation_id(source), turns, row.file, row.line, context=text_or_empty(f, "context"),
                           context_field=f.name("context"), alternatives=alternatives(f, "ranked_alternatives"),
                           alternatives_field=f.name("ranked_alternatives"),
                           system=system or text_or_empty(f, "system"), language=f.language(),
                           license=f.text("license", None), meta=meta)


def parse_sharegpt(row: Row, source: SourceConfig) -> RawConversation:
    """ShareGPT rows: {id, conversations: [{from, value}], system}."""
    f = Fields(row, source.columns)
    raw = f.get("conversations")
    keys = ("from", "value")
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "from" not in raw[0] and "role" in raw[0]:
        keys = ("role", "content")
    turns, system = split_system(turn_list(f, "conversations", *keys))
    return RawConversation(f.conversation_id(source), turns, row.file, row.line,
                           system=system or text_or_empty(f, "system"), language=f.language(),
                           meta=f.meta(source))



MESSAGES = Format("messages", ("id", "messages", "lang", "ranked_alternatives", "meta", "context", "license",
                               "system"), row_converter(parse_messages),
                  "{id, lang, messages: [{role, content}], ranked_alternatives, meta}")
SHAREGPT = Format("sharegpt", ("id", "conversations", "system", "lang", "meta"), row_converter(parse_sharegpt),
                  "{id, conversations: [{from, value}], system}")
