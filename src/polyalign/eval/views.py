"""Evaluation views: how suite items and pool responses are grouped before they are compared.

* ``context`` (the headline): groups keyed by fields observable *before* the response exists — by default
  ``language | track | family``. A model never sees the gold response's length bin, so scoring it inside the
  gold bin's bucket rewards guessing the gold length; in this view length is scored as a distribution inside
  each context group instead.
* ``oracle`` (the oracle-length view): the training buckets ``language | track | family | length bin``, i.e.
  items grouped by their gold response's length bin. Reported too, labelled as such.

A context key may only name record fields that describe the context (see ``CONTEXT_FIELDS``); a field that
does not exist, or one that is a property of the response (``RESPONSE_FIELDS``), is refused before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.schema import Record
from ..errors import ConfigError

DEFAULT_CONTEXT_KEY = ("language", "track", "family")
CONTEXT_FIELDS = ("language", "track", "family", "source", "turn_index", "license")
RESPONSE_FIELDS = ("response", "length", "length_bin", "bucket_id", "alternatives")
VIEWS = ("context", "oracle")
VIEW_LABELS = {"context": "context buckets (headline: groups known before the response)",
               "oracle": "oracle-length buckets (groups use the gold response's length bin)"}


def validate_context_key(key: Sequence[str] | str) -> tuple[str, ...]:
    """The key as a tuple of field names; ConfigError for an unknown field or a property of the response."""
    fields = tuple(part.strip() for part in (key.split("|") if isinstance(key, str) else key) if part.strip())
    if not fields:
        raise ConfigError("context_key: give at least one record field, e.g. language|track|family")
    known = set(Record.__dataclass_fields__)
    for name in fields:
        if name in RESPONSE_FIELDS:
            raise ConfigError(f"context_key: '{name}' is a property of the response, which no model sees before "
                              f"answering; use fields of the context ({', '.join(CONTEXT_FIELDS)})")
        if name not in known:
            raise ConfigError(f"context_key: no record field '{name}'; context fields: {', '.join(CONTEXT_FIELDS)}")
        if name not in CONTEXT_FIELDS:
            raise ConfigError(f"context_key: '{name}' is not a grouping field of the context; use "
                              f"{', '.join(CONTEXT_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ConfigError(f"context_key: repeated field in {list(fields)}")
    return fields


def context_id(record: Record, key: Sequence[str]) -> str:
    """The record's context group, e.g. 'en|single|assistant'."""
    return "|".join(str(getattr(record, name)) for name in key)


@dataclass
class View:
    """Groups of suite item rows and pool rows, with each group's language / track / family."""

    name: str
    items: dict[str, list[int]]
    pool: dict[str, list[int]]
    info: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        """Group ids with items, sorted."""
        return sorted(self.items)

    @property
    def label(self) -> str:
        """What the view means, for reports."""
        return VIEW_LABELS[self.name]


def _group_rows(records: Sequence[Record], key_of) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(key_of(r), []).append(i)
    return out


def make_view(name: str, items: Sequence[Record], pool: Sequence[Record],
              context_key: Sequence[str] = DEFAULT_CONTEXT_KEY) -> View:
    """The `context` or `oracle` view of a suite's items and pool."""
    if name == "context":
        key = validate_context_key(context_key)

        def key_of(r: Record) -> str:
            return context_id(r, key)
    elif name == "oracle":
        def key_of(r: Record) -> str:
            return r.bucket_id
    else:
        raise ConfigError(f"unknown evaluation view {name!r}; expected one of {VIEWS}")
    item_groups = _group_rows(items, key_of)
    pool_groups = _group_rows(pool, key_of)
    info: dict[str, dict[str, Any]] = {}
    for group, rows in item_groups.items():
        first = items[rows[0]]
        info[group] = {"language": first.language, "track": first.track, "family": first.family}
    return View(name=name, items=item_groups, pool={g: pool_groups.get(g, []) for g in item_groups}, info=info)
