"""Run a generator in a background thread, a bounded number of items ahead of its consumer.

Decoding a recording (JPEG, video, CDR) and running the model then overlap: while the model
scores batch ``k``, the thread decodes batches ``k+1 .. k+depth``. Memory stays bounded by
``depth`` items. An exception in the thread is re-raised in the consumer, with its traceback;
closing the consumer's generator early (``break``, an error, garbage collection) stops the
thread and waits for it, so files the producer opened are closed before the call returns.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, TypeVar

from ..errors import InputError

T = TypeVar("T")
THREAD_NAME = "nnwatch-decode"
_DONE = object()
_POLL_S = 0.05  # how often a blocked producer checks whether it should stop


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(make: Callable[[], Iterator[T]], depth: int = 4, name: str = THREAD_NAME) -> Iterator[T]:
    """Items of ``make()``, produced in a background thread at most ``depth`` items ahead.

    Parameters
    ----------
    make : callable
        Returns the producing iterator; called inside the thread, so what it opens belongs
        to the thread and is closed there.
    depth : int
        Items the producer may run ahead (the queue's bound).
    name : str
        Thread name (shown in debuggers and ``threading.enumerate()``).

    Returns
    -------
    Iterator
        The items, in order.

    Raises
    ------
    InputError
        ``depth`` < 1.
    """
    if depth < 1:
        raise InputError(f"prefetch depth must be >= 1, got {depth}")
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = None
        try:
            source = make()
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    return _consume(thread, items, stop)


def _consume(thread: threading.Thread, items: queue.Queue, stop: threading.Event) -> Iterator[T]:
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=_POLL_S)
