"""Data sources named on the command line, read in batches.

- ``npz:FILE``: array ``x`` fed to the model as it is (only cast to the input dtype: no hidden
  preprocessing), optional integer ``y``.
- ``idx:DIR[:train|test]``: MNIST-format IDX files (gzip or not) with the standard names;
  images become float32 ``(N, 1, rows, cols)`` scaled to [0, 1] (``x / 255``).
- ``npy:FILE[,LABELS.npy]``: array ``x`` memory-mapped from a ``.npy`` file (read batch by
  batch, never loaded whole), optional integer labels from a second ``.npy``. An ``.npz``
  archive is zip-compressed per array, so ``npz:`` loads ``x`` whole: use ``npy:`` for inputs
  larger than memory.
- ``digits[:train|val|test]``: scikit-learn's bundled 8x8 digits as float32
  ``(N, 1, 8, 8)`` scaled to [0, 1] (``x / 16``); fixed, seeded 60/20/20 split.
- ``images:DIR`` | ``images:MANIFEST.csv`` | ``video:FILE`` | ``mcap:FILE[:TOPIC]`` |
  ``rosbag:DIR|FILE.bag[:TOPIC]``: recordings, streamed through a declared preprocessing
  (:mod:`nnwatch.recordings`).

Every spec takes a slice suffix ``[start:stop]`` (non-negative, Python semantics, no step):
``npz:val.npz[:500]``, ``video:run.mp4[100:400]``; bounds may be percentages of the length
for contiguous splits, ``[:80%]`` and ``[80%:]`` (see :mod:`nnwatch.recordings.spec`).
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .recordings import SCHEMES as RECORDING_SCHEMES
from .recordings import (Preprocess, RecordingSource, load_preprocess, open_recording, parse_slice,
                         resolve_preprocess, resolve_slice)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ArraySource:
    """An in-memory data set.

    Attributes
    ----------
    x : numpy.ndarray
        Inputs, ``(N, ...)``.
    y : numpy.ndarray or None
        int64 labels ``(N,)``.
    name : str
        Description.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        if self.x.ndim < 2:
            raise InputError(f"{self.name}: x must have a batch axis and features, got shape {self.x.shape}")
        if self.x.shape[0] == 0:
            raise InputError(f"{self.name}: the data set is empty")
        if self.y is not None and self.y.shape != (self.x.shape[0],):
            raise InputError(f"{self.name}: y has shape {self.y.shape}, expected ({self.x.shape[0]},)")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Consecutive batches.

        Parameters
        ----------
        batch_size : int
            Samples per batch (the last may be smaller).

        Returns
        -------
        Iterator
            ``(x, y or None)`` pairs.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        for lo in range(0, len(self), batch_size):
            yield self.x[lo : lo + batch_size], None if self.y is None else self.y[lo : lo + batch_size]

    def limit(self, n: int | None) -> "ArraySource":
        """The first ``n`` samples (all when None).

        Parameters
        ----------
        n : int or None
            How many.

        Returns
        -------
        ArraySource
            The subset.
        """
        if n is None or n >= len(self):
            return self
        return ArraySource(self.x[:n], None if self.y is None else self.y[:n], f"{self.name}[:{n}]")

    def slice(self, start: int | None, stop: int | None) -> "ArraySource":
        """Samples ``[start:stop]`` (non-negative bounds, Python slice semantics).

        Parameters
        ----------
        start, stop : int or None
            Bounds; None: from the start / to the end.

        Returns
        -------
        ArraySource
            The subset (views of the arrays, not copies).

        Raises
        ------
        InputError
            Negative bounds, or an empty result.
        """
        for value in (start, stop):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
                raise InputError(f"{self.name}: slice bounds must be non-negative integers, got [{start}:{stop}]")
        part = slice(start, stop)
        lo, hi, _ = part.indices(len(self))
        if hi <= lo:
            raise InputError(f"{self.name}: the slice [{'' if start is None else start}:{'' if stop is None else stop}]"
                             f" of {len(self)} samples is empty")
        return ArraySource(self.x[part], None if self.y is None else self.y[part],
                           f"{self.name}[{'' if start is None else start}:{'' if stop is None else stop}]")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 8:
        raise InputError(f"IDX file {path} is too short")
    magic = struct.unpack(">I", data[:4])[0]
    if magic >> 8 != 0x08:
        raise InputError(f"IDX file {path}: magic {magic:#x} is not unsigned-byte IDX")
    ndim = magic & 0xFF
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise InputError(f"IDX file {path}: header declares {ndim} dimensions but is cut short")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    start = 4 + 4 * ndim
    need = int(np.prod(dims))
    if len(data) - start < need:
        raise InputError(f"IDX file {path} is truncated: header says {dims}, {len(data) - start} bytes of data")
    return np.frombuffer(data, np.uint8, count=need, offset=start).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: no {stem}[.gz] found")


def load_idx(folder: str | Path, split: str = "train", preprocess: "Preprocess | str | dict | None" = None
             ) -> ArraySource:
    """Read MNIST-format IDX images and labels.

    Parameters
    ----------
    folder : path
        Folder with ``train-*``/``t10k-*`` IDX files.
    split : {"train", "test"}
        Which pair.
    preprocess : Preprocess, str, dict or None
        The declared preprocessing applied to the uint8 images (e.g. ``"-1-1"`` for a model
        trained on ``(x/255 - 0.5) / 0.5``); None: ``x / 255`` as ``(N, 1, rows, cols)``.

    Returns
    -------
    ArraySource
        float32 images (``(N, 1, rows, cols)`` in [0, 1] by default) and int64 labels.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"IDX folder {folder} does not exist")
    if split not in ("train", "test"):
        raise InputError(f"IDX split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    if preprocess is None:
        x = (images.astype(np.float32) / 255.0)[:, None]
    else:
        pre = load_preprocess(preprocess)
        x = pre.finish([pre.pixels(img) for img in images])
    return ArraySource(x, labels.astype(np.int64), f"idx:{folder}:{split}")


def load_digits(split: str | None = None) -> ArraySource:
    """scikit-learn's bundled digits (no download), with a fixed seeded split.

    Parameters
    ----------
    split : {"train", "val", "test"} or None
        60/20/20 split; None = all 1,797 images.

    Returns
    -------
    ArraySource
        float32 ``(N, 1, 8, 8)`` in [0, 1] and int64 labels.
    """
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise InputError("the 'digits' source needs scikit-learn: pip install 'nnwatch[demo]'") from None
    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    if split is None:
        return ArraySource(x, y, "digits")
    if split not in SPLITS:
        raise InputError(f"digits split must be one of {SPLITS}, got {split!r}")
    order = np.random.default_rng(0).permutation(len(y))
    n_train, n_val = int(0.6 * len(y)), int(0.2 * len(y))
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    idx = np.sort(parts[split])
    return ArraySource(x[idx], y[idx], f"digits:{split}")


def load_npz(path: str | Path) -> ArraySource:
    """Arrays ``x`` (and optional ``y``) from an .npz file, without pickle.

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    ArraySource
        The arrays, as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"npz file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not an .npz archive (arrays saved with numpy.savez(path, x=..., y=...))")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise InputError(f"{path}: no array named 'x' (found {data.files})")
            x = data["x"]
            y = data["y"] if "y" in data.files else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read {path} as .npz ({type(exc).__name__}: {exc})") from None
    if x.dtype.kind not in "biuf":
        raise InputError(f"{path}: x has dtype {x.dtype}; a numeric array is needed")
    if y is not None:
        if y.dtype.kind not in "iu":
            raise InputError(f"{path}: y has dtype {y.dtype}; integer class labels are needed")
        y = y.astype(np.int64)
    return ArraySource(x, y, f"npz:{path}")


def load_npy(x_path: str | Path, y_path: str | Path | None = None) -> ArraySource:
    """Inputs memory-mapped from a ``.npy`` file (read as batches are taken), optional labels.

    Parameters
    ----------
    x_path : path
        ``.npy`` array ``(N, ...)``, numeric.
    y_path : path, optional
        ``.npy`` integer labels ``(N,)`` (loaded whole: they are small).

    Returns
    -------
    ArraySource
        ``x`` as a read-only memory map.

    Raises
    ------
    InputError
        Missing or unreadable files, object arrays, labels that do not fit.
    """
    def read(path: Path, mmap: bool) -> np.ndarray:
        if not path.is_file():
            raise InputError(f"npy file {path} does not exist")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {path} as .npy (numpy.save(path, array)): {type(exc).__name__}: {exc}") \
                from None

    x_path = Path(x_path)
    x = read(x_path, True)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise InputError(f"{x_path}: a numeric array is needed, got {getattr(x, 'dtype', type(x).__name__)}")
    y = None
    if y_path is not None:
        y = read(Path(y_path), False)
        if y.dtype.kind not in "iu":
            raise InputError(f"{y_path}: labels have dtype {y.dtype}; integer class labels are needed")
        y = y.astype(np.int64)
    return ArraySource(x, y, f"npy:{x_path}")


def _infer_scheme(spec: str) -> str | None:
    # A bare path is accepted where its kind is unambiguous: an .npz file, or a folder of IDX files.
    path = Path(spec)
    if ":" in spec and not path.exists():
        return None
    if path.is_file() and path.suffix == ".npz":
        return f"npz:{spec}"
    if path.is_file() and path.suffix == ".npy":
        return f"npy:{spec}"
    if path.is_file() and path.suffix == ".mcap":
        return f"mcap:{spec}"
    if path.is_dir() and (path / "metadata.yaml").is_file() or path.is_file() and path.suffix == ".bag":
        return f"rosbag:{spec}"
    if path.is_dir() and any(path.glob("*-idx[13]-ubyte*")):
        return f"idx:{spec}"
    return None


USAGE = ("npz:FILE, npy:FILE[,LABELS.npy], idx:DIR[:train|test], digits[:train|val|test], images:DIR, "
         "images:MANIFEST.csv, video:FILE, mcap:FILE[:TOPIC] or rosbag:DIR|FILE.bag[:TOPIC], each optionally sliced "
         "SOURCE[start:stop]")


def open_source(spec: str, preprocess: "Preprocess | str | dict | None" = None) -> "ArraySource | RecordingSource":
    """Parse a source spec (see module docstring).

    Parameters
    ----------
    spec : str
        ``npz:FILE``, ``npy:FILE[,LABELS.npy]``, ``idx:DIR[:train|test]``, ``digits[:split]``,
        ``images:DIR``, ``images:MANIFEST.csv``, ``video:FILE``, ``mcap:FILE[:TOPIC]`` or
        ``rosbag:DIR|FILE.bag[:TOPIC]``, optionally followed by a slice ``[start:stop]``; a bare path to
        an ``.npz``, ``.npy`` or ``.mcap`` file, a folder of IDX files or a ROS 2 bag folder is
        read as such.
    preprocess : Preprocess, str, dict or None
        For recordings (images, video, mcap, rosbag): the declared preprocessing, a preset
        name or a JSON file (see :mod:`nnwatch.recordings.preprocess`); default ``"0-1"``.
        Array sources are fed as stored and refuse it.

    Returns
    -------
    ArraySource or RecordingSource
        The data (recordings are read lazily, in batches).

    Raises
    ------
    InputError
        Unknown scheme or unreadable data.
    """
    base, bounds = parse_slice(spec)
    source = _open(base, preprocess)
    return source if bounds is None else source.slice(*resolve_slice(bounds, len(source), source.name))


def takes_preprocess(spec: str) -> bool:
    """Whether a source spec names pixels that a declared preprocessing turns into model inputs.

    Parameters
    ----------
    spec : str
        A source spec (see :func:`open_source`).

    Returns
    -------
    bool
        True for recordings (images, video, MCAP, ROS 2 bags) and IDX images; False for
        arrays fed as stored (``npz:``, ``npy:``, ``digits``) and anything unknown.
    """
    if not isinstance(spec, str):
        return False
    base, _ = parse_slice(spec)
    scheme = (_infer_scheme(base) or base).partition(":")[0]
    return scheme in RECORDING_SCHEMES or scheme == "idx"


def _open(spec: str, preprocess: "Preprocess | str | dict | None") -> "ArraySource | RecordingSource":
    inferred = _infer_scheme(spec)
    if inferred:
        spec = inferred
    scheme, _, rest = spec.partition(":")
    if scheme in RECORDING_SCHEMES:
        return open_recording(scheme, rest, preprocess)
    if preprocess is not None and scheme in ("npz", "npy", "digits"):
        raise InputError(f"--preprocess applies to pixels (idx:, {', '.join(RECORDING_SCHEMES)}); {scheme}: data is "
                         "fed to the model as stored: drop --preprocess")
    if scheme == "npz" and rest:
        return load_npz(rest)
    if scheme == "npy" and rest:
        x_path, _, y_path = rest.partition(",")
        return load_npy(x_path, y_path or None)
    if scheme == "idx" and rest:
        folder, sep, split = rest.rpartition(":")
        if not sep or Path(rest).is_dir():
            return load_idx(rest, "train", preprocess)
        if split not in ("train", "test"):
            raise InputError(f"idx:{rest}: split {split!r} is not one of train, test (idx:DIR[:train|test])")
        return load_idx(folder, split, preprocess)
    if scheme == "digits":
        return load_digits(rest or None)
    if scheme in ("npzdir", "parquet"):
        raise InputError(f"{scheme}: sources are read by Ray workers; add --ray (needs nnwatch[dist]), "
                         f"or use {USAGE}")
    raise InputError(f"unknown data source {spec!r}; use {USAGE}")


def in_memory(source: "ArraySource | BatchSource | RecordingSource", batch_size: int = 256) -> ArraySource:
    """A source's samples as arrays in memory (for steps that need them all: calibration, evaluation).

    Parameters
    ----------
    source : ArraySource, BatchSource or RecordingSource
        The data.
    batch_size : int
        Frames decoded per batch while reading a recording.

    Returns
    -------
    ArraySource
        The same samples, in order.

    Raises
    ------
    InputError
        No samples, or labels on only some batches.
    """
    if isinstance(source, ArraySource):
        return source
    if isinstance(source, BatchSource):
        return source.to_arrays()
    xs, ys = [], []
    for x, y in source.batches(batch_size):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise InputError(f"{source.name}: no frames could be read")
    labelled = [y is not None for y in ys]
    return ArraySource(np.concatenate(xs), np.concatenate(ys) if all(labelled) else None, source.name)


class BatchSource:
    """Batches from a re-iterable collection: a list of arrays or ``(x, y)`` pairs, a torch DataLoader.

    Each item is ``x`` or ``(x, y)`` (extra elements are ignored); torch tensors and other
    array-likes are converted with ``numpy.asarray``. The collection is iterated once per
    pass, in its own batch size.

    Parameters
    ----------
    batches : iterable
        Re-iterable batches (not a one-shot generator: a profile needs two passes).
    name : str
        Description.
    """

    def __init__(self, batches: object, name: str = "batches") -> None:
        if iter(batches) is batches:  # type: ignore[call-overload]
            raise InputError("a generator or iterator can be read only once, and a profile needs two passes: "
                             "pass a list of batches, a torch DataLoader, or arrays (x, y)")
        self._batches = batches
        self.name = name

    def __len__(self) -> int:
        dataset = getattr(self._batches, "dataset", None)  # torch DataLoader
        if dataset is not None and hasattr(dataset, "__len__"):
            return len(dataset)
        return 0  # unknown

    def batches(self, batch_size: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The collection's own batches as numpy arrays.

        Parameters
        ----------
        batch_size : int
            Ignored (the collection decides).

        Returns
        -------
        Iterator
            ``(x, y or None)`` pairs.
        """
        for i, item in enumerate(self._batches):  # type: ignore[attr-defined]
            if isinstance(item, (tuple, list)) and len(item) >= 1:
                x, y = item[0], item[1] if len(item) > 1 else None
            else:
                x, y = item, None
            x = _as_numpy(x, f"{self.name}: batch {i}: x")
            if x.ndim < 2 or x.shape[0] == 0:
                raise InputError(f"{self.name}: batch {i}: x has shape {x.shape}; need (batch, ...) with batch >= 1")
            if y is not None:
                y = _as_numpy(y, f"{self.name}: batch {i}: y")
                if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
                    raise InputError(f"{self.name}: batch {i}: y must be integer labels of shape ({x.shape[0]},), "
                                     f"got {y.dtype} {y.shape}")
                y = y.astype(np.int64)
            yield x, y

    def to_arrays(self) -> ArraySource:
        """All batches concatenated in memory.

        Returns
        -------
        ArraySource
            The data.
        """
        xs, ys = [], []
        for x, y in self.batches():
            xs.append(x)
            ys.append(y)
        if not xs:
            raise InputError(f"{self.name}: no batches")
        labelled = [y is not None for y in ys]
        if any(labelled) and not all(labelled):
            raise InputError(f"{self.name}: some batches have labels and some do not")
        return ArraySource(np.concatenate(xs), np.concatenate(ys) if all(labelled) else None, self.name)


def _as_numpy(value: object, what: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what}: dtype {arr.dtype} is not numeric")
    return arr


def as_source(data: object, name: str | None = None, preprocess: dict | None = None
              ) -> "ArraySource | BatchSource | RecordingSource":
    """Accept the ways people hold data: a source, arrays, ``(x, y)``, or re-iterable batches.

    Parameters
    ----------
    data : ArraySource, BatchSource, RecordingSource, numpy.ndarray, tuple or iterable
        ``x``; ``(x, y)`` or ``(x,)`` arrays; a list of batches or a torch DataLoader; a
        recording source; or a source spec string (see :func:`open_source`).
    name : str, optional
        Description.
    preprocess : dict, optional
        The preprocessing the model declares (``Runner.preprocess``): a spec string of pixels
        is read with it, and a recording opened with another one is refused.

    Returns
    -------
    ArraySource, BatchSource or RecordingSource
        Something with ``batches(batch_size)``.

    Raises
    ------
    InputError
        Anything else, named; a recording preprocessed otherwise than the model declares.
    """
    if isinstance(data, RecordingSource) and preprocess is not None:
        resolve_preprocess(data.preprocess, preprocess, "the model")  # the same, or refused with the differences
    if isinstance(data, (ArraySource, BatchSource, RecordingSource)):
        return data
    if isinstance(data, str):
        return open_source(data, preprocess if takes_preprocess(data) else None)
    if isinstance(data, np.ndarray) or (hasattr(data, "detach") and hasattr(data, "shape")):
        return ArraySource(_as_numpy(data, "x"), None, name or "arrays")
    if isinstance(data, tuple) and 1 <= len(data) <= 2 and all(
            isinstance(a, np.ndarray) or hasattr(a, "detach") or a is None for a in data):
        x = _as_numpy(data[0], "x")
        y = None if len(data) == 1 or data[1] is None else _as_numpy(data[1], "y")
        if y is not None:
            if y.dtype.kind not in "iu":
                raise InputError(f"y must be integer class labels, got {y.dtype}")
            y = y.astype(np.int64)
        return ArraySource(x, y, name or "arrays")
    if hasattr(data, "__iter__"):
        return BatchSource(data, name or type(data).__name__)
    raise InputError(f"cannot read data from a {type(data).__name__}: pass arrays x or (x, y), a list of batches, "
                     "a torch DataLoader, an ArraySource or a source spec like npz:FILE")
