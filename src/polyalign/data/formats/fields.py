"""Reading a format's fields from a row: the column mapping, located errors (file, line, column) and the
shared field shapes (turn lists, ranked alternatives, Alpaca histories, user and assistant turns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InputError
from .base import MISSING, ASSISTANT, ROLE_ALIASES, SYSTEM, USER, Row, Skip, Turn, bad, get_path

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


class Fields:
    """Reads a format's fields from a row through the source's column mapping, with located errors."""

    def __init__(self, row: Row, columns: dict[str, str]):
        self.row, self.columns = row, columns

    def name(self, target: str) -> str:
        """The column path that feeds `target` (for messages)."""
        return self.columns.get(target, target)

    def get(self, target: str, default: Any = MISSING) -> Any:
        """The value for `target`; a missing required field is an InputError naming the column."""
        try:
            return get_path(self.row.data, self.name(target))
        except KeyError:
            if default is not MISSING:
                return default
            raise bad("missing field", "missing required field", file=self.row.file, line=self.row.line,
                      field=self.name(target)) from None

    def text(self, target: str, default: Any = MISSING) -> Any:
        """A string field; None counts as missing."""
        value = self.get(target, default)
        if value is None and default is not MISSING:
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


def turn_list(f: Fields, target: str, role_key: str, content_key: str) -> list[Turn]:
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


def alternatives(f: Fields, target: str) -> list[dict[str, Any]]:
    """Ranked alternative replies [{content, rank}] (rank a number or null); [] when the field is absent."""
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


def history_pairs(f: Fields, target: str) -> list[Turn]:
    """Alpaca-style history [[user, assistant], ...] (or a list of {role, content})."""
    raw = f.get(target, None)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise f.wrong_type(target, "a list of [user, assistant] pairs", raw)
    if raw and isinstance(raw[0], dict):
        return turn_list(f, target, "role", "content")
    turns = []
    for i, pair in enumerate(raw):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise f.wrong_type(target, "a [user, assistant] pair", pair, f"[{i}]")
        for j, role in enumerate((USER, ASSISTANT)):
            name = f"{f.name(target)}[{i}][{j}]"
            turns.append(Turn(role, pair[j], name, name))
    return turns


def user_turn(f: Fields, target: str) -> Turn:
    """The user turn held by a string field."""
    return Turn(USER, f.text(target), f.name(target), f.name(target))


def assistant_turn(f: Fields, target: str, source: SourceConfig) -> Turn:
    """The assistant turn held by a string field; a missing or empty one is skipped under `skip_empty`."""
    value = f.get(target, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        if source.skip_empty:
            raise Skip("empty or missing response (skip_empty)")
        if value is None:
            raise f.error("missing field", "missing required field", target)
    if not isinstance(value, str):
        raise f.wrong_type(target, "a string", value)
    return Turn(ASSISTANT, value, f.name(target), f.name(target))


def text_or_empty(f: Fields, target: str) -> str:
    """An optional string field ('' when absent)."""
    return f.text(target, "")

