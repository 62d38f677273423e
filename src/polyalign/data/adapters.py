"""Format adapters: read a source (JSONL / JSON files or a Hugging Face dataset) and yield raw conversations,
each with its (file, line) provenance, so that validation errors can name file, line and field.

Formats (see docs/data.md for an example of each):
  messages    {id, lang, messages: [{role, content}], ranked_alternatives, meta, context}  (../shared/data)
  sharegpt    {id, conversations: [{from, value}], system}
  alpaca      {instruction, input, output, history: [[user, assistant], ...], system}  (one record per row)
  oasst       OASST message rows {message_id, parent_id, role, text, rank, lang, message_tree_id} or tree
              exports {message_tree_id, prompt: {..., replies: [...]}}; threads are rebuilt from the tree
  polyalign   our own Record JSONL (records/{split}.jsonl of a build)
  fields      one turn from named fields {id, prompt, response, context, history, system}
  turns       parallel lists {id, prompts: [...], responses: [...], context}  (CoQA-like)
  utterances  one alternating list {id, utterances: [...]}, first speaker = user  (DailyDialog/MultiWOZ-like)
  hf          a Hugging Face dataset (hub id or local folder); its rows are parsed as `hf.shape`

A source's `columns` maps a field the format expects to the row's column path (dotted, list indices as
numbers, e.g. ``answers.text.0``), so any of the formats can read differently named columns.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..io import iter_jsonl

if TYPE_CHECKING:  # pragma: no cover
    from .sources import SourceConfig

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"
#: Speaker names accepted in `role` / `from` fields, mapped to PolyAlign roles.
ROLE_ALIASES = {"user": USER, "human": USER, "prompter": USER,
                "assistant": ASSISTANT, "gpt": ASSISTANT, "chatgpt": ASSISTANT, "model": ASSISTANT,
                "bot": ASSISTANT, "system": SYSTEM}
_MISSING = object()


@dataclass
class Turn:
    """One message of a conversation, with the source fields it came from (for error messages)."""

    role: str
    content: Any
    role_field: str
    content_field: str


@dataclass
class RawConversation:
    """A conversation as read from a source, before normalization and validation."""

    conversation_id: str
    turns: list[Turn]
    file: str
    line: int | None
    context: Any = ""
    context_field: str = "context"
    alternatives: list[dict[str, Any]] = field(default_factory=list)  # replies to the last user turn
    alternatives_field: str = "ranked_alternatives"
    system: str = ""
    language: str | None = None  # the item's own language field, if any
    family: str | None = None  # the item's own family (polyalign records)
    license: str | None = None  # the item's own license field
    meta: dict[str, Any] = field(default_factory=dict)
    respond: str = "all"  # "all": a record per assistant turn; "last": only for the final turn
    record_id: str | None = None  # id of the single record when respond == "last"
    turn_index: int | None = None  # kept from polyalign records
    split_group: str | None = None  # conversations with the same group share a split (source `group_by`)


@dataclass
class Filtered:
    """An item deliberately dropped (not an error): counted in the report under `filtered`."""

    reason: str
    file: str
    line: int | None


@dataclass
class Row:
    """One input row with its provenance (line in a file, or 1-based row index of a dataset)."""

    file: str
    line: int | None
    data: Any


class Skip(Exception):
    """Raised by a parser to drop an item on purpose (see Filtered)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Item = RawConversation | InputError | Filtered


def bad(reason: str, message: str, *, file: str | None, line: int | None, field: str | None = None) -> InputError:
    """An InputError tagged with a short `reason` (the key under which skip mode counts it)."""
    err = InputError(message, file=file, line=line, field=field)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def error_reason(exc: InputError) -> str:
    """The short reason of an InputError, for counting in the report."""
    reason = getattr(exc, "reason", None)
    if reason:
        return reason
    msg = exc.message
    for prefix, name in (("invalid UTF-8", "invalid UTF-8"), ("malformed JSON", "malformed JSON"),
                         ("missing", "missing field"), ("must be a", "wrong type"),
                         ("roles must alternate", "roles not alternating"), ("empty response", "empty response"),
                         ("empty prompt", "empty prompt")):
        if msg.startswith(prefix):
            return name
    return msg.split(" (")[0][:60]


# ----------------------------------------------------------------------------------------------- column paths

def get_path(row: Any, path: str, default: Any = _MISSING) -> Any:
    """Value at a dotted column path; numeric parts index lists (``answers.text.0``). Raises KeyError when
    absent unless a default is given."""
    node = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and _is_index(part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            if default is _MISSING:
                raise KeyError(path)
            return default
    return node


def _is_index(part: str) -> bool:
    return part.lstrip("-").isdigit()


def set_path(row: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `row` with the dotted dict path set to `value` (copies only the dicts along the path)."""
    head, _, rest = path.partition(".")
    out = dict(row)
    out[head] = set_path(out.get(head) or {}, rest, value) if rest else value
    return out


class Fields:
    """Reads a format's fields from a row through the source's column mapping, with located errors."""

    def __init__(self, row: Row, columns: dict[str, str]):
        self.row, self.columns = row, columns

    def name(self, target: str) -> str:
        """The column path that feeds `target` (for messages)."""
        return self.columns.get(target, target)

    def get(self, target: str, default: Any = _MISSING) -> Any:
        """The value for `target`; a missing required field is an InputError naming the column."""
        try:
            return get_path(self.row.data, self.name(target))
        except KeyError:
            if default is not _MISSING:
                return default
            raise bad("missing field", "missing required field", file=self.row.file, line=self.row.line,
                      field=self.name(target)) from None

    def text(self, target: str, default: Any = _MISSING) -> Any:
        """A string field; None counts as missing."""
        value = self.get(target, default)
        if value is None and default is not _MISSING:
            return default
        if value is None:
            raise bad("missing field", "missing required field (null)", file=self.row.file, line=self.row.line,
                      field=self.name(target))
        if not isinstance(value, str):
            raise self.wrong_type(target, "a string", value)
        return value

    def wrong_type(self, target: str, expected: str, value: Any, suffix: str = "") -> InputError:
        """An InputError for a value of the wrong type."""
        return bad("wrong type", f"must be {expected}, got {type(value).__name__}", file=self.row.file,
                   line=self.row.line, field=self.name(target) + suffix)

    def error(self, reason: str, message: str, target: str, suffix: str = "") -> InputError:
        """An InputError about `target` (plus a suffix such as '[3].role')."""
        return bad(reason, message, file=self.row.file, line=self.row.line, field=self.name(target) + suffix)

    def conversation_id(self, source: SourceConfig) -> str:
        """The row's `id` (string or integer), else '<source>-<line>'."""
        value = self.get("id", None)
        if value is None:
            return f"{source.name}-{self.row.line}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.wrong_type("id", "a string or an integer", value)
        value = str(value)
        if not value.strip():
            raise self.error("missing field", "empty id", "id")
        return value

    def language(self) -> str | None:
        """The row's own `lang` field, if any."""
        value = self.get("lang", None)
        if value is not None and not isinstance(value, str):
            raise self.wrong_type("lang", "a string", value)
        return value

    def meta(self, source: SourceConfig) -> dict[str, Any]:
        """The row's `meta` object (if the format has one) plus the source's meta_columns."""
        meta = self.get("meta", None)
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise self.wrong_type("meta", "an object", meta)
        meta = dict(meta)
        for path in source.meta_columns:
            meta[path] = get_path(self.row.data, path, None)
        return meta


def role_of(value: Any, f: Fields, target: str, suffix: str) -> str:
    """Map a speaker name to user/assistant/system, or raise naming the field."""
    if not isinstance(value, str):
        raise f.wrong_type(target, "a string", value, suffix)
    role = ROLE_ALIASES.get(value.strip().lower())
    if role is None:
        raise f.error("unknown role", f"unknown role {value!r}; expected one of {', '.join(ROLE_ALIASES)}",
                      target, suffix)
    return role


def split_system(turns: list[Turn]) -> tuple[list[Turn], str]:
    """Remove system turns (kept out of the history) and return them joined."""
    system = [t.content for t in turns if t.role == SYSTEM and isinstance(t.content, str)]
    return [t for t in turns if t.role != SYSTEM], "\n\n".join(system)


def _turn_list(f: Fields, target: str, role_key: str, content_key: str) -> list[Turn]:
    """Turns from a list of objects with a speaker key and a text key."""
    raw = f.get(target)
    if not isinstance(raw, list):
        raise f.wrong_type(target, "a list of turns", raw)
    turns = []
    for i, obj in enumerate(raw):
        base = f"[{i}]"
        if not isinstance(obj, dict):
            raise f.wrong_type(target, "an object", obj, base)
        if role_key not in obj:
            raise f.error("missing field", "missing required field", target, f"{base}.{role_key}")
        if content_key not in obj or obj[content_key] is None:
            raise f.error("missing field", "missing required field", target, f"{base}.{content_key}")
        role = role_of(obj[role_key], f, target, f"{base}.{role_key}")
        turns.append(Turn(role, obj[content_key], f"{f.name(target)}{base}.{role_key}",
                          f"{f.name(target)}{base}.{content_key}"))
    return turns


def _alternatives(f: Fields, target: str) -> list[dict[str, Any]]:
    raw = f.get(target, None)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise f.wrong_type(target, "a list of {content, rank}", raw)
    out = []
    for i, alt in enumerate(raw):
        if not isinstance(alt, dict):
            raise f.wrong_type(target, "an object", alt, f"[{i}]")
        content, rank = alt.get("content"), alt.get("rank")
        if not isinstance(content, str):
            raise f.wrong_type(target, "a string", content, f"[{i}].content")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float))):
            raise f.wrong_type(target, "a number", rank, f"[{i}].rank")
        out.append({"content": content, "rank": rank})
    return out


def _history_pairs(f: Fields, target: str) -> list[Turn]:
    """Alpaca-style history [[user, assistant], ...] (or a list of {role, content})."""
    raw = f.get(target, None)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise f.wrong_type(target, "a list of [user, assistant] pairs", raw)
    if raw and isinstance(raw[0], dict):
        return _turn_list(f, target, "role", "content")
    turns = []
    for i, pair in enumerate(raw):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise f.wrong_type(target, "a [user, assistant] pair", pair, f"[{i}]")
        for j, role in enumerate((USER, ASSISTANT)):
            name = f"{f.name(target)}[{i}][{j}]"
            turns.append(Turn(role, pair[j], name, name))
    return turns


def _user(f: Fields, target: str) -> Turn:
    return Turn(USER, f.text(target), f.name(target), f.name(target))


def _assistant(f: Fields, target: str, source: SourceConfig) -> Turn:
    value = f.get(target, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        if source.skip_empty:
            raise Skip("empty or missing response (skip_empty)")
        if value is None:
            raise f.error("missing field", "missing required field", target)
    if not isinstance(value, str):
        raise f.wrong_type(target, "a string", value)
    return Turn(ASSISTANT, value, f.name(target), f.name(target))


def _text_or_empty(f: Fields, target: str) -> str:
    return f.text(target, "")


# --------------------------------------------------------------------------------------------- row parsers

def parse_messages(row: Row, source: SourceConfig) -> RawConversation:
    """`messages` rows: {id, lang, messages, ranked_alternatives, meta, context, license}."""
    f = Fields(row, source.columns)
    turns, system = split_system(_turn_list(f, "messages", "role", "content"))
    meta = f.meta(source)
    return RawConversation(f.conversation_id(source), turns, row.file, row.line, context=_text_or_empty(f, "context"),
                           context_field=f.name("context"), alternatives=_alternatives(f, "ranked_alternatives"),
                           alternatives_field=f.name("ranked_alternatives"),
                           system=system or _text_or_empty(f, "system"), language=f.language(),
                           license=f.text("license", None), meta=meta)


def parse_sharegpt(row: Row, source: SourceConfig) -> RawConversation:
    """ShareGPT rows: {id, conversations: [{from, value}], system}."""
    f = Fields(row, source.columns)
    raw = f.get("conversations")
    keys = ("from", "value")
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "from" not in raw[0] and "role" in raw[0]:
        keys = ("role", "content")
    turns, system = split_system(_turn_list(f, "conversations", *keys))
    return RawConversation(f.conversation_id(source), turns, row.file, row.line,
                           system=system or _text_or_empty(f, "system"), language=f.language(),
                           meta=f.meta(source))


def _one_turn(row: Row, source: SourceConfig, prompt: str, response: str, context: str) -> RawConversation:
    """One record from named prompt/response/context fields, after an optional [[user, assistant], ...] history."""
    f = Fields(row, source.columns)
    history = _history_pairs(f, "history")
    turns = [*history, _user(f, prompt), _assistant(f, response, source)]
    cid = f.conversation_id(source)
    return RawConversation(cid, turns, row.file, row.line, context=_text_or_empty(f, context),
                           context_field=f.name(context), system=_text_or_empty(f, "system"),
                           language=f.language(), meta=f.meta(source), respond="last",
                           record_id=f"{cid}#{len(history) // 2}")


def parse_alpaca(row: Row, source: SourceConfig) -> RawConversation:
    """Alpaca rows: {instruction, input, output, history, system}; one record (the output) per row."""
    return _one_turn(row, source, prompt="instruction", response="output", context="input")


def parse_fields(row: Row, source: SourceConfig) -> RawConversation:
    """`fields` rows: one turn from named fields {id, prompt, response, context, history, system}."""
    return _one_turn(row, source, prompt="prompt", response="response", context="context")


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
                           context=_text_or_empty(f, "context"), context_field=f.name("context"),
                           system=_text_or_empty(f, "system"), language=f.language(), meta=f.meta(source))


def parse_utterances(row: Row, source: SourceConfig) -> RawConversation:
    """`utterances` rows: one list of utterances alternating speakers, the first speaker being the user."""
    f = Fields(row, source.columns)
    raw = f.get("utterances")
    if not isinstance(raw, list):
        raise f.wrong_type("utterances", "a list of strings", raw)
    turns = [Turn((USER, ASSISTANT)[i % 2], u, f"{f.name('utterances')}[{i}]", f"{f.name('utterances')}[{i}]")
             for i, u in enumerate(raw)]
    return RawConversation(f.conversation_id(source), turns, row.file, row.line,
                           context=_text_or_empty(f, "context"), context_field=f.name("context"),
                           system=_text_or_empty(f, "system"), language=f.language(), meta=f.meta(source))


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
    history = _turn_list(f, "history", "role", "content") if f.get("history", None) is not None else []
    turns = [*history, _user(f, "prompt"), _assistant(f, "response", source)]
    turn_index = f.get("turn_index", None)
    if turn_index is not None and (isinstance(turn_index, bool) or not isinstance(turn_index, int)):
        raise f.wrong_type("turn_index", "an integer", turn_index)
    meta = f.meta(source)
    origin = f.text("source", "")
    if origin and origin != source.name:
        meta.setdefault("origin_source", origin)
    return RawConversation(f.text("conversation_id", None) or record_id, turns, row.file, row.line,
                           context=_text_or_empty(f, "context"), context_field=f.name("context"),
                           alternatives=_alternatives(f, "alternatives"), alternatives_field=f.name("alternatives"),
                           language=f.text("language", None) or None, family=f.text("family", None) or None,
                           license=f.text("license", None) or None, meta=meta, respond="last",
                           record_id=record_id, turn_index=turn_index)


# ------------------------------------------------------------------------------------------------ OASST trees

@dataclass
class _Message:
    message_id: str
    parent_id: str | None
    role: str
    text: Any
    rank: float | None
    lang: str | None
    tree_id: str | None
    row: Row
    f: Fields


def _flatten_oasst_tree(row: Row) -> Iterator[Row]:
    """Rows of an OASST tree export ({message_tree_id, prompt: {..., replies}}) as flat message rows."""
    tree_id = row.data.get("message_tree_id")
    stack = [(row.data["prompt"], None)]
    while stack:
        node, parent = stack.pop()
        if not isinstance(node, dict):
            raise bad("wrong type", "each tree node must be an object", file=row.file, line=row.line,
                      field="prompt")
        flat = {k: v for k, v in node.items() if k != "replies"}
        flat.setdefault("parent_id", parent)
        flat.setdefault("message_tree_id", tree_id)
        yield Row(row.file, row.line, flat)
        for child in reversed(node.get("replies") or []):
            stack.append((child, node.get("message_id")))


def _oasst_message(row: Row, source: SourceConfig) -> _Message:
    f = Fields(row, source.columns)
    if not isinstance(row.data, dict):
        raise bad("wrong type", "expected a JSON object", file=row.file, line=row.line)
    if f.get("deleted", False) is True:
        raise Skip("oasst: deleted message")
    if f.get("review_result", True) is False:
        raise Skip("oasst: message failed review")
    message_id = f.text("message_id")
    parent_id = f.get("parent_id", None)
    if parent_id is not None and not isinstance(parent_id, str):
        raise f.wrong_type("parent_id", "a string or null", parent_id)
    role_value = f.get("role")
    if role_value not in ("prompter", "assistant"):
        raise f.error("unknown role", f"role must be 'prompter' or 'assistant', got {role_value!r}", "role")
    text = f.get("text")
    if not isinstance(text, str):
        raise f.wrong_type("text", "a string", text)
    rank = f.get("rank", None)
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float))):
        raise f.wrong_type("rank", "a number or null", rank)
    tree_id = f.get("message_tree_id", None)
    return _Message(message_id, parent_id or None, ROLE_ALIASES[role_value], text, rank, f.language(),
                    str(tree_id) if tree_id else None, row, f)


def convert_oasst(rows: Iterable[Row | InputError], source: SourceConfig) -> Iterator[Item]:
    """Rebuild OASST threads: for every prompter message with replies, the thread from the root to it plus its
    best reply (rank 0, else the lowest rank, else the first in file order); the other ranked replies become
    the record's alternatives. All threads of one tree share the tree id as conversation id."""
    messages: dict[str, _Message] = {}
    order: list[str] = []
    dropped: set[str] = set()
    for row in rows:
        if isinstance(row, InputError):
            yield row
            continue
        flat = (_flatten_oasst_tree(row) if isinstance(row.data, dict) and isinstance(row.data.get("prompt"), dict)
                else [row])
        try:
            for sub in flat:
                try:
                    msg = _oasst_message(sub, source)
                except Skip as skip:
                    mid = sub.data.get("message_id") if isinstance(sub.data, dict) else None
                    if isinstance(mid, str):
                        dropped.add(mid)
                    yield Filtered(skip.reason, sub.file, sub.line)
                    continue
                if msg.message_id in messages:
                    first = messages[msg.message_id].row
                    raise bad("duplicate id", f"duplicate message_id (first at line {first.line})", file=sub.file,
                              line=sub.line, field=msg.f.name("message_id"))
                messages[msg.message_id] = msg
                order.append(msg.message_id)
        except InputError as exc:
            yield exc
    children: dict[str, list[_Message]] = defaultdict(list)
    for mid in order:
        msg = messages[mid]
        if msg.parent_id is not None:
            children[msg.parent_id].append(msg)
    for mid in order:
        prompt = messages[mid]
        replies = [c for c in children.get(mid, []) if c.role == ASSISTANT]
        if prompt.role != USER or not replies:
            continue
        try:
            thread = _ancestry(prompt, messages, dropped)
        except Skip as skip:
            yield Filtered(skip.reason, prompt.row.file, prompt.row.line)
            continue
        except InputError as exc:
            yield exc
            continue
        ranked = sorted(enumerate(replies), key=lambda ir: (ir[1].rank is None, ir[1].rank or 0, ir[0]))
        best = ranked[0][1]
        alternatives = [{"content": c.text, "rank": c.rank} for _, c in ranked if c.rank is not None]
        root = thread[0]
        tree_id = prompt.tree_id or root.message_id
        turns = [Turn(m.role, m.text, f"{m.f.name('role')} (message {m.message_id})",
                      f"{m.f.name('text')} (message {m.message_id})") for m in [*thread, best]]
        meta = {"message_tree_id": tree_id, "prompt_message_id": prompt.message_id,
                "response_message_id": best.message_id, "n_replies": len(replies),
                "ranked": best.rank is not None}
        for path in source.meta_columns:
            meta[path] = get_path(best.row.data, path, None)
        yield RawConversation(tree_id, turns, best.row.file, best.row.line, alternatives=alternatives,
                              alternatives_field="rank", language=root.lang or prompt.lang, meta=meta,
                              respond="last", record_id=f"{tree_id}#{prompt.message_id}")


def _ancestry(msg: _Message, messages: dict[str, _Message], dropped: set[str]) -> list[_Message]:
    """Messages from the root to `msg` (inclusive)."""
    path = [msg]
    seen = {msg.message_id}
    while path[-1].parent_id is not None:
        parent_id = path[-1].parent_id
        if parent_id in dropped:
            raise Skip("oasst: an ancestor message was deleted or failed review")
        parent = messages.get(parent_id)
        if parent is None:
            child = path[-1]
            raise bad("missing parent", f"parent message {parent_id!r} not found in this source",
                      file=child.row.file, line=child.row.line, field=child.f.name("parent_id"))
        if parent_id in seen:
            raise bad("cycle", "parent links form a cycle", file=parent.row.file, line=parent.row.line,
                      field=parent.f.name("parent_id"))
        seen.add(parent_id)
        path.append(parent)
    return path[::-1]


# ------------------------------------------------------------------------------------------------ row sources

def _file_list(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json"))
        if not files:
            raise InputError("folder holds no .jsonl or .json files", file=path)
        return files
    return [path]


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a JSON array file; the line is where the element starts."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise bad("invalid UTF-8", "invalid UTF-8 byte", file=path, line=line) from None
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise bad("malformed JSON", f"malformed JSON ({exc.msg})", file=path, line=exc.lineno) from None
        yield 1, obj
        return
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise bad("malformed JSON", "malformed JSON (the array is not closed)", file=path,
                      line=text.count("\n") + 1)
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise bad("malformed JSON", f"malformed JSON ({exc.msg}; a broken JSON array cannot be skipped "
                      "line by line)", file=path, line=exc.lineno) from None
        yield line, obj


def iter_file_rows(path: str | Path, *, errors: str = "raise") -> Iterator[Row | InputError]:
    """Rows of a .jsonl file, a .json file (an array or one object) or a folder of them."""
    for file in _file_list(Path(path)):
        if file.suffix == ".json":
            for line, obj in iter_json_array(file):
                yield Row(str(file), line, obj)
            continue
        for line, obj in iter_jsonl(file, errors=errors):
            yield obj if isinstance(obj, InputError) else Row(str(file), line, obj)


def hf_label(source: SourceConfig) -> str:
    """How rows of a Hugging Face source are named in messages: hf:<path>[/<name>][<split>]."""
    opts = source.hf
    name = f"/{opts.name}" if opts and opts.name else ""
    return f"hf:{source.path}{name}[{opts.split if opts else 'train'}]"


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("dataset_dict.json", "state.json"))


def load_hf_dataset(source: SourceConfig) -> Any:
    """The dataset of an `hf` source: `load_from_disk` for a folder written by save_to_disk, else
    `datasets.load_dataset(path, name, split=..., revision=..., data_files=..., streaming=...)`."""
    import datasets

    opts = source.hf
    path = Path(source.path)
    label = hf_label(source)
    try:
        if _is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if opts.split not in ds:
                    raise InputError(f"split {opts.split!r} not in the saved dataset; it has {sorted(ds)}",
                                     file=label, field="hf.split")
                ds = ds[opts.split]
            return ds
        return datasets.load_dataset(source.path, opts.name, split=opts.split, revision=opts.revision,
                                     data_files=opts.data_files, streaming=opts.streaming)
    except InputError:
        raise
    except Exception as exc:  # network, missing dataset, bad split: one readable line
        raise InputError(f"cannot load the Hugging Face dataset: {type(exc).__name__}: {exc}".split("\n")[0],
                         file=label) from None


def iter_hf_rows(source: SourceConfig) -> Iterator[Row]:
    """Rows of a Hugging Face dataset; the 'line' of a row is its 1-based index."""
    label = hf_label(source)
    for i, row in enumerate(load_hf_dataset(source), start=1):
        yield Row(label, i, row)


def explode_rows(rows: Iterable[Row | InputError], paths: list[str]) -> Iterator[Row | InputError]:
    """Expand list-valued columns into one row per element (outermost path first); other rows pass through."""
    if not paths:
        yield from rows
        return
    for row in rows:
        if isinstance(row, InputError):
            yield row
            continue
        stack = [(row.data, 0)]
        out = []
        while stack:
            data, depth = stack.pop()
            if depth == len(paths):
                out.append(data)
                continue
            try:
                values = get_path(data, paths[depth])
            except KeyError:
                yield bad("missing field", "missing required field (explode)", file=row.file, line=row.line,
                          field=paths[depth])
                out = []
                break
            if not isinstance(values, list):
                yield bad("wrong type", f"must be a list to explode, got {type(values).__name__}", file=row.file,
                          line=row.line, field=paths[depth])
                out = []
                break
            stack.extend((set_path(data, paths[depth], v), depth + 1) for v in reversed(values))
        for data in out:
            yield Row(row.file, row.line, data)


def _keep(row: Row, keep_if: dict[str, list[Any]]) -> str | None:
    """None if the row passes `keep_if`, else the reason it is dropped."""
    for path, allowed in keep_if.items():
        value = get_path(row.data, path, None)
        if value not in allowed:
            return f"keep_if: {path}={value!r}"
    return None


def source_rows(source: SourceConfig, *, errors: str = "raise") -> Iterator[Row | InputError | Filtered]:
    """The rows of a source after `explode` and `keep_if`."""
    rows: Iterable[Row | InputError] = (iter_hf_rows(source) if source.format == "hf"
                                        else iter_file_rows(source.path, errors=errors))
    for row in explode_rows(rows, source.explode):
        if isinstance(row, InputError):
            yield row
            continue
        if source.keep_if:
            reason = _keep(row, source.keep_if)
            if reason:
                yield Filtered(reason, row.file, row.line)
                continue
        yield row


# ---------------------------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Format:
    """A source format: the fields its rows have (the keys `columns` may map) and how rows become items."""

    name: str
    fields: tuple[str, ...]
    convert: Callable[[Iterable[Row | InputError | Filtered], SourceConfig], Iterator[Item]]
    description: str


def row_converter(parse: Callable[[Row, SourceConfig], RawConversation]) -> Callable[..., Iterator[Item]]:
    """Turn a one-row parser into a converter that yields an item (or an error, or a Filtered) per row."""

    def convert(rows: Iterable[Row | InputError | Filtered], source: SourceConfig) -> Iterator[Item]:
        for row in rows:
            if isinstance(row, (InputError, Filtered)):
                yield row
                continue
            try:
                conv = parse(row, source)
                if source.group_by:
                    conv.split_group = split_group_value(row, source.group_paths)
                yield conv
            except Skip as skip:
                yield Filtered(skip.reason, row.file, row.line)
            except InputError as exc:
                yield exc

    return convert


def split_group_value(row: Row, paths: list[str]) -> str | None:
    """The split-group key of a row: the value at the one `group_by` path, or the JSON list of the values at
    several paths (e.g. title and paragraph index); keys longer than 64 characters are hashed. None (the
    conversation is its own unit) when every value is null or blank, e.g. a row without a context passage."""
    values = [_group_part(row, path) for path in paths]
    if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
        return None
    text = str(values[0]) if len(values) == 1 else json.dumps(values, ensure_ascii=False)
    return text if len(text) <= 64 else "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _group_part(row: Row, path: str) -> str | int | float | None:
    """The value at one group_by path: a string, a number or null, else an InputError naming the column."""
    try:
        value = get_path(row.data, path)
    except KeyError:
        raise bad("missing field", "missing group_by column", file=row.file, line=row.line, field=path) from None
    if isinstance(value, (dict, list)):
        raise bad("wrong type", f"group_by value must be a string, a number or null, got {type(value).__name__}",
                  file=row.file, line=row.line, field=path)
    return value


def _hf_convert(rows: Iterable[Row | InputError | Filtered], source: SourceConfig) -> Iterator[Item]:
    return FORMATS[source.row_format].convert(rows, source)


FORMATS: dict[str, Format] = {
    "messages": Format("messages", ("id", "messages", "lang", "ranked_alternatives", "meta", "context", "license",
                                    "system"), row_converter(parse_messages),
                       "{id, lang, messages: [{role, content}], ranked_alternatives, meta}"),
    "sharegpt": Format("sharegpt", ("id", "conversations", "system", "lang", "meta"), row_converter(parse_sharegpt),
                       "{id, conversations: [{from, value}], system}"),
    "alpaca": Format("alpaca", ("id", "instruction", "input", "output", "history", "system", "lang", "meta"),
                     row_converter(parse_alpaca), "{instruction, input, output, history: [[user, assistant]]}"),
    "oasst": Format("oasst", ("message_id", "parent_id", "role", "text", "rank", "lang", "message_tree_id",
                              "deleted", "review_result"), convert_oasst,
                    "OASST message rows {message_id, parent_id, role, text, rank, lang, message_tree_id}"),
    "polyalign": Format("polyalign", POLYALIGN_FIELDS, row_converter(parse_polyalign), "PolyAlign Record JSONL"),
    "fields": Format("fields", ("id", "prompt", "response", "context", "history", "system", "lang", "meta"),
                     row_converter(parse_fields), "{id, prompt, response, context, history}"),
    "turns": Format("turns", ("id", "prompts", "responses", "context", "system", "lang", "meta"),
                    row_converter(parse_turns), "{id, prompts: [...], responses: [...], context}"),
    "utterances": Format("utterances", ("id", "utterances", "context", "system", "lang", "meta"),
                         row_converter(parse_utterances), "{id, utterances: [...]} (first speaker = user)"),
    "hf": Format("hf", (), _hf_convert, "a Hugging Face dataset; rows parsed as hf.shape"),
}


def format_fields(source: SourceConfig) -> tuple[str, ...]:
    """The fields a source's `columns` may map."""
    return FORMATS[source.row_format].fields


def read_source(source: SourceConfig, *, errors: str = "yield") -> Iterator[Item]:
    """Raw conversations of a source (plus InputErrors and Filtered items, which the caller raises or counts),
    at most `source.limit` conversations."""
    items = FORMATS[source.format].convert(source_rows(source, errors=errors), source)
    produced = 0
    for item in items:
        yield item
        if isinstance(item, RawConversation):
            produced += 1
            if source.limit is not None and produced >= source.limit:
                return
