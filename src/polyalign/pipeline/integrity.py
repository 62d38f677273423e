"""Artifact integrity: the table of files a stage wrote (size, mtime, SHA-256), stored in its stage.json, and the
check of a cached stage folder against that table.

The check is cheap by default: a file whose size and modification time (ns) equal the recorded ones is trusted
without reading it; any other file is hashed, and only a different hash (or a missing or added file) is a
problem. `full=True` hashes every file (catches an edit that restored the mtime, or bit rot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import sha256_file, sha256_json


def _excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    return any(rel == e or rel.startswith(e + "/") for e in exclude)


def file_table(folder: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{relative path: {size, mtime_ns, sha256}} of every file under `folder`, except the relative paths (files
    or folders) in `exclude`."""
    folder = Path(folder)
    table = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        if _excluded(rel, exclude):
            continue
        st = f.stat()
        table[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(f)}
    return table


METADATA_NAME = "manifest.json"


def table_digest(table: dict[str, dict[str, Any]] | None) -> str | None:
    """One hash of a file table's paths and contents, without the manifests (their creation times and wall times
    change on every rebuild): what a dependent stage was built from (None for None)."""
    if table is None:
        return None
    return sha256_json({rel: entry["sha256"] for rel, entry in table.items()
                        if rel.rsplit("/", 1)[-1] != METADATA_NAME})


def check_files(folder: str | Path, table: dict[str, dict[str, Any]], *, full: bool = False,
                exclude: tuple[str, ...] = ()) -> list[str]:
    """One line per file of `folder` that differs from `table`: missing, changed or added (empty when intact)."""
    folder = Path(folder)
    problems = []
    for rel, entry in table.items():
        f = folder / rel
        if not f.is_file():
            problems.append(f"{f}: missing (the stage wrote it; it was deleted)")
            continue
        st = f.stat()
        if not full and st.st_size == entry["size"] and st.st_mtime_ns == entry["mtime_ns"]:
            continue
        if st.st_size != entry["size"]:
            problems.append(f"{f}: changed after the stage wrote it (size {st.st_size} bytes, recorded "
                            f"{entry['size']})")
            continue
        digest = sha256_file(f)
        if digest != entry["sha256"]:
            problems.append(f"{f}: changed after the stage wrote it (sha256 {digest[:12]}…, recorded "
                            f"{entry['sha256'][:12]}…)")
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        if rel not in table and not _excluded(rel, exclude):
            problems.append(f"{f}: added after the stage wrote its folder")
    return problems
