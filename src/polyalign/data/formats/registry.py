"""The format registry: format name -> `Format` (fields its `columns` may map, converter, description), and
`read_source`, which reads a source's rows and converts them with its format. To add a format, write one module
in this package that declares a `Format` (a one-row parser wrapped by `row_converter`, or a converter over all
rows like oasst's) and add it to `FORMATS` below; `SourceConfig.format` then accepts its name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ...errors import InputError
from . import chat, dialogue, oasst, records, single_turn
from .base import Filtered, Format, Item, RawConversation, Row
from .readers import source_rows

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


def _hf_convert(rows: Iterable[Row | InputError | Filtered], source: SourceConfig) -> Iterator[Item]:
    """A Hugging Face dataset's rows, converted by the format of its `hf.shape`."""
    return FORMATS[source.row_format].convert(rows, source)


HF = Format("hf", (), _hf_convert, "a Hugging Face dataset; rows parsed as hf.shape")

#: Every source format by name (the order is the one error messages list them in).
FORMATS: dict[str, Format] = {f.name: f for f in (chat.MESSAGES, chat.SHAREGPT, single_turn.ALPACA, oasst.OASST,
                                                  records.POLYALIGN, single_turn.FIELDS, dialogue.TURNS,
                                                  dialogue.UTTERANCES, HF)}


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
