"""Files: strict JSONL reading with located errors, atomic writes, hashing and manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

TRACKED_PACKAGES = ("polyalign", "torch", "transformers", "trl", "accelerate", "datasets", "peft", "numpy",
                    "scikit-learn", "jieba", "sacrebleu", "mauve-text")


def iter_jsonl(path: str | Path, *, errors: str = "raise") -> Iterator[tuple[int, Any]]:
    """Yield (line_number, object) for each non-blank line; raise InputError on bad UTF-8 or bad JSON.

    With ``errors="yield"`` a bad line yields (line_number, InputError) instead, and reading goes on.
    """
    if errors not in ("raise", "yield"):
        raise ValueError(f"errors must be 'raise' or 'yield', got {errors!r}")
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig")  # a BOM (Windows editors) is not part of the JSON
            except UnicodeDecodeError as exc:
                err = InputError(f"invalid UTF-8 byte at column {exc.start + 1}", file=path, line=line_no)
                if errors == "raise":
                    raise err from None
                yield line_no, err
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                err = InputError(f"malformed JSON ({exc.msg} at column {exc.colno})", file=path, line=line_no)
                if errors == "raise":
                    raise err from None
                yield line_no, err
                continue
            yield line_no, obj


def read_jsonl(path: str | Path) -> list[Any]:
    """All objects of a JSONL file (see iter_jsonl for errors)."""
    return [obj for _, obj in iter_jsonl(path)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays and for paths (json.dumps' `default`)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto `path` (file or directory), else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write pretty JSON atomically."""
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write rows as JSONL atomically; return the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(_dumps(row) + "\n")
            n += 1
    return n


def append_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Append rows to a JSONL file, flushing each line (for resumable outputs)."""
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(_dumps(row) + "\n")
            fh.flush()
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    """Load a JSON file, naming the file on error."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON ({exc.msg})", file=path, line=exc.lineno) from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hex SHA-256 over the relative paths and bytes of every file under a directory (or one file)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False,
                                     default=_json_default).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine results."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_manifest(*, stage: str, config: Any, inputs: dict[str, str] | None = None, seed: int | None = None,
                  started: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest: what made an artifact (config, input hashes, versions, seed, wall time)."""
    now = time.time()
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "config": config,
        "inputs": inputs or {},
        "seed": seed,
        "versions": package_versions(),
        "argv": sys.argv,
    }
    if started is not None:
        manifest["wall_time_s"] = round(now - started, 3)
    if extra:
        manifest.update(extra)
    return manifest
