"""Files: strict JSONL reading with located errors, atomic writes, hashing and manifests."""

from __future__ import annotations

import contextlib
import errno
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

from . import faults
from .errors import InputError, WriteError

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


WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system", errno.EFBIG: "file too large"}
_ERRNO_TEXT = {"no space left on device": errno.ENOSPC, "os error 28": errno.ENOSPC, "storagefull": errno.ENOSPC,
               "permission denied": errno.EACCES, "read-only file system": errno.EROFS}


def write_failure(exc: BaseException) -> tuple[str, str | None] | None:
    """(reason, file name or None) when `exc` (or what caused it) is a failed write: full disk, no permission,
    read-only file system; None for any other error. Libraries that write from native code (safetensors) raise
    their own types with the OS message in the text, which is matched too."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return WRITE_ERRNOS[exc.errno], exc.filename
        if isinstance(exc, WriteError):
            return exc.reason, exc.path
        text = str(exc).lower()
        for needle, code in _ERRNO_TEXT.items():
            if needle in text and not isinstance(exc, (InputError, OSError)):
                return WRITE_ERRNOS[code], None
        exc = exc.__cause__ or exc.__context__
    return None


def _public(name: str | None, target: Path, path: Path) -> Path:
    """A file name inside an atomic temp folder, as the path it will have once renamed (else `path`)."""
    if name is None:
        return path
    try:
        return path / Path(name).relative_to(target)
    except ValueError:
        return Path(name) if Path(name) != target else path


def replace_path(src: str | Path, dst: str | Path) -> None:
    """Move `src` onto `dst` (file or directory). An existing directory at `dst` is first renamed aside and
    removed after the move, so that a kill leaves either the old or the new one whole, never a half-removed one."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        aside = dst.parent / f".{dst.name}.old"
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(dst, aside)
        faults.point("swap")
        os.replace(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto `path` (file or directory), else remove it.
    A failed write (full disk, no permission) raises WriteError naming `path` (or the file under it)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        _raise_write_error(exc, path)
        raise
    target = tmp / path.name
    try:
        try:
            yield target
            faults.point("atomic")
            replace_path(target, path)
        except WriteError as exc:
            raise WriteError(_public(exc.path, target, path), exc.reason,
                             note="the partial output was removed") from exc
        except OSError as exc:
            _raise_write_error(exc, path, target)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_atomic_leftovers(folder: str | Path) -> list[Path]:
    """Remove the temporary folders that atomic_path left under `folder` when a kill stopped it; return them."""
    removed: list[Path] = []
    for p in sorted((p for p in Path(folder).rglob(".*.tmp") if p.is_dir()), key=lambda p: len(p.parts)):
        if not any(parent in removed for parent in p.parents):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _raise_write_error(exc: BaseException, path: Path, target: Path | None = None) -> None:
    failure = write_failure(exc)
    if failure is not None:
        reason, name = failure
        where = _public(name, target, path) if target is not None else path
        raise WriteError(where, reason, note="the partial output was removed") from exc


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
    """Append rows to a JSONL file, flushing each line (for resumable outputs; see drop_torn_tail)."""
    n = 0
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(_dumps(row) + "\n")
                fh.flush()
                n += 1
                faults.point("append")
    except OSError as exc:
        _raise_write_error(exc, Path(path))
        raise
    return n


def drop_torn_tail(path: str | Path) -> int:
    """Cut a JSONL file after its last newline (a line torn by a kill mid-append); return the bytes dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    end = size
    with open(path, "rb+") as fh:
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        if end < size:
            fh.truncate(end)
    return size - end


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
