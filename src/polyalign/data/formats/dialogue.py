"""Dialogue formats without speaker fields: parallel prompt/response lists (`turns`, CoQA-like) and one list of
alternating utterances, the user first (`utterances`, DailyDialog/MultiWOZ-like)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ASSISTANT, USER, Format, RawConversation, Row, Turn, row_converter
from .fields import Fields, text_or_empty

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


def parse_turns(row: Row, source: SourceConfig) -> RawConversation:
    """`turns` rows: parallel lists {prompts, responses} (CoQA-like), plus context."""
    f = Fields(row, source.columns)
    prompts, responses = f.get("prompts"), f.get("responses")
    for target, value in (("prompts", prompts), ("responses", responses)):
        if not isinstance(value, list):
            raise f.wrong_type(target, "a list", value)
    if len(prompts) != len(responses):
        raise f.error("length mismatch", f"{len(prompts)} prompts but {len(responses)} responses", "responses")
    turns = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        turns.append(Turn(USER, p, f"{f.name('prompts')}[{i}]", f"{f.name('prompts')}[{i}]"))
        turns.append(Turn(ASSISTANT, r, f"{f.name('responses')}[{i}]", f"{f.name('responses')}[{i}]"))
    return RawConversation(f.conversation_id(source), turns, row.file, row.line,
                           context=text_or_empty(f, "context"), context_field=f.name("context"),
                           system=text_or_empty(f, "system"), language=f.language(), meta=f.meta(source))


def parse_utterances(row: Row, source: SourceConfig) -> RawConversation:
    """`utterances` rows: one list of utterances alternating speakers, the first speaker being the user."""
    f = Fields(row, source.columns)
    raw = f.get("utterances")
    if not isinstance(raw, list):
        raise f.wrong_type("utterances", "a list of strings", raw)
    turns = [Turn((USER, ASSISTANT)[i % 2], u, f"{f.name('utterances')}[{i}]", f"{f.name('utterances')}[{i}]")
             for i, u in enumerate(raw)]
    return RawConversation(f.conversation_id(source), turns, row.file, row.line,
                           context=text_or_empty(f, "context"), context_field=f.name("context"),
                           system=text_or_empty(f, "system"), language=f.language(), meta=f.meta(source))


TURNS = Format("turns", ("id", "prompts", "responses", "context", "system", "lang", "meta"),
               row_converter(parse_turns), "{id, prompts: [...], responses: [...], context}")
UTTERANCES = Format("utterances", ("id", "utterances", "context", "system", "lang", "meta"),
                    row_converter(parse_utterances), "{id, utterances: [...]} (first speaker = user)")
