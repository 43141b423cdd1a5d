"""Spread independent per-service work (model fits, report charts) over the machine's cores."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_processes(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, min_items: int = 8) -> list[R]:
    """[fn(item) for item in items], on up to `workers` processes (default: the cores) when there
    are at least `min_items` (fewer are not worth starting processes for). `fn` must be a
    module-level function; results come back in order."""
    items = list(items)
    workers = min(workers or os.cpu_count() or 1, len(items))
    if workers <= 1 or len(items) < min_items:
        return [fn(item) for item in items]
    # spawn, not fork: the caller (a Dagster step) runs threads, which fork would copy mid-flight.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (4 * workers))))
