"""Atomic file writes: a reader sees either the old file or the complete new one, never half."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

# mkstemp creates 0600 files; finished files get the usual permissions instead (read once,
# at import, because reading the umask means setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it over ``path``.

    A named pipe or a character device (``/dev/stdout``, a FIFO a reader is waiting on) is not
    a file to replace: its own path is yielded and written in place, so the pipe stays a pipe.

    Parameters
    ----------
    path : str or PathLike
        Final destination. Its folder must exist.

    Returns
    -------
    Iterator[Path]
        Context manager yielding the temporary path to write to.
    """
    final = Path(path)
    if is_stream_target(final):
        yield final
        return
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {final}: folder {folder} does not exist")
    _remove_orphans(folder, final.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            mode = final.stat().st_mode & 0o777  # keep the permissions of the file replaced
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, final)
        # Make the rename itself durable (directory entry), where the platform allows it.
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def is_stream_target(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing named pipe or character device (written in place, never replaced).

    Parameters
    ----------
    path : str or PathLike
        Any path.

    Returns
    -------
    bool
        True for a FIFO or a character device (after following links).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _remove_orphans(folder: Path, name: str) -> None:
    """Delete temp files left by writers of ``name`` that were killed (their process is gone)."""
    prefix = f".{name}."
    for entry in folder.glob(f".{glob.escape(name)}.*.tmp"):
        pid_text = entry.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
        except OSError:  # exists but not ours to signal: leave it alone
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    data : bytes
        Full file content.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``.

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    writer : callable
        Writes the complete file to the path it is given.
    """
    with atomic_path(path) as tmp:
        writer(tmp)


def is_zip_archive(path: str | os.PathLike) -> bool:
    """Whether a file starts like a zip archive (an ``.npz`` profile or data file).

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    bool
        True for a zip archive; False otherwise or when it cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False
