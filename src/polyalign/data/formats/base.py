"""What every format shares: a row with its provenance, the raw conversation a parser makes of it, the items a
format yields (conversations, located errors, deliberately filtered rows), dotted column paths, and the `Format`
record the registry lists (with `row_converter`, which turns a one-row parser into a format)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"
#: Speaker names accepted in `role` / `from` fields, mapped to PolyAlign roles.
ROLE_ALIASES = {"user": USER, "human": USER, "prompter": USER,
                "assistant": ASSISTANT, "gpt": ASSISTANT, "chatgpt": ASSISTANT, "model": ASSISTANT,
                "bot": ASSISTANT, "system": SYSTEM}
MISSING = object()  # get_path's default: no default, a missing path raises


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

def get_path(row: Any, path: str, default: Any = MISSING) -> Any:
    """Value at a dotted column path; numeric parts index lists (``answers.text.0``). Raises KeyError when
    absent unless a default is given."""
    node = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and _is_index(part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            if default is MISSING:
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


# ------------------------------------------------------------------------------------------------ formats

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

