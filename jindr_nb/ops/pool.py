"""Worker threads that stop when their caller does, and the cyclic collector paused for a bulk read.

`ThreadPoolExecutor`'s own `with` block waits for every queued task on the way out, so a
KeyboardInterrupt (the notebook's stop button) during a listing of thousands of tags would only
return once all of them were fetched. `workers` drops the queued tasks instead and sets `stop`,
which long tasks (blob transfers) check between chunks.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    class Pool(ThreadPoolExecutor):
        #: Set when the caller was interrupted or failed: running tasks should give up.
        stop: threading.Event


__all__ = ["Cancelled", "paused_gc", "workers"]


class Cancelled(Exception):
    """Raised inside a worker whose caller has stopped waiting for it."""


@functools.cache
def _pool_class() -> type[Pool]:
    """The pool type, made at first use: `concurrent.futures` (and the `logging` it imports) cost a
    listing from storage, which runs no threads, a tenth of its start."""
    from concurrent.futures import ThreadPoolExecutor

    class _Pool(ThreadPoolExecutor):
        def __init__(self, jobs: int, name: str) -> None:
            super().__init__(max_workers=max(1, jobs), thread_name_prefix=name)
            self.stop = threading.Event()

    return cast("type[Pool]", _Pool)  # the class `Pool` describes for the type checker


@contextmanager
def workers(jobs: int, name: str) -> Iterator[Pool]:
    pool = _pool_class()(jobs, name)
    try:
        yield pool
    except BaseException:
        pool.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the block, as it was after: a listing from storage makes
    tens of thousands of small objects that stay alive (rows, parsed manifests), and the collector
    walked them again and again — a quarter of a cold `layers` and a tenth of a repeated `lsi`. Its
    objects form no cycles that need collecting in the meantime; reference counting frees the rest,
    and any cycle is collected by the next full collection."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What the block made counts as old from here (freeze, then unfreeze into the oldest
        # generation: two list splices), or the first collection after it would walk all of it.
        gc.freeze()
        gc.unfreeze()
        if was:
            gc.enable()
