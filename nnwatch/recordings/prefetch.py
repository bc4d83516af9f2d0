"""Run a generator in a background thread or process, a bounded number of items ahead of its consumer.

Decoding a recording (JPEG, video, CDR) and running the model then overlap: while the model
scores batch ``k``, the producer decodes batches ``k+1 .. k+depth``. Memory stays bounded by
``depth`` items. An exception in the producer is re-raised in the consumer; closing the
consumer's generator early (``break``, an error, garbage collection) stops the producer and
waits for it, so files it opened are closed before the call returns.

A thread shares the interpreter lock with the consumer: decoders that hold it (Pillow's
per-image Python work on small frames, CDR parsing) then take turns with the model's Python
instead of running beside it. ``in_process=True`` runs the producer in a forked process (where
the platform forks), which runs truly in parallel; its items are pickled across a pipe.
"""

from __future__ import annotations

import multiprocessing
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


def can_fork() -> bool:
    """Whether producers can run in a forked process here (Linux and the BSDs; not Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def prefetch(make: Callable[[], Iterator[T]], depth: int = 4, name: str = THREAD_NAME,
             in_process: bool = False) -> Iterator[T]:
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
    in_process : bool
        Produce in a forked process (items must pickle); falls back to a thread where the
        platform cannot fork.

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
    if in_process and can_fork():
        return _consume_process(make, depth)
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


def _produce_into(make: Callable[[], Iterator[T]], items: "multiprocessing.queues.Queue") -> None:
    """The forked producer: every item, then ("done",), or ("error", exception)."""
    source = None
    try:
        source = make()
        for item in source:
            items.put(("item", item))
        items.put(("done",))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
        try:
            items.put(("error", exc))
        except Exception:  # an exception that does not pickle: its text
            items.put(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        items.close()
        items.join_thread()  # everything put is flushed to the pipe before the process exits


def _consume_process(make: Callable[[], Iterator[T]], depth: int) -> Iterator[T]:
    ctx = multiprocessing.get_context("fork")
    items = ctx.Queue(maxsize=depth)
    proc = ctx.Process(target=_produce_into, args=(make, items), name=THREAD_NAME, daemon=True)
    proc.start()
    try:
        while True:
            try:
                msg = items.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"the decoding process ended without a result (exit code {proc.exitcode})") \
                        from None
                continue
            if msg[0] == "done":
                return
            if msg[0] == "error":
                raise msg[1]
            yield msg[1]
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join()
        items.close()
        items.cancel_join_thread()
