"""Worker threads that stop when their caller does.

`ThreadPoolExecutor`'s own `with` block waits for every queued task on the way out, so a
KeyboardInterrupt (the notebook's stop button) during a listing of thousands of tags would only
return once all of them were fetched. `workers` drops the queued tasks instead and sets `stop`,
which long tasks (blob transfers) check between chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["Cancelled", "workers"]


class Cancelled(Exception):
    """Raised inside a worker whose caller has stopped waiting for it."""


class _Pool(ThreadPoolExecutor):
    def __init__(self, jobs: int, name: str) -> None:
        super().__init__(max_workers=max(1, jobs), thread_name_prefix=name)
        #: Set when the caller was interrupted or failed: running tasks should give up.
        self.stop = threading.Event()


@contextmanager
def workers(jobs: int, name: str) -> Iterator[_Pool]:
    pool = _Pool(jobs, name)
    try:
        yield pool
    except BaseException:
        pool.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
