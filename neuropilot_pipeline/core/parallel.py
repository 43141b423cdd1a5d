"""Spread independent per-service work (model fits, report charts, policy replays) over the machine's cores."""

from __future__ import annotations

import os
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")


def one_native_thread():
    """Context: BLAS and OpenMP use one thread inside it.

    Parallelism here is one process per core. BLAS and OpenMP threads on top of that fight over
    the same cores, and on the tiny matrices of mixture models (7 x 7 Cholesky solves, 360 x 7
    products) their hand-offs cost more than the maths: a day's training of 20 services took
    9.2 s with OpenBLAS's two threads and 1.8 s with one."""
    return threadpool_limits(limits=1)


_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_start() -> None:
    # For the worker's lifetime: libraries loaded later read the variables when they load,
    # those already loaded (with the spawned interpreter's first imports) are limited now.
    os.environ.update(_ONE_THREAD_ENV)
    threadpool_limits(limits=1)


def map_processes(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, min_items: int = 8,
                  pool: ProcessPoolExecutor | None = None) -> list[R]:
    """[fn(item) for item in items], on up to `workers` processes (default: the cores) when there
    are at least `min_items` (fewer are not worth starting processes for). `fn` must be a
    module-level function; results come back in order. Each item runs with one BLAS/OpenMP
    thread, in this process or a worker. `pool`: workers already started (`started_processes`)."""
    items = list(items)
    workers = min(workers or os.cpu_count() or 1, len(items))
    if workers <= 1 or len(items) < min_items:
        with one_native_thread():
            return [fn(item) for item in items]
    chunksize = max(1, len(items) // (4 * workers))
    if pool is not None:
        return list(pool.map(fn, items, chunksize=chunksize))
    with _spawn_pool(workers) as started:
        return list(started.map(fn, items, chunksize=chunksize))


def submit_processes(fn: Callable[[T], R], items: Iterable[T], pool: ProcessPoolExecutor | None,
                     min_items: int = 8) -> Callable[[], list[R]]:
    """`map_processes` on started workers without waiting: returns a function that waits for
    the results (in order). The caller goes on with other work while the workers run. Without
    `pool`, or with fewer than `min_items` items, the items run here, now."""
    items = list(items)
    if pool is None or len(items) < min_items:
        done = map_processes(fn, items, min_items=len(items) + 1)
        return lambda: done
    futures = [pool.submit(fn, item) for item in items]
    return lambda: [f.result() for f in futures]


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the caller (a Dagster step) runs threads, which fork would copy mid-flight.
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_start)


@contextmanager
def started_processes(workers: int, warm_up: Callable[[], object] | None = None) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes started now for a `map_processes(..., pool=...)` later, each running
    `warm_up` (its imports, say) first: starting a worker (an interpreter, numpy, pandas and
    what `warm_up` loads: ~1 s) then overlaps with what the caller does meanwhile. Fewer than
    two workers: no pool (None), and map_processes runs in this process."""
    if workers <= 1:
        yield None
        return
    pool = _spawn_pool(workers)
    try:
        if warm_up is not None:
            for _ in range(workers):
                pool.submit(warm_up)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def map_threads(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """[fn(item) for item in items] on up to `workers` threads (default: the cores); results in
    order. For work whose time is mostly in compiled code that releases the GIL (the service
    model's numba kernels, `nogil=True`): threads share the process, so nothing is pickled and
    no interpreter is started, which for a few milliseconds an item is what processes cost."""
    items = list(items)
    workers = min(workers or os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
