"""Atomic saves leave files with ordinary permissions (not mkstemp's 0600), and keep the
permissions of a file they replace."""

from __future__ import annotations

import os
import stat

from nnwatch._io import _UMASK, atomic_write_bytes


def test_new_files_follow_the_umask(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o666 & ~_UMASK


def test_replaced_files_keep_their_mode(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_a_named_pipe_is_written_through_not_replaced(tmp_path):
    import threading

    fifo = tmp_path / "s.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"id,flag\n0,False\n")
    reader.join(timeout=10)
    assert got == [b"id,flag\n0,False\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]
