"""The metric registry: every metric the evaluation reports, with its family, direction and formula.

A metric is registered by decorating the function that computes it with ``@register_metric(...)`` (a function
that yields several metrics carries several decorators). The registry is the single source of the metric names
used in metrics.json, of the direction arrows in reports, and of docs/metrics.md (``render_markdown``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .metric_docs import POWER, PREAMBLE

FAMILIES = ("utility", "diversity", "naturalness", "faithfulness", "multiturn", "tradeoff")
DIRECTIONS = ("higher", "lower", "target 0.5", "target human")
SCOPES = ("bucket", "global")
AGGREGATES = ("macro", "weighted", "median", "value")

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means: how it is computed, which way is better, how it is aggregated over buckets."""

    name: str
    family: str
    direction: str
    description: str
    formula: str
    scope: str = "bucket"          # "bucket": one value per bucket, then aggregated; "global": one value
    ceiling: bool = True           # also computed human-vs-human (held-out test humans vs the train pool)
    headline: str = "macro"        # the aggregate shown as the headline (macro | weighted | median | value)
    value_range: str = "[0, 1]"
    ideal: float | None = None     # the value a perfect method reaches (None: "the human value")
    languages: tuple[str, ...] = ("en", "zh")
    function: str = ""
    # How it is computed per group: score(group, take) -> float on the responses at positions `take` of a
    # polyalign.eval.group.Group; resample = the metric takes bootstrap draws (a headline metric); a group with
    # fewer than min_items responses or a pool under min_pool has no value for it (n/a with the reason).
    score: Callable | None = field(default=None, compare=False, repr=False)
    resample: bool = False
    min_items: int = 1
    min_pool: int = 0

    @property
    def arrow(self) -> str:
        """A short direction marker for tables."""
        return direction_arrow(self.direction)


METRICS: dict[str, MetricSpec] = {}
_METRIC_MODULES = ("utility", "diversity", "naturalness", "faithfulness", "conditional", "multiturn", "tradeoff")


def register_metric(name: str, family: str, direction: str, description: str, formula: str, *,
                    scope: str = "bucket", ceiling: bool = True, headline: str = "macro",
                    value_range: str = "[0, 1]", ideal: float | None = None,
                    languages: tuple[str, ...] = ("en", "zh"), score: Callable | None = None,
                    resample: bool = False, min_items: int = 1, min_pool: int = 0) -> Callable[[F], F]:
    """Decorator: register metric `name` as computed by the decorated function (returned unchanged); `score`
    is how the scorers call it on one group (see MetricSpec)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown metric family {family!r}; expected one of {FAMILIES}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if headline not in AGGREGATES:
        raise ValueError(f"unknown headline aggregate {headline!r}")

    if resample and score is None:
        raise ValueError(f"metric {name!r}: resample needs a score function")
    spec = MetricSpec(name=name, family=family, direction=direction, description=description, formula=formula,
                      scope=scope, ceiling=ceiling, headline=headline, value_range=value_range, ideal=ideal,
                      languages=languages, score=score, resample=resample, min_items=min_items, min_pool=min_pool)
    # Registered here, when the decorator expression is evaluated (top to bottom for stacked decorators), so
    # that the registry keeps the order in which metrics are written; the function is filled in below.
    if name in METRICS and METRICS[name].function and \
            (METRICS[name].description, METRICS[name].formula) != (description, formula):
        raise ValueError(f"metric {name!r} is registered twice ({METRICS[name].function})")
    METRICS.setdefault(name, spec)

    def decorate(fn: F) -> F:
        function = f"{fn.__module__}.{fn.__qualname__}"
        existing = METRICS[name]
        if existing.function and existing.function != function:
            raise ValueError(f"metric {name!r} is registered twice ({existing.function}, {function})")
        METRICS[name] = replace(spec, function=function)
        return fn

    return decorate


def load_all() -> dict[str, MetricSpec]:
    """Import every metric module so that the registry is complete; return it."""
    for module in _METRIC_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return METRICS


HEADLINE_FAMILIES = ("naturalness", "faithfulness", "utility")


def headline_metrics() -> tuple[str, ...]:
    """The metrics with bootstrap draws (the headline of every report), naturalness, faithfulness, utility."""
    return tuple(m.name for family in HEADLINE_FAMILIES for m in metrics_by_family()[family] if m.resample)


def all_metrics() -> tuple[str, ...]:
    """Every registered metric, in family order then registration order (the every-metric tables)."""
    return tuple(m.name for specs in metrics_by_family().values() for m in specs)


def bucket_metrics() -> list[MetricSpec]:
    """The per-group metrics that have a score function, in registry order."""
    return [m for m in load_all().values() if m.score is not None and m.scope == "bucket"]


def get_metric(name: str) -> MetricSpec:
    """The spec of a registered metric (KeyError naming the known metrics otherwise)."""
    load_all()
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}") from None


def metrics_by_family() -> dict[str, list[MetricSpec]]:
    """Registered metrics grouped by family, in family order then registration order."""
    load_all()

    def module_rank(spec: MetricSpec) -> int:  # import order must not change the docs
        module = spec.function.split(".")[-2] if spec.function.count(".") >= 2 else ""
        return _METRIC_MODULES.index(module) if module in _METRIC_MODULES else len(_METRIC_MODULES)

    ordered = sorted(METRICS.values(), key=module_rank)
    return {family: [m for m in ordered if m.family == family] for family in FAMILIES}


def direction_arrow(direction: str) -> str:
    """'↑' (higher is better), '↓' (lower), '→0.5' (target 0.5), '≈H' (closest to the human value)."""
    return {"higher": "↑", "lower": "↓", "target 0.5": "→0.5", "target human": "≈H"}[direction]


def closeness(spec: MetricSpec, value: float | None, human: float | None = None) -> float | None:
    """How far a value is from the metric's ideal, as a non-negative badness (0 = ideal), for ranking and
    colouring: higher → ideal − v; lower → v − ideal; target 0.5 → |v − 0.5|; target human → |v − human|."""
    if value is None:
        return None
    if spec.direction == "target 0.5":
        return abs(value - 0.5)
    if spec.direction == "target human":
        return None if human is None else abs(value - human)
    if spec.direction == "higher":
        return (spec.ideal - value) if spec.ideal is not None else -value
    return (value - spec.ideal) if spec.ideal is not None else value


_FAMILY_INTRO = {
    "utility": "Prediction vs the item's own gold human response. Per item, then the mean per bucket. "
               "Tokenization is language-aware (see `polyalign.eval.tokenize`): English uses SQuAD "
               "normalization (lowercase, Unicode punctuation — full-width included — removed, a/an/the "
               "dropped, whitespace tokens); Chinese uses characters (the bilingual length rule's tokens: one "
               "token per Han character, one per run of other letters/digits; punctuation dropped) and, "
               "separately, jieba words. No ceiling: the gold response against itself is trivially perfect.",
    "diversity": "Corpus-level, per bucket, over the method's responses; the 'ceiling' column is the same "
                 "statistic on the held-out human responses of the same items (the target).",
    "naturalness": "Conditional naturalness: is a bucket's set of responses distributed like that bucket's "
                   "humans, in the bilingual linguistic feature space (`polyalign.data.features`)? Every metric "
                   "is `score(X, R)` with R the bucket's human reference pool (TRAIN split) and X either the "
                   "model's responses to the suite items (model score) or the suite items' own gold responses "
                   "(held-out TEST humans of the same size: the human-vs-human ceiling). The references are "
                   "thus split in two — train pool vs held-out test humans — and the ceiling is reported next "
                   "to every model score.",
    "faithfulness": "Distributional faithfulness: the same scoring frame (X vs the bucket's train pool R; "
                    "ceiling = held-out test humans vs R) on text embeddings and on lengths.",
    "multiturn": "Multi-turn dynamics, on multi-turn buckets only: how a response couples to the turn it "
                 "answers. Per item: log length ratio, lexical accommodation (response word types found in the "
                 "previous user turn / in it plus the 6 turns before it; TF-IDF cosine with the previous user "
                 "turn), "
                 "semantic coupling (cosine in a TF-IDF + SVD space fit on the pool's prompts AND responses) and "
                 "the dialogue-act transition (question/statement → question/statement). Per bucket the model's "
                 "distribution of each quantity is compared with the pool's.",
    "tradeoff": "Utility against naturalness over buckets, and one aggregate.",
}

_AGG_TEXT = ("Every bucket metric is reported per bucket and aggregated three ways: `macro` (mean over buckets), "
             "`weighted` (mean weighted by the bucket's number of scored items) and `median` (median over "
             "buckets). The `headline` column says which aggregate a summary table shows. `by_language` and "
             "`by_track` repeat the aggregates over the buckets of one language / track.")


def render_markdown() -> str:
    """docs/metrics.md, generated from the registry (a test checks the file is up to date)."""
    lines = ["# Metrics", "",
             "<!-- Generated by `python -m polyalign.eval.registry > docs/metrics.md`; do not edit by hand. -->",
             "", "Direction: ↑ higher is better, ↓ lower is better, →0.5 closest to 0.5 is best, "
             "≈H closest to the human value is best.", "", _AGG_TEXT, "", PREAMBLE]
    for family, specs in metrics_by_family().items():
        if not specs:
            continue
        lines += [f"## {family}", "", _FAMILY_INTRO[family], "",
                  "| metric | dir | range | headline | ceiling | definition |", "|---|---|---|---|---|---|"]
        for s in specs:
            ceiling = "yes" if s.ceiling else "no"
            scope = "" if s.scope == "bucket" else " (global)"
            lines.append(f"| `{s.name}`{scope} | {s.arrow} | {s.value_range} | {s.headline} | {ceiling} | "
                         f"{s.description} |")
        lines.append("")
        for s in specs:
            lines += [f"### `{s.name}`", "", s.description, "", "```", s.formula.strip(), "```", "",
                      f"Direction: {s.direction}. Computed by `{s.function}`.", ""]
    lines += [POWER.rstrip()]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    # run as a script this file is `__main__`, not the module the metric files register into
    from polyalign.eval.registry import render_markdown as _render

    print(_render(), end="")
