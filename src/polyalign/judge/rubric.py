"""The judge rubric as a config (dimensions, composites, caps) and its pure scoring functions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import StrictModel, load_config

RUBRIC_FILE = Path(__file__).resolve().parents[3] / "configs" / "judge" / "rubric.yaml"


class Scale(StrictModel):
    min: int = 1
    max: int = 5


class Cap(StrictModel):
    """A flag the judge raises, and the highest score it leaves the listed dimensions."""

    description: str
    max: int
    dimensions: Literal["all"] | list[str]


class Rubric(StrictModel):
    """Dimensions (name → question), composites (name → {dimension: weight}), caps (flag → Cap)."""

    name: str
    scale: Scale = Scale()
    dimensions: dict[str, str]
    composites: dict[str, dict[str, float]]
    caps: dict[str, Cap] = Field(default_factory=dict)
    reference_dimensions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_dimensions(self) -> Rubric:
        known = set(self.dimensions)
        for name, weights in self.composites.items():
            if unknown := set(weights) - known:
                raise ValueError(f"composite {name} weights unknown dimensions {sorted(unknown)}")
            if any(w <= 0 for w in weights.values()):
                raise ValueError(f"composite {name}: weights must be positive")
        for flag, cap in self.caps.items():
            if cap.dimensions != "all" and (unknown := set(cap.dimensions) - known):
                raise ValueError(f"cap {flag} names unknown dimensions {sorted(unknown)}")
            if not self.scale.min <= cap.max <= self.scale.max:
                raise ValueError(f"cap {flag}: max {cap.max} is outside the scale")
        if unknown := set(self.reference_dimensions) - known:
            raise ValueError(f"reference_dimensions names unknown dimensions {sorted(unknown)}")
        return self

    def asked(self, with_reference: bool) -> list[str]:
        """The dimensions the judge scores (without the reference, the reference dimensions are not asked)."""
        return [d for d in self.dimensions if with_reference or d not in self.reference_dimensions]


def load_rubric(path: str | Path | None = None) -> Rubric:
    """The rubric YAML (default configs/judge/rubric.yaml)."""
    return load_config(path or RUBRIC_FILE, Rubric)


def score_to_100(score: float, scale: Scale) -> float:
    """A 1..5 score on 0..100: 100 (s - min) / (max - min)."""
    return 100.0 * (score - scale.min) / (scale.max - scale.min)


def apply_caps(scores: dict[str, int], flags: dict[str, bool], rubric: Rubric) -> dict[str, int]:
    """Scores with every raised flag's cap applied (min of score and cap on its dimensions)."""
    out = dict(scores)
    for flag, raised in flags.items():
        if not raised or flag not in rubric.caps:
            continue
        cap = rubric.caps[flag]
        for dim in (out if cap.dimensions == "all" else cap.dimensions):
            if dim in out:
                out[dim] = min(out[dim], cap.max)
    return out


def composite(scores: dict[str, int], weights: dict[str, float], scale: Scale) -> float | None:
    """Σ w_d · score_to_100(s_d) / Σ w_d over the weighted dimensions present in `scores` (None if none is)."""
    present = [d for d in weights if d in scores]
    if not present:
        return None
    total = sum(weights[d] for d in present)
    return sum(weights[d] * score_to_100(scores[d], scale) for d in present) / total
