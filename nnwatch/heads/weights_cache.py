"""A folder cache for converted model weights (a GGUF de-quantized once, then read as safetensors).

Loading a quantized GGUF through transformers de-quantizes every tensor on every load: 44 s
for Gemma 3 270M on this project's machine, most of a cold ``heads guard``. The conversion is
deterministic, so its result is kept: the first load writes the model with
``save_pretrained`` (safetensors) into a cache folder, later loads read that folder.

Where: ``--cache-dir`` if given, else ``$NNWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnwatch``
(an absolute ``XDG_CACHE_HOME`` only, as the XDG base-directory rules say), else
``~/.cache/nnwatch``.

An entry is used only when its record matches: the source file's sha256, the converter's
versions and settings, and the size and sha256 of every file the conversion wrote. Anything
else (a different source, a truncated, edited, added or missing file, a missing record) is
rebuilt with a :class:`WeightsCacheWarning`, never used. Entries are built in a temporary
folder beside their final place and renamed into it, so a killed build leaves no entry; an
advisory lock (``<entry>.lock``) serializes checking and replacing an entry, so two
processes never remove each other's fresh entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import InputError

CACHE_ENV = "NNWATCH_CACHE_DIR"
RECORD = "nnwatch-cache.json"
FORMAT = 1
_CHUNK = 1 << 20


class WeightsCacheWarning(UserWarning):
    """A cache entry was damaged or did not match its source, and was rebuilt."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder (not created).

    Parameters
    ----------
    cache_dir : str or PathLike, optional
        An explicit folder (``--cache-dir``); wins over the environment.

    Returns
    -------
    pathlib.Path
        ``cache_dir``, ``$NNWATCH_CACHE_DIR``, ``$XDG_CACHE_HOME/nnwatch`` or ``~/.cache/nnwatch``.
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "nnwatch"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _inventory(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RECORD}


def entry_problem(folder: Path, key: dict[str, Any]) -> str | None:
    """Why a cache entry cannot be used, or None when it can.

    Parameters
    ----------
    folder : pathlib.Path
        The entry.
    key : dict
        What it must have been built from (source hash, versions, settings).

    Returns
    -------
    str or None
        A short reason (missing record, other source, a file missing, resized or changed).
    """
    try:
        record = json.loads((folder / RECORD).read_text())
    except FileNotFoundError:
        return "it has no record"
    except (OSError, ValueError) as err:
        return f"its record is unreadable ({err})"
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("files"), dict):
        return "it was built from another source or by other versions"
    if not record["files"]:
        return "its record lists no files"
    try:
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != RECORD}
        extra = sorted(present - set(record["files"]))
        if extra:
            return f"it holds files its record does not list ({', '.join(extra[:3])})"
        for name, expected in record["files"].items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != expected.get("size"):
                return f"{name} has another size than when it was written"
            if file_sha256(path) != expected.get("sha256"):
                return f"{name} has changed since it was written"
    except FileNotFoundError as err:  # removed while being checked
        return f"{err.filename} went missing while it was checked"
    return None


def entry_name(source: Path, key: dict[str, Any]) -> str:
    """The folder name of an entry: the source's stem and a hash of the key.

    Parameters
    ----------
    source : pathlib.Path
        The converted file.
    key : dict
        The entry's key.

    Returns
    -------
    str
        ``<stem>-<16 hex digits>``.
    """
    text = json.dumps(key, sort_keys=True).encode()
    return f"{source.stem}-{hashlib.sha256(text).hexdigest()[:16]}"


@contextlib.contextmanager
def writable(parent: Path) -> Iterator[None]:
    """Turn a failure to write the cache into an InputError that names the folder and the ways out.

    Parameters
    ----------
    parent : pathlib.Path
        The cache folder written.

    Returns
    -------
    Iterator[None]
        Context manager.
    """
    try:
        yield
    except OSError as err:
        raise InputError(f"cannot write the weights cache under {parent} ({err.strerror or err}); give another "
                         f"folder with --cache-dir or ${CACHE_ENV}") from None


def cached_conversion(source: str | os.PathLike, build: Callable[[Path], None], settings: dict[str, Any],
                      cache_dir: str | os.PathLike | None = None, kind: str = "models",
                      source_sha256: str | None = None) -> Path:
    """The folder holding ``build``'s output for ``source``, built only when no valid entry exists.

    Parameters
    ----------
    source : str or PathLike
        The file converted (hashed: a different file is a different entry).
    build : callable
        ``build(folder)`` writes the converted files into the empty ``folder``.
    settings : dict
        JSON values the conversion depends on besides the source (library versions, dtype).
    cache_dir : str or PathLike, optional
        See :func:`cache_root`.
    kind : str
        Subfolder of the cache root.
    source_sha256 : str, optional
        The source's sha256 when the caller has just computed it (not hashed again).

    Returns
    -------
    pathlib.Path
        A valid entry.

    Raises
    ------
    InputError
        The cache folder cannot be created or written (the message names it and the ways out).
    """
    source = Path(source)
    key = {"format": FORMAT, "source": source.name, "source_sha256": source_sha256 or file_sha256(source),
           **settings}
    parent = cache_root(cache_dir) / kind
    folder = parent / entry_name(source, key)
    if folder.exists() and entry_problem(folder, key) is None:  # the common case: no lock needed to read
        return folder
    with writable(parent):
        parent.mkdir(parents=True, exist_ok=True)
        lock = open(parent / f"{folder.name}.lock", "a")
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
        problem = entry_problem(folder, key) if folder.exists() else "absent"
        if problem is None:  # another process built it while this one waited
            return folder
        if problem != "absent":
            warnings.warn(WeightsCacheWarning(f"weights cache {folder}: {problem}; rebuilding it"), stacklevel=2)
        with writable(parent):
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", dir=parent))
        try:
            build(staging)  # its errors are the conversion's own, not the cache's
            with writable(parent):
                record = {"key": key, "files": _inventory(staging)}
                (staging / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
                if folder.exists():  # an invalid entry: moved aside, then deleted
                    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.trash.", dir=parent))
                    os.replace(folder, trash / folder.name)
                    shutil.rmtree(trash, ignore_errors=True)
                os.rename(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
