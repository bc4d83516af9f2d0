"""``images:DIR`` and ``images:MANIFEST.csv``: PNG and JPEG files, in a fixed sorted order.

- A folder is listed recursively (``.png``, ``.jpg``, ``.jpeg``, any case; hidden files and
  folders left out), sorted by path relative to the folder. When every image sits inside a top-level subfolder, the folder is an
  ImageFolder layout (as torchvision's): the sorted subfolder names (hidden ones aside) are the
  classes ``0 .. C-1`` (kept in :attr:`ImageSource.classes`) and each image's label is its
  subfolder's index; a class folder without images is refused, since it would shift the labels.
  Otherwise the images are unlabelled.
- A ``.csv`` manifest has a header with columns ``path`` and ``label`` (label may be empty for
  every row, then the source is unlabelled); paths are relative to the CSV's folder; the rows'
  order is kept.

Ids are ``{"path": relative path}``; a file that cannot be decoded is skipped (warned once).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .pixels import CorruptFrame, decode_file
from .preprocess import Preprocess
from .recording import Frame, RecordingSource

EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageSource(RecordingSource):
    """Images from a folder or a CSV manifest.

    Parameters
    ----------
    path : str or Path
        Folder, or ``.csv`` manifest.
    preprocess : Preprocess, str, dict or None
        Declared preprocessing.
    """

    def __init__(self, path: str | Path, preprocess: Preprocess | str | dict | None = None) -> None:
        super().__init__(f"images:{path}", preprocess)
        root = Path(path)
        if root.is_dir():
            self.root = root
            self.files, self.labels, self.classes = _list_folder(root)
        elif root.is_file() and root.suffix.lower() == ".csv":
            self.root = root.parent
            self.files, self.labels = _read_manifest(root)
            self.classes = None
        elif root.exists():
            raise InputError(f"images:{path} is neither a folder nor a .csv manifest (columns path,label)")
        else:
            raise InputError(f"images:{path} does not exist")

    def _count(self) -> int:
        return len(self.files)

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        for rel, label in zip(self.files[start:stop], self.labels[start:stop]):
            frame_id = {"path": rel}
            try:
                pixels = decode_file(self.root / rel, f"images: {rel}")
            except CorruptFrame as exc:
                yield Frame(frame_id, None, label, str(exc))
                continue
            yield Frame(frame_id, pixels, label)


def _walk(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the image files below ``root``, hidden files and folders left out.

    ``os.walk`` reads each folder's entries with their types (one ``getdents``, no ``stat`` per
    file): listing 10,000 files costs milliseconds, not a ``stat`` each.
    """
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS:
                yield prefix + name


def _list_folder(root: Path) -> tuple[list[str], list[int | None], list[str] | None]:
    files = sorted(_walk(root))
    if not files:
        raise InputError(f"images:{root}: no {', '.join(EXTENSIONS)} files in the folder or below it")
    if all("/" in f for f in files):
        # As torchvision's ImageFolder: every subfolder is a class (hidden ones aside), so that the
        # labels match a model trained on the same layout; an empty class folder would shift them.
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        used = {f.split("/", 1)[0] for f in files}
        empty = [c for c in classes if c not in used]
        if empty:
            raise InputError(f"images:{root}: class folders {', '.join(empty)} hold no {', '.join(EXTENSIONS)} "
                             "files; every subfolder is a class (labels 0..C-1 in sorted order, as torchvision's "
                             "ImageFolder), so an empty one would shift the labels: add its images or remove it")
        index = {name: i for i, name in enumerate(classes)}
        return files, [index[f.split("/", 1)[0]] for f in files], classes
    return files, [None] * len(files), None


def _read_manifest(path: Path) -> tuple[list[str], list[int | None]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
            header = rows and list(rows[0].keys())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"images:{path}: cannot read the manifest: {exc}") from None
    if not rows:
        raise InputError(f"images:{path}: the manifest has no rows (needs a header path,label and one row per image)")
    if "path" not in (header or []):
        raise InputError(f"images:{path}: the manifest needs a column 'path' (and 'label'); found {header}")
    files, labels = [], []
    for line, row in enumerate(rows, start=2):
        rel = (row.get("path") or "").strip()
        if not rel:
            raise InputError(f"images:{path}: line {line} has an empty path")
        if Path(rel).suffix.lower() not in EXTENSIONS:
            raise InputError(f"images:{path}: line {line}: {rel} is not a {', '.join(EXTENSIONS)} file")
        text = (row.get("label") or "").strip()
        try:
            label = int(text) if text else None
        except ValueError:
            raise InputError(f"images:{path}: line {line}: label {text!r} is not an integer class index") from None
        if label is not None and label < 0:
            raise InputError(f"images:{path}: line {line}: label {label} is negative")
        files.append(rel)
        labels.append(label)
    given = [v is not None for v in labels]
    if any(given) and not all(given):
        raise InputError(f"images:{path}: {given.count(False)} rows have no label and {given.count(True)} have one; "
                         "label every row or none")
    missing = [f for f in files if not (path.parent / f).is_file()]
    if missing:
        raise InputError(f"images:{path}: {len(missing)} listed files do not exist (paths are relative to the CSV's "
                         f"folder), e.g. {', '.join(missing[:3])}")
    return files, labels
