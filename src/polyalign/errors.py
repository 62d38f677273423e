"""User-facing errors. The CLI prints them without a traceback and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class PolyAlignError(Exception):
    """An error caused by the user's input or configuration, with a message meant to be read."""


class InputError(PolyAlignError):
    """Bad input data: names the file, the line (1-based) and the field when they are known."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"


class ConfigError(PolyAlignError):
    """A configuration file or option is invalid."""


class WriteError(PolyAlignError):
    """Writing an output failed (full disk, no permission, read-only file system): names the path."""

    def __init__(self, path: str | Path, reason: str, *, note: str = ""):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: cannot write: {reason}" + (f"; {note}" if note else ""))


class IntegrityError(PolyAlignError):
    """A cached artifact's files differ from the hashes its stage recorded."""


class RefusedError(PolyAlignError):
    """A stage refused its own result (a refit critic below its AUC gate): the pipeline keeps nothing of that stage
    (its partial folder is removed) and stops there."""


class LockedError(PolyAlignError):
    """Another process holds the work folder's lock."""
