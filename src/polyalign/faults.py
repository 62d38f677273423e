"""Test hooks for fault injection: named points where a process kills (or stops) itself on request.

``POLYALIGN_FAULT`` holds comma-separated specs ``STAGE:POINT[#N][=ACTION]``: when the pipeline is in stage
STAGE (``*`` for any, including outside a stage) and reaches POINT for the N-th time in this process (N=1 by
default), ACTION happens: ``kill`` (default; SIGKILL to the process itself) or ``hang`` (sleep until killed).
``POLYALIGN_FAULT_TRACE`` names a file to which every point reached is appended as ``stage<TAB>point<TAB>N``
(the harness learns from it which points a stage has). With neither set, `point()` is one dict lookup.

Points (see docs/faults.md): begin, atomic, append, step, saved, body, recorded, rename, renamed.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FAULT_ENV = "POLYALIGN_FAULT"
TRACE_ENV = "POLYALIGN_FAULT_TRACE"
ACTIONS = ("kill", "hang")

_stage: str | None = None
_counts: Counter[tuple[str | None, str]] = Counter()


@contextmanager
def in_stage(name: str) -> Iterator[None]:
    """Points reached inside the block belong to stage `name`."""
    global _stage
    previous, _stage = _stage, name
    try:
        yield
    finally:
        _stage = previous


def parse_specs(text: str) -> list[tuple[str, str, int, str]]:
    """The (stage, point, n, action) tuples of a POLYALIGN_FAULT value; ValueError on a malformed one."""
    specs = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        body, _, action = raw.partition("=")
        action = action or "kill"
        stage, sep, point = body.partition(":")
        point, _, nth = point.partition("#")
        if not sep or not stage or not point or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(f"{FAULT_ENV}: bad spec {raw!r} (want STAGE:POINT[#N][=kill|hang])")
        specs.append((stage, point, int(nth or 1), action))
    return specs


def point(name: str) -> None:
    """A named fault point: a no-op unless POLYALIGN_FAULT or POLYALIGN_FAULT_TRACE is set."""
    spec = os.environ.get(FAULT_ENV)
    trace = os.environ.get(TRACE_ENV)
    if not spec and not trace:
        return
    _counts[(_stage, name)] += 1
    n = _counts[(_stage, name)]
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(f"{_stage or '-'}\t{name}\t{n}\n")
    for stage, where, nth, action in parse_specs(spec or ""):
        if where == name and nth == n and stage in ("*", _stage):
            _fire(action)


def _fire(action: str) -> None:
    if action == "hang":
        while True:
            time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)


def trainer_callbacks() -> list[Any]:
    """A transformers callback reaching point 'step' after every optimizer step (none when the hooks are off)."""
    if not (os.environ.get(FAULT_ENV) or os.environ.get(TRACE_ENV)):
        return []
    from transformers import TrainerCallback

    class FaultStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            point("step")

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            point("saved")

    return [FaultStep()]
