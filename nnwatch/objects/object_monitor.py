"""The object monitor: one onnxruntime call per batch, a verdict per object and per frame.

For an instrumented detector (:mod:`.instrument_detector`), each call returns the detector outputs and
the tapped maps. The outputs are read through the layout (:mod:`.detections`), each object's
box is averaged on every map (:mod:`.object_features`), and the object is scored by the member
detectors (:mod:`.scorer`): Mahalanobis and kNN on the pooled features of the last map, the
coverage family (nbc, kmnc) on all maps, per predicted class; and, where the layout gives class scores,
energy (VOS's score, without its training) and MSP on the object's class logits.

Calibration (clean frames only) splits the frames in two by a seeded permutation:

1. objects of the first half calibrate the members and their fused verdict
   (:mod:`nnwatch.calibration.fused_verdict`), by default with every class in one group: an
   object's p-value only ranks it for the frame statistic, whose own calibration gives the
   guarantee, and per-class p-values of a few dozen objects per class are too coarse to ever
   reach the frame threshold (about alpha / objects per frame); the frames' whole-image features calibrate
   an image-level Mahalanobis score (for frames without objects and faults of the whole frame);
2. frames of the second half calibrate the frame statistic, the smallest p-value of a frame
   (:mod:`nnwatch.calibration.frame_level`): a frame is flagged when any of its objects, or its
   image-level term, is, with ``P(frame flagged | clean) <= alpha``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from .._progress import Progress
from ..calibration.frame_level import FrameCalibration, frame_minimum
from ..calibration.fused_verdict import add_fusion, compile_fusion
from ..calibration.groups import CalibrationWarning, calibration_from_scores
from ..calibration.separation import Separation, choose_separating
from ..errors import InputError, NotFittedError
from ..kernels.conformal import conformal_p_values
from ..kernels.fusion import fused_statistic
from ..monitor.providers import resolve_providers
from ..monitor.runner import session_options
from .detections import Detections, class_logits, decode
from .object_features import frame_features, object_features
from .detector_manifest import DetectorManifest, read_manifest
from .member_choice import KINDS, altered_frames, matches_altered
from .scorer import LOGIT_MEMBERS, MemberScorer

DEFAULT_MEMBERS = ("mahalanobis", "knn", "nbc", "kmnc", "energy", "msp")
IMAGE_MEMBER = "mahalanobis"


@dataclass
class ObjectVerdicts:
    """Verdicts of a batch: a table of objects and one of frames.

    Attributes
    ----------
    objects : Detections
        The objects (frame, box, class, detector score).
    object_p : numpy.ndarray
        float64 ``(M,)`` each object's conformal p-value (fused members, its predicted class).
    object_flag : numpy.ndarray
        bool ``(M,)`` the object alone would flag its frame (frame-level threshold).
    members : numpy.ndarray
        float64 ``(M, D)`` member scores, columns :attr:`member_names`.
    member_names : list of str
        The member detectors that ran (by default those of the fused verdict;
        :meth:`ObjectMonitor.score`).
    frame_p : numpy.ndarray
        float64 ``(F,)`` frame p-values.
    frame_flag : numpy.ndarray
        bool ``(F,)``: flagged frames.
    image_p : numpy.ndarray
        float64 ``(F,)`` the image-level term's p-value.
    image_only : numpy.ndarray
        bool ``(F,)``: frames without objects, judged by the image-level term alone.
    frame_statistic : numpy.ndarray
        float64 ``(F,)`` the frame statistic ``frame_p`` is computed from: the smallest of its
        objects' and its image term's p-values (lower = more anomalous).
    frame_category : numpy.ndarray
        int64 ``(F,)`` the predicted class of each frame's highest-scoring object, or the
        number of classes for a frame without objects (:meth:`Detections.top_classes`; what
        the stream's class test follows).
    """

    objects: Detections
    object_p: np.ndarray
    object_flag: np.ndarray
    members: np.ndarray
    member_names: list[str]
    frame_p: np.ndarray
    frame_flag: np.ndarray
    image_p: np.ndarray
    image_only: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    frame_statistic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_category: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def object_rows(self) -> list[dict[str, Any]]:
        """One dict per object (for CSV and JSON output)."""
        d = self.objects
        return [{"frame": int(d.frame[i]), "x1": float(d.boxes[i, 0]), "y1": float(d.boxes[i, 1]),
                 "x2": float(d.boxes[i, 2]), "y2": float(d.boxes[i, 3]), "class": int(d.cls[i]),
                 "score": float(d.score[i]), "p": float(self.object_p[i]), "flag": bool(self.object_flag[i]),
                 **{m: float(self.members[i, k]) for k, m in enumerate(self.member_names)}}
                for i in range(len(d))]


def merge(parts: Sequence[Detections], batch_size: int) -> Detections:
    """Detections of consecutive batches as one table (frame indices made global).

    Parameters
    ----------
    parts : sequence of Detections
        One per batch, each of ``batch_size`` frames but the last.
    batch_size : int
        Frames per batch.

    Returns
    -------
    Detections
        The concatenation.
    """
    scores = [p.class_scores for p in parts]
    return Detections(
        frame=np.concatenate([p.frame + i * batch_size for i, p in enumerate(parts)]).astype(np.int64),
        boxes=np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
        score=np.concatenate([p.score for p in parts]),
        cls=np.concatenate([p.cls for p in parts]),
        class_scores=None if any(s is None for s in scores) else np.concatenate(scores),
        n_frames=sum(p.n_frames for p in parts), clipped=sum(p.clipped for p in parts),
        skipped=sum(p.skipped for p in parts))


def _image_p(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{ref >= s}) / (n + 1)`` against sorted clean scores (NaN counts as +inf)."""
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=np.inf)
    at_least = reference.size - np.searchsorted(reference, s, side="left")
    return (1.0 + at_least) / (reference.size + 1.0)


class ObjectMonitor:
    """Per-object and per-frame verdicts of an instrumented ONNX detector.

    Parameters
    ----------
    model : path or bytes
        A detector instrumented by :func:`nnwatch.objects.instrument_detector.instrument_detector`.
    members : sequence of str, optional
        Object member detectors; default :data:`DEFAULT_MEMBERS` (without the logit members
        when the layout gives no class scores).
    threads : int or None
        onnxruntime intra-op threads (1 suits batch-1 work on a shared machine).
    max_samples : int
        RoIAlign sample points per axis.
    providers : "cpu", "auto", "cuda" or a sequence of provider names
        Where the detector runs (:func:`nnwatch.monitor.providers.resolve_providers`); the
        maps come back to the host, where the objects are pooled and scored.
    """

    def __init__(self, model: str | os.PathLike | bytes, members: Sequence[str] | None = None,
                 threads: int | None = 1, max_samples: int = 8, providers: str | Sequence[str] = "cpu") -> None:
        self.providers = resolve_providers(providers)  # an unavailable provider is refused before the model loads
        data = model if isinstance(model, bytes) else self._read(model)
        self.model_bytes = data
        try:
            self.session = ort.InferenceSession(data, session_options(threads), providers=self.providers)
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            raise InputError(f"onnxruntime cannot load the detector ({type(e).__name__}: {e})") from None
        manifest = read_manifest(self.session.get_modelmeta().custom_metadata_map)
        if manifest is None:
            raise InputError("this model is not an instrumented detector; run nnwatch instrument MODEL --layout PRESET "
                             "--out FILE first")
        self.manifest: DetectorManifest = manifest
        self.layout = manifest.layout
        wanted = list(members) if members is not None else [
            m for m in DEFAULT_MEMBERS if self.layout.has_class_scores or m not in LOGIT_MEMBERS]
        if not self.layout.has_class_scores:
            needs = [m for m in wanted if m.split(":")[0] in LOGIT_MEMBERS]
            if needs:
                raise InputError(f"members {needs} read class logits; layout {self.layout.name!r} gives none per object")
        self.members = wanted
        self.max_samples = int(max_samples)
        self._names = list(manifest.outputs) + list(manifest.maps)
        shape = self.session.get_inputs()[0].shape
        dim = shape[0]
        self.fixed_batch: int | None = dim if isinstance(dim, int) and dim > 0 else None  # None: any batch
        channels = shape[1] if len(shape) == 4 else None
        self.channels: int | None = channels if isinstance(channels, int) and channels > 0 else None  # None: any

    @staticmethod
    def _read(path: str | os.PathLike) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise InputError(f"cannot read detector {path}: {e.strerror}") from None

    def _check(self, x: object) -> np.ndarray:
        """Frames as float32 ``(B, C, H, W)`` of the detector's input size and channels (numbers of
        any real dtype are cast, as the classifier monitor casts its inputs).
        """
        arr = np.asarray(x)
        h, w = self.manifest.input_size
        c = self.channels if self.channels is not None else "C"
        if (arr.ndim != 4 or arr.shape[2:] != (h, w) or arr.dtype.kind not in "fiu"
                or (self.channels is not None and arr.shape[1] != self.channels)):
            raise InputError(f"frames must be numbers (B, {c}, {h}, {w}), got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr, np.float32)

    def infer(self, x: object) -> tuple[Detections, list[np.ndarray]]:
        """One onnxruntime call: the batch's objects and its tapped maps.

        Parameters
        ----------
        x : array_like
            float ``(B, C, H, W)`` frames.

        Returns
        -------
        tuple
            ``(Detections, maps)``.
        """
        arr = self._check(x)
        out = self._run(arr)
        k = len(self.manifest.outputs)
        det = decode(out[:k], self.layout, self.manifest.input_size)
        return det, [np.asarray(m, np.float32) for m in out[k:]]

    def _run(self, arr: np.ndarray) -> list[np.ndarray]:
        """The session's outputs for a batch; a model exported with a fixed batch runs it in
        chunks of that size (the last one padded with its final frame, whose copies are dropped).
        """
        fixed = self.fixed_batch
        if fixed is None or len(arr) == fixed:
            return self.session.run(self._names, {self.manifest.input_name: arr})
        parts = []
        for lo in range(0, len(arr), fixed):
            chunk = arr[lo:lo + fixed]
            if len(chunk) < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])
            parts.append(self.session.run(self._names, {self.manifest.input_name: chunk}))
        return [np.concatenate([p[i] for p in parts])[: len(arr)] for i in range(len(self._names))]


    def _logits(self, det: Detections) -> np.ndarray:
        """The objects' class logits; one zero column where the layout gives none (no member reads them)."""
        if det.class_scores is None:
            return np.zeros((len(det), 1), np.float32)
        return class_logits(det.class_scores, self.layout.class_scores)

    def _collect(self, x: object, batch_size: int, what: str, progress: bool) -> dict[str, Any]:
        arr = self._check(x)
        parts: dict[str, list] = {"layers": [], "frame_layers": [], "logits": [], "cls": [], "frame": [],
                                  "det": []}
        bar = Progress(len(arr), what, progress)
        for lo in range(0, len(arr), batch_size):
            det, maps = self.infer(arr[lo:lo + batch_size])
            parts["layers"].append(object_features(maps, det, self.manifest.input_size, self.max_samples))
            parts["frame_layers"].append(frame_features(maps))
            parts["logits"].append(self._logits(det))
            parts["cls"].append(det.cls)
            parts["frame"].append(det.frame + lo)
            parts["det"].append(det)
            bar.update(len(maps[0]))
        bar.close()
        if len(parts["det"]) == 1:  # one batch (a live call): its parts as they are
            return {"layers": parts["layers"][0], "frame_layers": parts["frame_layers"][0],
                    "logits": parts["logits"][0], "cls": parts["cls"][0], "frame": parts["frame"][0],
                    "n_frames": len(arr), "det": parts["det"][0]}
        n_layers = len(self.manifest.maps)
        return {"layers": [np.concatenate([p[i] for p in parts["layers"]]) for i in range(n_layers)],
                "frame_layers": [np.concatenate([p[i] for p in parts["frame_layers"]]) for i in range(n_layers)],
                "logits": np.concatenate(parts["logits"]) if parts["logits"] else np.zeros((0, 1), np.float32),
                "cls": np.concatenate(parts["cls"]), "frame": np.concatenate(parts["frame"]), "n_frames": len(arr),
                "det": merge(parts["det"], batch_size)}

    def fit(self, x: object, batch_size: int = 64, progress: bool = False) -> "ObjectMonitor":
        """Profile the objects of trusted frames (per predicted class) and the frames themselves.

        Parameters
        ----------
        x : array_like
            Trusted frames ``(N, C, H, W)``.
        batch_size : int
            Frames per call.
        progress : bool
            A progress line on stderr.

        Returns
        -------
        ObjectMonitor
            self.
        """
        c = self._collect(x, batch_size, "profiling objects (frames)", progress)
        if len(c["cls"]) < 2:
            raise InputError(f"the detector found {len(c['cls'])} objects in the trusted frames; profiling needs objects")
        n_classes = c["logits"].shape[1] if self.layout.has_class_scores else int(c["cls"].max()) + 1
        self.n_classes_ = n_classes
        self.objects_ = MemberScorer(self.members).fit(c["layers"], c["cls"], n_classes)
        self.image_ = MemberScorer([IMAGE_MEMBER]).fit(c["frame_layers"], np.zeros(c["n_frames"], np.int64), 1)
        return self

    def _scores(self, c: dict[str, Any], only: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        logits = c["logits"]
        if logits.shape[1] != self.n_classes_:
            logits = np.zeros((len(c["cls"]), self.n_classes_), np.float32)
        cls = np.clip(c["cls"], 0, self.n_classes_ - 1)
        objects = self.objects_.score(c["layers"], logits, cls, only=only)
        image = self.image_.score(c["frame_layers"], np.zeros((c["n_frames"], 1), np.float32),
                                  np.zeros(c["n_frames"], np.int64))[:, 0]
        return objects, image

    def calibrate(self, x: object, alpha: float = 0.05, seed: int = 0, batch_size: int = 64,
                  min_class_samples: int | None = None, progress: bool = False,
                  fused_members: str | Sequence[str] = "auto") -> "ObjectMonitor":
        """Calibrate object and frame verdicts on clean frames (not the profiling ones).

        Parameters
        ----------
        x : array_like
            Clean frames ``(N, C, H, W)``.
        alpha : float
            Target false-alarm rate of frames.
        seed : int
            Seed of the frame split.
        batch_size : int
            Frames per call.
        min_class_samples : int or None
            Fewest calibration objects for a class's own threshold; None (the default) pools
            every class in one group (see the module's notes).
        progress : bool
            A progress line on stderr.
        fused_members : "auto", "all" or sequence of str
            Members of the fused verdict: ``"auto"`` chooses them from the first half's objects and
            synthetic anomalies made from them (:mod:`.member_choice`; the choice is
            ``member_choice_``; with no synthetic objects to compare, every member fuses, with a
            :class:`CalibrationWarning`), ``"all"`` fuses every member, or the names to fuse.

        Returns
        -------
        ObjectMonitor
            self.

        Raises
        ------
        InputError
            Bad frames, or fused members that are not members.
        """
        if not hasattr(self, "objects_"):
            raise NotFittedError("fit the object monitor on trusted frames before calibrating")
        if isinstance(fused_members, str):
            if fused_members not in ("auto", "all"):
                raise InputError(f"fused_members must be 'auto', 'all' or member names, got {fused_members!r}")
        else:
            fused_members = list(dict.fromkeys(fused_members))
            unknown = [m for m in fused_members if m not in self.members]
            if not fused_members or unknown:
                raise InputError(f"fused members must be some of this monitor's members {self.members}; "
                                 f"not members: {unknown or 'none given'}")
        arr = self._check(x)
        c = self._collect(arr, batch_size, "calibrating (frames)", progress)
        objects, image = self._scores(c)
        first = np.zeros(c["n_frames"], bool)
        first[np.random.default_rng(seed).permutation(c["n_frames"])[: c["n_frames"] // 2]] = True
        in_first = first[c["frame"]]
        cls = np.clip(c["cls"], 0, self.n_classes_ - 1)
        self.member_choice_: Separation | None = None
        chosen = list(self.members) if fused_members in ("all", "auto") else list(fused_members)
        if fused_members == "auto" and len(self.members) > 1:
            self.member_choice_ = self._choose_members(arr[first], c["det"], in_first, np.cumsum(first) - 1,
                                                       objects[in_first], seed, batch_size, progress)
            if self.member_choice_ is not None:
                chosen = self.member_choice_.members
            else:  # no objects to alter, or none found again
                warnings.warn(CalibrationWarning("fused members not chosen: no synthetic objects to compare (the "
                                                 "detector found none of the altered objects again); every member "
                                                 "fuses"), stacklevel=2)
        self.set_object_calibration(objects[in_first], cls[in_first], np.sort(image[first]), alpha, seed,
                                    min_class_samples, fused_members=chosen)
        p_obj = self._object_p(objects[~in_first], cls[~in_first])
        local = np.cumsum(~first) - 1  # frame index within the second half
        stat = frame_minimum(p_obj, local[c["frame"][~in_first]], _image_p(self.image_reference_, image[~first]))
        self.frames_ = FrameCalibration.fit(stat, alpha)
        # the same frames' categories: the reference of the stream's class test
        self.frame_categories_ = c["det"].top_classes(self.n_classes_)[~first]
        return self

    def _choose_members(self, x: np.ndarray, det: Detections, keep: np.ndarray, local: np.ndarray,
                        clean: np.ndarray, seed: int, batch_size: int, progress: bool) -> Separation | None:
        """Fused members from the objects of frames ``x`` (objects ``keep`` of ``det``, frames renumbered
        by ``local``) and synthetic anomalies made from them (:mod:`.member_choice`).
        """
        mine = Detections(frame=local[det.frame[keep]], boxes=det.boxes[keep], score=det.score[keep],
                          cls=det.cls[keep], class_scores=None, n_frames=len(x))
        synthetic = {}
        for i, kind in enumerate(KINDS):
            altered, which = altered_frames(x, mine, kind, seed=seed + i)
            c = self._collect(altered, batch_size, f"choosing fused members ({kind} objects, frames)", progress)
            scores, _ = self._scores(c)
            synthetic[kind] = scores[matches_altered(c["det"], mine, which)]
        if not len(clean) or not any(len(v) for v in synthetic.values()):
            return None
        return choose_separating(self.members, clean, synthetic)

    def set_object_calibration(self, scores: np.ndarray, classes: np.ndarray, image_reference: np.ndarray,
                               alpha: float, seed: int, min_class_samples: int | None,
                               fused_members: Sequence[str] | None = None) -> None:
        """Compile the object verdicts from clean objects' member scores (stage 1 of calibration).

        Parameters
        ----------
        scores : numpy.ndarray
            ``(M, members)`` clean objects' scores.
        classes : numpy.ndarray
            ``(M,)`` their predicted classes.
        image_reference : numpy.ndarray
            Sorted image-level scores of the same frames.
        alpha : float
            Target rate.
        seed : int
            Seed of the fusion's A/B split.
        min_class_samples : int or None
            Fewest objects for a class's own threshold; None pools every class.
        fused_members : sequence of str, optional
            Members of the fused verdict (default: every member).
        """
        pooled = min_class_samples is None
        self.n_groups_ = 1 if pooled else self.n_classes_
        groups = np.zeros(len(classes), np.int64) if pooled else np.asarray(classes, np.int64)
        cal = calibration_from_scores(self.members, scores, groups, self.n_groups_, alpha,
                                      1 if pooled else min_class_samples, warn=False)
        self.fused_members_ = list(fused_members) if fused_members is not None else list(self.members)
        add_fusion(cal, self.members, members=self.fused_members_, seed=seed)
        self.fusion_, self.fused_tables_ = compile_fusion(cal, self.members, self.n_groups_)
        self.object_calibration_ = (np.asarray(scores, np.float64), np.asarray(classes, np.int64))
        self.image_reference_ = np.asarray(image_reference, np.float64)
        self.alpha_, self.seed_ = float(alpha), int(seed)
        self.min_class_samples_ = None if pooled else int(min_class_samples)

    def _fused_columns(self) -> list[int]:
        """Indices in :attr:`members` of the fused verdict's members, in member order."""
        fused = set(self.fused_members_)
        return [k for k, m in enumerate(self.members) if m in fused]

    def _object_p(self, scores: np.ndarray, cls: np.ndarray) -> np.ndarray:
        if len(cls) == 0:
            return np.zeros(0)
        if self.n_groups_ == 1:
            cls = np.zeros(len(cls), np.int64)
        t = fused_statistic(np.ascontiguousarray(scores, np.float64), np.ascontiguousarray(cls, np.int64), self.fusion_)
        p, _ = conformal_p_values(t[:, None], cls, self.fused_tables_)
        return p[:, 0]

    def score(self, x: object, batch_size: int = 64, members: str = "fused") -> ObjectVerdicts:
        """Verdicts for a batch of frames.

        Parameters
        ----------
        x : array_like
            Frames ``(B, C, H, W)``.
        batch_size : int
            Frames per call.
        members : {"fused", "all"}
            Member detectors to run: ``"fused"`` (the default) runs only the members of the
            fused verdict, the only ones the verdicts depend on; ``"all"`` runs every member, for
            evaluation and for screening output that reports each member's score. The verdicts
            are the same either way; ``members`` and ``member_names`` hold the members that ran.

        Returns
        -------
        ObjectVerdicts
            The object and frame tables.

        Raises
        ------
        InputError
            Bad frames, or ``members`` neither ``"fused"`` nor ``"all"``.
        """
        if not hasattr(self, "frames_"):
            raise NotFittedError("calibrate the object monitor on clean frames before scoring")
        if members not in ("fused", "all"):
            raise InputError(f"members must be 'fused' or 'all', got {members!r}")
        arr = self._check(x)
        ran = list(range(len(self.members))) if members == "all" else self._fused_columns()
        c = self._collect(arr, batch_size, "scoring (frames)", False)
        objects, image = self._scores(c, only=ran)
        cls = np.clip(c["cls"], 0, self.n_classes_ - 1)
        p_obj = self._object_p(objects, cls)
        image_p = _image_p(self.image_reference_, image)
        stat = frame_minimum(p_obj, c["frame"], image_p)
        frame_p = self.frames_.p_values(stat)
        return ObjectVerdicts(objects=c["det"], object_p=p_obj, object_flag=self.frames_.flags(p_obj),
                              members=objects[:, ran], member_names=[self.members[k] for k in ran], frame_p=frame_p,
                              frame_flag=frame_p <= self.frames_.alpha, image_p=image_p,  # FrameCalibration.flags
                              image_only=np.bincount(c["frame"], minlength=c["n_frames"]) == 0,
                              frame_statistic=np.asarray(stat, np.float64),
                              frame_category=c["det"].top_classes(self.n_classes_))
