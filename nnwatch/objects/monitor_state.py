"""Saving and loading an object monitor's state: no pickle, checked on load, written atomically.

One zip file (``.npz`` by convention) holding:

- ``header.json``: format version, members, classes, the detector's fingerprint and layout, the
  calibration settings;
- ``objects.npz`` and ``image.npz``: the objects' and the frames' profiles, in the profile format
  (:mod:`nnwatch.profile.store`, checksummed);
- ``calibration.npz`` (after calibration): the clean objects' member scores and classes, the
  sorted image-level and frame statistics, and the calibration frames' categories (the stream's
  class test; states written before it have none, and their stream runs the score test alone).

Loading rebuilds every table from these (the detectors are fitted on the profiles, the fused
verdict compiled from the scores, with the same seeds), so a loaded monitor gives exactly the
verdicts of the one saved.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import atomic_write_with
from ..calibration.frame_level import FrameCalibration
from ..calibration.separation import Separation
from ..errors import InputError, ModelMismatchError, ProfileError
from ..profile.store import load_profile, save_profile
from .object_monitor import IMAGE_MEMBER, ObjectMonitor
from .scorer import MemberScorer

FORMAT = "nnwatch-objects/1"


def save_object_monitor(monitor: ObjectMonitor, path: str | os.PathLike) -> None:
    """Write a fitted (and possibly calibrated) object monitor's state atomically.

    Parameters
    ----------
    monitor : ObjectMonitor
        Fitted with :meth:`~ObjectMonitor.fit`.
    path : path
        Destination file.

    Raises
    ------
    InputError
        The monitor is not fitted.
    """
    if not hasattr(monitor, "objects_"):
        raise InputError("fit the object monitor before saving it")
    calibrated = hasattr(monitor, "frames_")
    header: dict[str, Any] = {
        "format": FORMAT, "members": list(monitor.members), "n_classes": int(monitor.n_classes_),
        "max_samples": int(monitor.max_samples), "fingerprint": monitor.manifest.fingerprint,
        "layout": monitor.layout.to_dict(), "tensors": list(monitor.manifest.tensors), "calibrated": calibrated}
    if calibrated:
        choice = getattr(monitor, "member_choice_", None)
        header.update(alpha=monitor.alpha_, seed=monitor.seed_, min_class_samples=monitor.min_class_samples_,
                      fused_members=list(monitor.fused_members_),
                      member_choice=None if choice is None else choice.to_dict())
    with tempfile.TemporaryDirectory() as tmp:
        save_profile(monitor.objects_.profile_, Path(tmp) / "objects.npz")
        save_profile(monitor.image_.profile_, Path(tmp) / "image.npz")
        parts = {"objects.npz": (Path(tmp) / "objects.npz").read_bytes(),
                 "image.npz": (Path(tmp) / "image.npz").read_bytes()}
    if calibrated:
        buf = io.BytesIO()
        scores, classes = monitor.object_calibration_
        extra = {} if getattr(monitor, "frame_categories_", None) is None else {
            "frame_categories": monitor.frame_categories_}  # the stream's class test (states before it lack it)
        np.savez(buf, scores=scores, classes=classes, image=monitor.image_reference_,
                 frames=monitor.frames_.reference, **extra)
        parts["calibration.npz"] = buf.getvalue()

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr("header.json", json.dumps(header, sort_keys=True))
            for name, data in parts.items():
                z.writestr(name, data)

    atomic_write_with(path, write)


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, bytes]]:
    where = f"object monitor state {path}"
    if not Path(path).is_file():
        raise ProfileError(f"{where}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            header = json.loads(z.read("header.json"))
            parts = {n: z.read(n) for n in z.namelist() if n != "header.json"}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
        raise ProfileError(f"{where}: not an nnwatch object monitor file ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ProfileError(f"{where}: format {header.get('format') if isinstance(header, dict) else None!r}, "
                           f"expected {FORMAT!r}; profile the detector again")
    return header, parts


def is_object_state(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an object monitor state file (a zip whose header names this format).

    Parameters
    ----------
    path : path
        Any file.

    Returns
    -------
    bool
        True for a state written by :func:`save_object_monitor`.
    """
    try:
        _read(path)
    except ProfileError:
        return False
    return True


def describe_state(path: str | os.PathLike) -> dict[str, Any]:
    """What a state file holds, without the detector: its header and the profiled objects per class.

    Parameters
    ----------
    path : path
        File written by :func:`save_object_monitor`.

    Returns
    -------
    dict
        The header's fields plus ``class_counts`` (objects profiled per predicted class).

    Raises
    ------
    ProfileError
        Missing, damaged or foreign file.
    """
    header, parts = _read(path)
    if "objects.npz" not in parts:
        raise ProfileError(f"object monitor state {path}: objects.npz is missing")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "objects.npz").write_bytes(parts["objects.npz"])
        counts = load_profile(Path(tmp) / "objects.npz").header["class_counts"]
    return {**header, "class_counts": [int(c) for c in counts]}


def load_object_monitor(model: str | os.PathLike | bytes, path: str | os.PathLike, threads: int | None = 1,
                        providers: str | Sequence[str] = "cpu") -> ObjectMonitor:
    """An object monitor for ``model`` in the state saved at ``path``.

    Parameters
    ----------
    model : path or bytes
        The instrumented detector the state was made with.
    path : path
        File written by :func:`save_object_monitor`.
    threads : int or None
        onnxruntime intra-op threads.
    providers : str or sequence of str
        Where the detector runs (as :class:`ObjectMonitor`).

    Returns
    -------
    ObjectMonitor
        Fitted, and calibrated if the state was.

    Raises
    ------
    ProfileError
        Missing, damaged or foreign file.
    ModelMismatchError
        The state belongs to another detector or layout.
    """
    where = f"object monitor state {path}"
    header, parts = _read(path)
    monitor = ObjectMonitor(model, members=header["members"], threads=threads, max_samples=header["max_samples"],
                            providers=providers)
    if monitor.manifest.fingerprint != header["fingerprint"] or monitor.layout.to_dict() != header["layout"]:
        raise ModelMismatchError(f"{where} was made for another detector or layout (fingerprint "
                                 f"{header['fingerprint'][:12]}, layout {header['layout'].get('name')}); profile "
                                 "this detector again")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("objects.npz", "image.npz"):
            if name not in parts:
                raise ProfileError(f"{where}: {name} is missing")
            (Path(tmp) / name).write_bytes(parts[name])
        objects, image = load_profile(Path(tmp) / "objects.npz"), load_profile(Path(tmp) / "image.npz")
    monitor.n_classes_ = int(header["n_classes"])
    monitor.objects_ = MemberScorer(monitor.members).from_profile(objects)
    monitor.image_ = MemberScorer([IMAGE_MEMBER]).from_profile(image)
    if header.get("calibrated"):
        try:
            with np.load(io.BytesIO(parts["calibration.npz"]), allow_pickle=False) as c:
                scores, classes, image_ref, frames = c["scores"], c["classes"], c["image"], c["frames"]
                categories = c["frame_categories"] if "frame_categories" in c.files else None
        except (KeyError, ValueError, OSError) as e:
            raise ProfileError(f"{where}: calibration is damaged ({e}); calibrate again") from None
        if categories is not None:
            if (categories.ndim != 1 or categories.dtype.kind not in "iu"
                    or (categories.size and not 0 <= categories.min() <= categories.max() <= monitor.n_classes_)):
                raise ProfileError(f"{where}: calibration is damaged (frame categories outside "
                                   f"[0, {monitor.n_classes_}]); calibrate again")
            monitor.frame_categories_ = categories.astype(np.int64)
        fused = header.get("fused_members", header["members"])  # states before the choice fused every member
        if not (isinstance(fused, list) and fused and all(m in monitor.members for m in fused)):
            raise ProfileError(f"{where}: fused members {fused!r} are not among the members {monitor.members}; "
                               "calibrate again")
        monitor.set_object_calibration(scores, classes, image_ref, header["alpha"], header["seed"],
                                       header["min_class_samples"], fused_members=fused)
        record = header.get("member_choice")
        try:
            monitor.member_choice_ = None if record is None else Separation.from_dict(record)
        except (KeyError, TypeError, ValueError) as e:
            raise ProfileError(f"{where}: the fused members' record is damaged ({e!r}); calibrate again") from None
        monitor.frames_ = FrameCalibration(np.sort(np.asarray(frames, np.float64)), float(header["alpha"]))
    return monitor
