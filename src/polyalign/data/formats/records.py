"""PolyAlign's own Record JSONL (`polyalign`: records/{split}.jsonl of a build), read back as a source; track,
length and buckets are recomputed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Format, RawConversation, Row, bad, row_converter
from .fields import Fields, alternatives, assistant_turn, text_or_empty, turn_list, user_turn

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


POLYALIGN_FIELDS = ("id", "conversation_id", "source", "language", "prompt", "response", "history", "context",
                    "alternatives", "track", "family", "length", "length_bin", "bucket_id", "split", "turn_index",
                    "license", "meta")


def parse_polyalign(row: Row, source: SourceConfig) -> RawConversation:
    """PolyAlign Record rows (records/{split}.jsonl of a build); track, length and buckets are recomputed."""
    f = Fields(row, source.columns)
    if not isinstance(row.data, dict):
        raise bad("wrong type", "expected a JSON object", file=row.file, line=row.line)
    unknown = sorted(set(row.data) - set(POLYALIGN_FIELDS) - set(source.columns.values()))
    if unknown and not source.columns:
        raise bad("unknown field", f"unknown field(s) {unknown}", file=row.file, line=row.line, field=unknown[0])
    record_id = f.text("id")
    history = turn_list(f, "history", "role", "content") if f.get("history", None) is not None else []
    turns = [*history, user_turn(f, "prompt"), assistant_turn(f, "response", source)]
    turn_index = f.get("turn_index", None)
    if turn_index is not None and (isinstance(turn_index, bool) or not isinstance(turn_index, int)):
        raise f.wrong_type("turn_index", "an integer", turn_index)
    meta = f.meta(source)
    origin = f.text("source", "")
    if origin and origin != source.name:
        meta.setdefault("origin_source", origin)
    return RawConversation(f.text("conversation_id", None) or record_id, turns, row.file, row.line,
                           context=text_or_empty(f, "context"), context_field=f.name("context"),
                           alternatives=alternatives(f, "alternatives"), alternatives_field=f.name("alternatives"),
                           language=f.text("language", None) or None, family=f.text("family", None) or None,
                           license=f.text("license", None) or None, meta=meta, respond="last",
                           record_id=record_id, turn_index=turn_index)


POLYALIGN = Format("polyalign", POLYALIGN_FIELDS, row_converter(parse_polyalign), "PolyAlign Record JSONL")
