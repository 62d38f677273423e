"""One group of one view, for one side: what every registered metric computes from.

A metric registered with ``score=`` (polyalign.eval.registry) is called as ``score(group, take)``: `take` holds
positions into ``group.rows`` (all of them for the point value, a bootstrap draw otherwise; metrics registered
with ``resample=False`` are only ever called with all of them). Anything expensive that several metrics or
several draws share is computed once through ``group.cached(key, fn)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .naturalness import FeatureScaler
from .suite import Suite


@dataclass
class Side:
    """A set of responses to the suite's items (not `present` where missing)."""

    texts: Sequence[str]
    features: np.ndarray
    embeddings: np.ndarray
    lengths: np.ndarray
    present: np.ndarray
    with_utility: bool = True                     # False for the held-out humans (the gold against itself)
    coupling: dict[str, np.ndarray] | None = None  # multi-turn coupling statistics (every-metric view only)


@dataclass
class Group:
    """The items of one group that a side answered, and the group's human pool."""

    suite: Suite
    view: str
    name: str
    rows: np.ndarray          # suite item rows scored, in suite order
    pool_rows: np.ndarray     # suite pool rows of the group
    side: Side
    human: Any                # polyalign.eval.scoring.HumanSide (pool embeddings, lengths, references, ...)
    seed: int
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() once per group and key."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def n(self) -> int:
        """Responses scored."""
        return len(self.rows)

    @property
    def all(self) -> np.ndarray:
        """Every position (the point value's `take`)."""
        return np.arange(len(self.rows))

    @cached_property
    def info(self) -> dict[str, str]:
        """language, track and family of the group."""
        r = self.suite.items[int(self.rows[0])] if len(self.rows) else None
        return {"language": r.language, "track": r.track, "family": r.family} if r else {}

    @cached_property
    def x(self) -> np.ndarray:
        """Linguistic features of the scored responses."""
        return self.side.features[self.rows]

    @cached_property
    def r(self) -> np.ndarray:
        """Linguistic features of the group's human pool."""
        return self.suite.pool_features[self.pool_rows]

    @cached_property
    def scaler(self) -> FeatureScaler:
        """Robust standardization fit on the pool (all-pool scale where a column has none)."""
        return FeatureScaler.fit(self.r, self.human.fallback_scale)

    @cached_property
    def texts(self) -> list[str]:
        """The scored responses."""
        return [self.side.texts[i] for i in self.rows]

    @cached_property
    def golds(self) -> list[str]:
        """The items' gold human responses."""
        return [self.suite.items[i].response for i in self.rows]

    @cached_property
    def languages(self) -> list[str]:
        """The items' languages."""
        return [self.suite.items[i].language for i in self.rows]

    @cached_property
    def lengths(self) -> np.ndarray:
        """Length-rule lengths of the scored responses."""
        return self.side.lengths[self.rows]

    @cached_property
    def pool_lengths(self) -> np.ndarray:
        """Length-rule lengths of the pool."""
        return self.human.pool_lengths[self.pool_rows]

    @cached_property
    def reference(self) -> Any:
        """The headline reference of this group (shared quantization cells, length bins of the pool)."""
        return self.human.reference.groups[self.view][self.name]
