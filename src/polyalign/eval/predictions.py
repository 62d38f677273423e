"""Reading predictions.jsonl against a suite: strict id alignment, never a silent misalignment.

Errors (InputError naming file, line and field): an id the suite does not know, a bucket_id or language that
disagrees with the suite's item, a missing or non-string prediction, a duplicated (id, sample), a predictions
manifest that names another suite version, and — unless `allow_missing` — suite items without a prediction.
Counted and reported: empty predictions (scored as empty text), missing items (with `allow_missing`), rows of
other samples than the one scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import iter_jsonl, read_json, sha256_file
from ..text import normalize_text
from .suite import Suite


@dataclass
class Predictions:
    """One prediction text per suite item (None where missing), aligned with `suite.items`."""

    path: Path
    texts: list[str | None]
    sample: int
    sha256: str
    manifest: dict[str, Any] | None
    gaps: dict[str, Any] = field(default_factory=dict)
    finish: list[str | None] = field(default_factory=list)  # per item: "stop", "length" (cut), None (unknown)

    @property
    def present(self) -> list[bool]:
        """Per suite item: whether it has a prediction."""
        return [t is not None for t in self.texts]


def _manifest_suite_version(manifest: dict[str, Any]) -> str | None:
    for holder in (manifest, manifest.get("config") or {}, manifest.get("extra") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("suite_version"), str):
            return holder["suite_version"]
    return None


def load_predictions(path: str | Path, suite: Suite, *, sample: int | None = None,
                     allow_missing: bool = False) -> Predictions:
    """Read and align predictions with the suite's items (see the module docstring for what is checked)."""
    path = Path(path)
    if not path.exists():
        raise InputError("predictions file not found", file=path)
    manifest = None
    manifest_path = path.parent / "manifest.json"
    if manifest_path.exists():
        manifest = read_json(manifest_path)
        other = _manifest_suite_version(manifest) if isinstance(manifest, dict) else None
        if other is not None and other != suite.version:
            raise InputError(f"these predictions were generated for suite {other}, not for suite {suite.version} "
                             f"({suite.path}): regenerate them on this suite", file=manifest_path,
                             field="suite_version")
    index = {r.id: i for i, r in enumerate(suite.items)}
    rows: dict[int, dict[int, str]] = {}
    finishes: dict[tuple[int, int], str] = {}
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", file=path, line=line)
        rid = obj.get("id")
        if not isinstance(rid, str):
            raise InputError("missing or non-string id", file=path, line=line, field="id")
        if rid not in index:
            raise InputError(f"id {rid!r} is not an item of suite {suite.version} ({suite.path}); predictions "
                             "from another suite or data build?", file=path, line=line, field="id")
        item = suite.items[index[rid]]
        for key in ("bucket_id", "language"):
            if key in obj and obj[key] != getattr(item, key):
                raise InputError(f"{key} {obj[key]!r} disagrees with the suite's {getattr(item, key)!r} for id "
                                 f"{rid!r} (a suite from another data build?)", file=path, line=line, field=key)
        text = obj.get("prediction")
        if not isinstance(text, str):
            raise InputError("missing or non-string prediction", file=path, line=line, field="prediction")
        k = obj.get("sample", 0)
        if not isinstance(k, int):
            raise InputError("sample must be an integer", file=path, line=line, field="sample")
        per_item = rows.setdefault(index[rid], {})
        if k in per_item:
            raise InputError(f"duplicate prediction for id {rid!r}, sample {k}", file=path, line=line, field="id")
        per_item[k] = text
        finish = obj.get("finish")
        if finish is not None and finish not in ("stop", "length"):
            raise InputError(f"finish must be 'stop' or 'length', got {finish!r}", file=path, line=line,
                             field="finish")
        if finish is not None:
            finishes[(index[rid], k)] = finish
    if not rows:
        raise InputError("no predictions in the file", file=path)
    chosen = sample if sample is not None else min(min(s) for s in rows.values())
    texts: list[str | None] = [None] * len(suite.items)
    other_samples = 0
    for i, per_item in rows.items():
        other_samples += len(per_item) - (chosen in per_item)
        if chosen in per_item:
            texts[i] = normalize_text(per_item[chosen])
    missing = [suite.items[i].id for i, t in enumerate(texts) if t is None]
    if missing and not allow_missing:
        raise InputError(f"{len(missing)} of {len(texts)} suite items have no prediction (sample {chosen}), e.g. "
                         f"id {missing[0]!r}; generate them or pass --allow-missing to score the rest and report "
                         "the gap", file=path, field="id")
    empty = sum(1 for t in texts if t is not None and not t)
    gaps = {"missing": len(missing), "missing_ids": missing[:20], "empty_predictions": empty,
            "rows_of_other_samples": other_samples, "scored": len(texts) - len(missing)}
    finish = [finishes.get((i, chosen)) for i in range(len(suite.items))]
    return Predictions(path=path, texts=texts, sample=chosen, sha256=sha256_file(path), manifest=manifest, gaps=gaps,
                       finish=finish)
