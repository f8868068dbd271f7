"""Background threads for streaming runs: decode ahead of the model, write behind it."""

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor

WORKERS = min(4, os.cpu_count() or 1)


def prefetch(
    function: Callable, items: Iterable, ahead: int, workers: int = WORKERS
) -> Iterator[tuple[object, Future]]:
    """Yield `(item, future of function(item))` in input order, keeping `ahead` items in flight.

    Memory stays bounded however many items there are; closing the iterator cancels the rest.
    """
    executor = ThreadPoolExecutor(workers, thread_name_prefix="cnnviz-read")
    iterator = iter(items)
    queue: deque = deque()

    def submit(count: int) -> None:
        for item in itertools.islice(iterator, count):
            queue.append((item, executor.submit(function, item)))

    try:
        submit(max(1, ahead))
        while queue:
            yield queue.popleft()
            submit(1)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class BoundedPool:
    """A thread pool whose `submit` blocks while `limit` tasks are queued or running.

    A task's `done` callback runs in the task itself, so a task is finished only once its
    callback is; a signal that interrupts `submit` cannot leave a count that `wait` waits on.
    """

    def __init__(self, limit: int, workers: int = WORKERS):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cnnviz-write")
        self._room = threading.BoundedSemaphore(limit)
        self._running: set[Future] = set()

    def submit(self, function: Callable, done: Callable[[Future], None]) -> None:
        """Run `function` in the background, then `done(future)` in the worker thread."""
        self._room.acquire()

        def task() -> None:
            outcome: Future = Future()
            try:
                outcome.set_result(function())
            except BaseException as error:  # handed to `done`, as a Future would
                outcome.set_exception(error)
            try:
                done(outcome)
            finally:
                self._room.release()

        future = self._executor.submit(task)
        self._running.add(future)
        future.add_done_callback(self._running.discard)

    def wait(self) -> None:
        """Block until every submitted task, and its `done` callback, has finished."""
        futures.wait(list(self._running))

    def close(self) -> None:
        """Finish what was submitted and stop the worker threads."""
        self._executor.shutdown(wait=True)
        self._running.clear()
