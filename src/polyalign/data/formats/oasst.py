"""OASST message trees (`oasst`): flat message rows {message_id, parent_id, role, text, rank, lang,
message_tree_id} or tree exports {message_tree_id, prompt: {..., replies: [...]}}; threads are rebuilt from the
tree, one record per prompter message with replies."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from .base import ASSISTANT, ROLE_ALIASES, USER, Filtered, Format, Item, RawConversation, Row, Skip, Turn, bad, \
    get_path
from .fields import Fields

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


@dataclass
class _Message:
    """One OASST message, with the row and field reader it came from (for located errors)."""

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
    messages: dict[str, _Message] = {}  # in file order
    dropped: set[str] = set()
    for row in rows:
        if isinstance(row, InputError):
            yield row
            continue
        try:
            yield from _add_messages(row, source, messages, dropped)
        except InputError as exc:
            yield exc
    children: dict[str, list[_Message]] = defaultdict(list)
    for msg in messages.values():
        if msg.parent_id is not None:
            children[msg.parent_id].append(msg)
    for mid, prompt in messages.items():
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
        yield _thread_conversation(thread, replies, source)


def _add_messages(row: Row, source: SourceConfig, messages: dict[str, _Message], dropped: set[str]
                  ) -> Iterator[Filtered]:
    """Add the messages of one row (a message, or a whole tree export) to `messages`; deleted or rejected ones
    go to `dropped` and are yielded as Filtered. A duplicate id raises an InputError (the row's later messages
    are not read)."""
    tree = isinstance(row.data, dict) and isinstance(row.data.get("prompt"), dict)
    for sub in (_flatten_oasst_tree(row) if tree else [row]):
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


def _thread_conversation(thread: list[_Message], replies: list[_Message], source: SourceConfig) -> RawConversation:
    """The conversation of a thread (root ... prompt) answered by its best-ranked reply."""
    prompt, root = thread[-1], thread[0]
    ranked = sorted(enumerate(replies), key=lambda ir: (ir[1].rank is None, ir[1].rank or 0, ir[0]))
    best = ranked[0][1]
    alternatives = [{"content": c.text, "rank": c.rank} for _, c in ranked if c.rank is not None]
    tree_id = prompt.tree_id or root.message_id
    turns = [Turn(m.role, m.text, f"{m.f.name('role')} (message {m.message_id})",
                  f"{m.f.name('text')} (message {m.message_id})") for m in [*thread, best]]
    meta = {"message_tree_id": tree_id, "prompt_message_id": prompt.message_id,
            "response_message_id": best.message_id, "n_replies": len(replies),
            "ranked": best.rank is not None}
    for path in source.meta_columns:
        meta[path] = get_path(best.row.data, path, None)
    return RawConversation(tree_id, turns, best.row.file, best.row.line, alternatives=alternatives,
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


OASST = Format("oasst", ("message_id", "parent_id", "role", "text", "rank", "lang", "message_tree_id", "deleted",
                         "review_result"), convert_oasst,
               "OASST message rows {message_id, parent_id, role, text, rank, lang, message_tree_id}")
