"""Normalize and validate raw conversations into Records.

For each conversation: system turns are already out of the history (adapters keep them in meta); every text is
whitespace-normalized (polyalign.text.normalize_text); a trailing unanswered user turn is dropped; roles must
alternate user/assistant starting with user; no turn may be empty; the language is the source's, or (auto) the
item's own en/zh field, else detected once from all the conversation's text; the family is the source's, the
item's own (PolyAlign records), or the rule-based classifier's; the track is single without history, multi
with it; length and length bin follow the bilingual length rule. Errors are InputErrors naming file, line and
the source field.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..text import count_length_tokens, detect_language, length_bin, normalize_text
from .formats import ASSISTANT, USER, RawConversation, Skip, Turn, bad
from .families import classify_family
from .schema import LANGUAGES, Record
from .splits import SPLIT_GROUP
from .sources import SourceConfig


def language_code(value: str | None) -> str | None:
    """'zh-CN' -> 'zh', 'EN' -> 'en'; None stays None."""
    if not value:
        return None
    return value.strip().lower().replace("_", "-").split("-")[0] or None


def _check_turns(conv: RawConversation) -> list[Turn]:
    """Types, alternation and non-empty text; returns the turns with normalized content (trailing user turn
    dropped)."""
    turns = conv.turns
    for turn in turns:
        if not isinstance(turn.content, str):
            raise bad("wrong type", f"must be a string, got {type(turn.content).__name__}", file=conv.file,
                      line=conv.line, field=turn.content_field)
    for i, turn in enumerate(turns):
        expected = (USER, ASSISTANT)[i % 2]
        if turn.role != expected:
            raise bad("roles not alternating", f"roles must alternate user/assistant starting with user: turn {i} "
                      f"is {turn.role!r}, expected {expected!r}", file=conv.file, line=conv.line,
                      field=turn.role_field)
    normalized = [Turn(t.role, normalize_text(t.content), t.role_field, t.content_field) for t in turns]
    if normalized and normalized[-1].role == USER:
        normalized = normalized[:-1]  # an unanswered last user turn yields no record
    if not normalized:
        raise bad("no response", "no assistant turn to use as a response", file=conv.file, line=conv.line,
                  field=turns[0].content_field if turns else None)
    for turn in normalized:
        if not turn.content:
            what = "empty response" if turn.role == ASSISTANT else "empty prompt"
            raise bad(what, f"{what} (the text is blank after whitespace normalization)", file=conv.file,
                      line=conv.line, field=turn.content_field)
    return normalized


def conversation_language(conv: RawConversation, source: SourceConfig, texts: Sequence[str]) -> str:
    """The source's language, else the item's own en/zh field, else detected from all the text."""
    if source.language != "auto":
        return source.language
    own = language_code(conv.language)
    if own is not None:
        if own not in LANGUAGES:
            raise Skip(f"language {conv.language!r} is not en or zh")
        return own
    detected = detect_language("\n".join(texts))
    if detected is None:
        raise bad("undetectable language", "cannot detect the language (no letters or CJK characters); declare "
                  "`language:` for this source", file=conv.file, line=conv.line,
                  field=conv.turns[-1].content_field if conv.turns else None)
    return detected


def normalize_conversation(conv: RawConversation, source: SourceConfig, *, length_edges: Sequence[int],
                           length_labels: Sequence[str]) -> list[Record]:
    """The Records of one raw conversation (one per assistant turn, or only the last one for formats whose rows
    are single examples), validated; raises InputError (or Skip for a deliberately dropped item)."""
    turns = _check_turns(conv)
    if not isinstance(conv.context, str):
        raise bad("wrong type", f"must be a string, got {type(conv.context).__name__}", file=conv.file,
                  line=conv.line, field=conv.context_field)
    context = normalize_text(conv.context)
    texts = [t.content for t in turns]
    language = conversation_language(conv, source, [context, *texts])
    if source.family != "auto":
        family = source.family
    elif conv.family:
        family = conv.family
    else:
        family = classify_family([t.content for t in turns if t.role == USER],
                                 [t.content for t in turns if t.role == ASSISTANT], context)
    meta = dict(conv.meta)
    if conv.system.strip():
        meta["system"] = normalize_text(conv.system)
    if conv.split_group is not None:
        meta[SPLIT_GROUP] = conv.split_group
    license_ = source.license or conv.license or ""
    messages = [{"role": t.role, "content": t.content} for t in turns]
    last = len(turns) - 1
    positions = range(1, len(turns), 2) if conv.respond == "all" else [last]
    records = []
    for pos in positions:
        turn_index = pos // 2
        if conv.respond == "last" and conv.turn_index is not None:
            turn_index = conv.turn_index
        response = turns[pos].content
        alternatives = _alternatives(conv, response) if pos == last else []
        length = count_length_tokens(response)
        record_id = conv.record_id if conv.respond == "last" and conv.record_id else \
            f"{conv.conversation_id}#{turn_index}"
        record = Record(id=record_id, conversation_id=conv.conversation_id, source=source.name, language=language,
                        prompt=turns[pos - 1].content, response=response, history=messages[:pos - 1],
                        context=context, alternatives=alternatives, track="multi" if pos > 1 else "single",
                        family=family, length=length, length_bin=length_bin(length, length_edges, length_labels),
                        turn_index=turn_index, license=license_, meta=meta)
        try:
            record.validate(file=conv.file, line=conv.line)
        except InputError as exc:  # an invariant broken by an adapter: report it as the source line
            raise bad("invalid record", exc.message, file=conv.file, line=conv.line, field=exc.field) from None
        records.append(record)
    return records


def _alternatives(conv: RawConversation, response: str) -> list[dict]:
    """Human-ranked replies other than the response itself (rank > 0, or a different text), normalized."""
    out = []
    for alt in conv.alternatives:
        content = normalize_text(alt["content"])
        rank = alt.get("rank")
        if not content or content == response or rank == 0:
            continue
        out.append({"content": content, "rank": rank})
    return out
