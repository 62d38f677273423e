"""Single-threaded native libraries for scoring.

The evaluation solves many tiny problems (a logistic regression on 100 rows, k-means on a few hundred points).
On a shared 2-core machine, BLAS/OpenMP thread pools cost far more than they save there (measured: the per-bucket
two-sample test 30× slower with 2 BLAS threads under load), and faiss k-means (inside MAUVE) is only
deterministic single-threaded. Scoring therefore runs with every native thread pool limited to one thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit BLAS/OpenMP pools (threadpoolctl) and faiss to one thread; restore them afterwards."""
    try:  # deferred: faiss is only worth limiting when mauve-text has loaded it
        import faiss
    except ImportError:  # pragma: no cover - faiss is a pinned dependency
        faiss = None
    previous = faiss.omp_get_max_threads() if faiss is not None else None
    if faiss is not None:
        faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if faiss is not None and previous is not None:
            faiss.omp_set_num_threads(previous)
