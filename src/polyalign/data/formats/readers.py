"""Where rows come from: .jsonl / .json files (or a folder of them) and Hugging Face datasets, each row with its
provenance; then a source's `explode` (list columns to rows) and `keep_if` (rows dropped and counted)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from ...io import iter_jsonl
from .base import Filtered, Row, bad, get_path, set_path

if TYPE_CHECKING:  # pragma: no cover
    from ..sources import SourceConfig


def _file_list(path: Path) -> list[Path]:
    """The .jsonl / .json files of a folder (sorted), or the one file given."""
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
    """Whether a folder was written by `datasets`' save_to_disk."""
    return path.is_dir() and any((path / n).exists() for n in ("dataset_dict.json", "state.json"))


def load_hf_dataset(source: SourceConfig) -> Any:
    """The dataset of an `hf` source: `load_from_disk` for a folder written by save_to_disk, else
    `datasets.load_dataset(path, name, split=..., revision=..., data_files=..., streaming=...)`."""
    import datasets  # lazy on purpose: 0.5 s to import (measured), and only `hf` sources need it

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
