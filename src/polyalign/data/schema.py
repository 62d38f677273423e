"""The PolyAlign record: one human response with everything that conditioned it.

A conversation with k assistant turns yields k records; record i has the turns before assistant turn i as its
history, the user turn right before it as its prompt, and that assistant turn as its response.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError

LANGUAGES = ("en", "zh")
TRACKS = ("single", "multi")
ROLES = ("user", "assistant")
SPLITS = ("train", "val", "test")
BUCKET_FIELDS = ("language", "track", "family", "length_bin")


@dataclass
class Record:
    """One human response in context. `history` alternates user/assistant and ends with an assistant turn
    (or is empty); `prompt` is the user turn answered by `response`."""

    id: str
    conversation_id: str
    source: str
    language: str
    prompt: str
    response: str
    history: list[dict[str, str]] = field(default_factory=list)
    context: str = ""
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    track: str = ""
    family: str = ""
    length: int = 0
    length_bin: str = ""
    bucket_id: str = ""
    split: str = ""
    turn_index: int = 0
    license: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Any, *, file: str | None = None, line: int | None = None) -> Record:
        """Build and validate a record from a dict (e.g. a line of records/train.jsonl)."""
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", file=file, line=line)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(obj) - known)
        if unknown:
            raise InputError(f"unknown field(s) {unknown}", file=file, line=line, field=unknown[0])
        for name in ("id", "prompt", "response"):
            if name not in obj:
                raise InputError("missing required field", file=file, line=line, field=name)
        obj = dict(obj)
        obj.setdefault("conversation_id", obj["id"])
        obj.setdefault("source", "")
        obj.setdefault("language", "")
        record = cls(**obj)
        record.validate(file=file, line=line)
        return record

    def validate(self, *, file: str | None = None, line: int | None = None) -> None:
        """Check types, roles and required text; raise InputError naming the field."""
        for name in ("id", "conversation_id", "source", "language", "prompt", "response", "context"):
            if not isinstance(getattr(self, name), str):
                raise InputError("must be a string", file=file, line=line, field=name)
        if not self.response.strip():
            raise InputError("empty response", file=file, line=line, field="response")
        if not self.prompt.strip():
            raise InputError("empty prompt (the user turn before the response)", file=file, line=line,
                             field="prompt")
        if self.language and self.language not in LANGUAGES:
            raise InputError(f"language must be one of {LANGUAGES}, got {self.language!r}", file=file,
                             line=line, field="language")
        if self.track and self.track not in TRACKS:
            raise InputError(f"track must be one of {TRACKS}, got {self.track!r}", file=file, line=line,
                             field="track")
        check_alternating(self.history, file=file, line=line, field="history", must_end_with="assistant")
        for i, alt in enumerate(self.alternatives):
            if not isinstance(alt, dict) or not isinstance(alt.get("content"), str):
                raise InputError("each alternative needs a string 'content'", file=file, line=line,
                                 field=f"alternatives[{i}].content")

    def messages(self) -> list[dict[str, str]]:
        """History plus the prompt as chat messages (no system turn, no response)."""
        return [*self.history, {"role": "user", "content": self.prompt}]

    @property
    def bucket_key(self) -> dict[str, str]:
        """The bucket fields of this record."""
        return {k: getattr(self, k) for k in BUCKET_FIELDS}


def check_alternating(turns: Any, *, file: str | None, line: int | None, field: str,
                      must_end_with: str | None = None) -> None:
    """Raise InputError unless `turns` is a list of {role, content} starting with user and alternating."""
    if not isinstance(turns, list):
        raise InputError("must be a list of {role, content} turns", file=file, line=line, field=field)
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InputError("each turn must be an object", file=file, line=line, field=f"{field}[{i}]")
        if "role" not in turn:
            raise InputError("missing required field", file=file, line=line, field=f"{field}[{i}].role")
        if not isinstance(turn.get("content"), str):
            raise InputError("missing or non-string content", file=file, line=line, field=f"{field}[{i}].content")
        expected = ROLES[i % 2]
        if turn["role"] != expected:
            raise InputError(f"roles must alternate user/assistant starting with user: turn {i} is "
                             f"{turn['role']!r}, expected {expected!r}", file=file, line=line,
                             field=f"{field}[{i}].role")
    if must_end_with and turns and turns[-1]["role"] != must_end_with:
        raise InputError(f"must end with an {must_end_with} turn", file=file, line=line, field=field)
