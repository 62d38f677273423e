"""Run independent tasks with bounded concurrency, appending each finished one to a JSONL part file (flushed
per line), so that a killed run resumes with only the unfinished tasks. The first task that raises stops the
rest (tasks in flight finish and are kept) and is raised again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import append_jsonl, drop_torn_tail, iter_jsonl


def read_part(path: Path, key: str = "key") -> dict[str, dict[str, Any]]:
    """The finished tasks of a part file by key (a line torn by a kill is dropped first)."""
    drop_torn_tail(path)
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line, obj in iter_jsonl(path):
            if not isinstance(obj, dict) or key not in obj:
                raise InputError(f"not a part row (needs {key})", file=path, line=line)
            done[str(obj[key])] = obj
    return done


def run_resumable(tasks: Iterable[tuple[str, Callable[[], dict[str, Any]]]], part: Path, concurrency: int,
                  on_done: Callable[[int], None] | None = None, *, key: str = "key") -> int:
    """Run each (k, call) whose k is not in `part` yet; append {key: k, **call()} when it finishes.
    Returns the number of tasks finished now."""
    done = read_part(part, key)
    todo = [(k, call) for k, call in tasks if k not in done]
    n_new = 0
    failure: BaseException | None = None
    written: set[Future] = set()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="polyalign-tasks")
    futures = {pool.submit(call): k for k, call in todo}

    def keep(finished: Iterable[Future]) -> None:
        nonlocal failure, n_new
        for future in finished:
            if future in written or future.cancelled():
                continue
            if future.exception() is not None:
                failure = failure or future.exception()
                continue
            append_jsonl(part, [{key: futures[future], **future.result()}])
            written.add(future)
            n_new += 1
            if on_done:
                on_done(n_new)

    try:
        pending = set(futures)
        while pending and failure is None:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            keep(finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    keep([f for f in futures if f.done()])
    if failure is not None:
        raise failure
    return n_new
