"""Choosing one setting among candidates on the validation suite, by a rule fixed before the scores exist.

The rule (docs/hdpo.md, "Choosing the setting on the validation split"): among the candidates whose utility is
within the guard of the reference method's (seed means), take the one with the lowest seed-mean badness on the
criterion metric (polyalign.eval.significance.badness: distance from the metric's ideal). The test split is then
scored once, for the chosen setting only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .registry import load_all
from .significance import badness


@dataclass(frozen=True)
class SelectionRule:
    """Criterion metric (lower badness wins), utility guards (metric, how much worse than the reference's seed
    mean it may be, in the metric's own units), and the slice of the context view they are read on."""

    metric: str = "c2st_acc"
    guards: tuple[tuple[str, float], ...] = (("chrf", 2.0), ("f1", 0.02))
    slice: str = "overall"


@dataclass
class Selection:
    """What the rule chose (None when no candidate passes the guards) and every candidate's row."""

    chosen: str | None
    rows: list[dict] = field(default_factory=list)


def _mean(values: Sequence[float | None]) -> float:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def choose_setting(values: Mapping[str, Mapping[str, Sequence[float | None]]], candidates: Sequence[str],
                   reference: str, rule: SelectionRule = SelectionRule()) -> Selection:
    """Apply `rule` to per-seed values (method -> metric -> one value per seed, on the rule's slice): the
    eligible candidate with the lowest seed-mean criterion badness, and a row per candidate (criterion value and
    badness, each guard's difference from the reference, eligible)."""
    registry = load_all()
    spec = registry[rule.metric]
    rows = []
    for name in candidates:
        if name not in values:
            raise KeyError(f"candidate {name!r} has no values")
        value = _mean(values[name][rule.metric])
        row = {"method": name, "value": value, "badness": float(badness(spec, np.array([value]))[0]),
               "eligible": bool(np.isfinite(value))}
        for metric, allowance in rule.guards:  # worse than the reference by at most `allowance`
            mine, ref = _mean(values[name][metric]), _mean(values[reference][metric])
            worse = float(np.diff(badness(registry[metric], np.array([ref, mine])))[0])
            row[f"{metric} vs reference"] = mine - ref
            row["eligible"] = row["eligible"] and bool(np.isfinite(worse)) and worse <= allowance
        rows.append(row)
    eligible = [r for r in rows if r["eligible"]]
    chosen = min(eligible, key=lambda r: r["badness"])["method"] if eligible else None
    return Selection(chosen=chosen, rows=rows)
