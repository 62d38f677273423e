"""The headline comparison of several evaluated methods: tables with confidence intervals per view and slice,
the attainable ceilings next to them, and paired tests of chosen contrasts with Holm's correction.

Reads the `headline` block of each run's metrics.json (polyalign.eval.headline); every run must have been scored
on the same suite with the same bootstrap draws (compare checks suite version and seed first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError
from .headline import HEADLINE_METRICS
from .registry import load_all
from .significance import holm, paired_difference

HELD_OUT = "held-out humans"
SAME_PROMPT = "same-prompt humans"
HELD_OUT_SAME_ITEMS = "held-out humans (same items)"


def _cell(block: Mapping[str, Any] | None, metric: str, slice_name: str) -> dict[str, Any] | None:
    if not block:
        return None
    cell = block["summary"].get(metric, {}).get(slice_name)
    if not cell or cell.get("value") is None:
        return None
    return {"value": cell["value"], "ci": cell.get("ci"), "n_groups": cell.get("n_groups"),
            "n_na": cell.get("n_na")}


def _slices(block: Mapping[str, Any]) -> list[str]:
    names = []
    for metric in block["summary"].values():
        names += [s for s in metric if s not in names]
    return names


def headline_tables(runs: Mapping[str, Mapping[str, Any]], view: str,
                    metrics: Sequence[str] = HEADLINE_METRICS) -> dict[str, Any]:
    """{"all_items": {slice: {row: {metric: cell}}}, "same_prompt_items": {...} or None}: every method, then the
    held-out humans; on the items with another human reply to the same prompt, every method on those items, the
    held-out humans on them and the same-prompt humans."""
    first = next(iter(runs.values()))["headline"][view]
    out: dict[str, Any] = {"all_items": {}, "same_prompt_items": None}
    for name in _slices(first["ceiling"]):
        rows = {m: {k: _cell(r["headline"][view]["model"], k, name) for k in metrics} for m, r in runs.items()}
        rows[HELD_OUT] = {k: _cell(first["ceiling"], k, name) for k in metrics}
        out["all_items"][name] = rows
    if "same_prompt" in first:
        out["same_prompt_items"] = {}
        for name in _slices(first["same_prompt"]):
            rows = {m: {k: _cell(r["headline"][view].get("model_same_prompt_items"), k, name) for k in metrics}
                    for m, r in runs.items()}
            rows[HELD_OUT_SAME_ITEMS] = {k: _cell(first["ceiling_same_prompt_items"], k, name) for k in metrics}
            rows[SAME_PROMPT] = {k: _cell(first["same_prompt"], k, name) for k in metrics}
            if any(c is not None for c in rows[SAME_PROMPT].values()):
                out["same_prompt_items"][name] = rows
    return out


def parse_contrasts(contrasts: Sequence[str] | None, names: Sequence[str]) -> list[tuple[str, str]]:
    """'A:B' strings → (A, B) pairs of known method names; None: each method against the one before it."""
    if contrasts is None:
        return [(names[i], names[i - 1]) for i in range(1, len(names))]
    pairs = []
    for text in contrasts:
        parts = [p.strip() for p in text.split(":")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"a contrast is 'METHOD_A:METHOD_B', got {text!r}", field="contrasts")
        for p in parts:
            if p not in names:
                raise InputError(f"contrast {text!r} names {p!r}, which is not one of the compared methods "
                                 f"{list(names)}", field="contrasts")
        pairs.append((parts[0], parts[1]))
    return pairs


def contrast_tests(runs: Mapping[str, Mapping[str, Any]], contrasts: Sequence[tuple[str, str]], view: str,
                   metrics: Sequence[str] = HEADLINE_METRICS) -> dict[str, list[dict[str, Any]]]:
    """Per slice: one row per (contrast, metric) with badness(A) − badness(B), its CI and p-values; Holm's
    correction over all rows of the slice."""
    registry = load_all()
    first = next(iter(runs.values()))["headline"][view]
    ceiling = first["ceiling"]
    out: dict[str, list[dict[str, Any]]] = {}
    for name in _slices(ceiling):
        rows = []
        for a, b in contrasts:
            block_a, block_b = runs[a]["headline"][view]["model"], runs[b]["headline"][view]["model"]
            for metric in metrics:
                ca, cb = _cell(block_a, metric, name), _cell(block_b, metric, name)
                if ca is None or cb is None:
                    continue
                human = _cell(ceiling, metric, name)
                test = paired_difference(
                    registry[metric], ca["value"], cb["value"], block_a["replicates"][metric][name],
                    block_b["replicates"][metric][name], human["value"] if human else None,
                    ceiling["replicates"].get(metric, {}).get(name) if human else None)
                rows.append({"a": a, "b": b, "metric": metric, **test})
        for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
            row["p_holm"] = adjusted
            row["significant"] = adjusted is not None and adjusted < 0.05
        out[name] = rows
    return out
