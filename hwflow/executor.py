"""One small executor interface for parallel work (many netlists, sweep points).

Stages call `run_parallel(fn, items, jobs)` and never touch a pool directly, so a
cluster engine (Ray, Dask) can slot in here later without touching the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_parallel(fn: Callable[[T], R], items: Iterable[T], jobs: int = 1) -> Iterator[R]:
    """Apply `fn` to each item, yielding results in input order.

    jobs <= 1 runs in this process (simple tracebacks, no pickling); otherwise a local
    process pool. `fn` and the items must be picklable then.
    """
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(fn, items)
