"""The background decoding thread: order, bounded lead, errors re-raised, stopped on early close."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from nnwatch.errors import InputError
from nnwatch.recordings.prefetch import THREAD_NAME, prefetch


def decode_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_items_in_order_and_the_thread_ends():
    assert list(prefetch(lambda: iter(range(50)), depth=3)) == list(range(50))
    assert wait_for(lambda: not decode_threads())


def test_the_producer_runs_at_most_depth_ahead():
    produced = []

    def make():
        for i in range(100):
            produced.append(i)
            yield i

    it = prefetch(make, depth=4)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 4 + 1  # taken + queued + one waiting to be put
    it.close()


def test_an_error_in_the_thread_is_raised_in_the_consumer():
    def make():
        yield 1
        raise InputError("frame 1: broken")

    it = prefetch(make)
    assert next(it) == 1
    with pytest.raises(InputError, match="frame 1: broken"):
        next(it)
    assert wait_for(lambda: not decode_threads())


def test_closing_early_stops_the_thread_and_closes_the_producer():
    closed = threading.Event()

    def make():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = prefetch(make, depth=2)
    for i, _ in enumerate(it):
        if i == 3:
            break
    it.close()
    assert closed.is_set()  # close() returns after the producer's own cleanup
    assert not decode_threads()


def test_an_abandoned_consumer_stops_the_thread():
    it = prefetch(lambda: iter(range(10**9)), depth=2)
    next(it)
    del it
    gc.collect()
    assert wait_for(lambda: not decode_threads())


def test_depth_must_be_positive():
    with pytest.raises(InputError, match="depth must be >= 1"):
        prefetch(lambda: iter(()), depth=0)


def test_a_forked_producer_gives_the_same_items_and_errors():
    import multiprocessing
    import os

    from nnwatch.recordings.prefetch import can_fork

    if not can_fork():
        pytest.skip("this platform cannot fork")
    assert list(prefetch(lambda: iter(range(300)), depth=3, in_process=True)) == list(range(300))

    def failing():
        yield 1
        raise InputError("frame 2 is broken")

    it = prefetch(failing, in_process=True)
    assert next(it) == 1
    with pytest.raises(InputError, match="frame 2 is broken"):
        next(it)

    def dying():
        yield 1
        os._exit(3)  # a decoder that crashes (a codec's segfault) must not hang the consumer

    with pytest.raises(RuntimeError, match="exit code 3"):
        list(prefetch(dying, in_process=True))
    endless = prefetch(lambda: iter(range(10**9)), depth=2, in_process=True)
    next(endless)
    endless.close()
    assert not multiprocessing.active_children()
