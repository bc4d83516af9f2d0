"""Build a profile by running an instrumented model over trusted data (two streaming passes)."""

from __future__ import annotations

import os

import numpy as np

from .._progress import Progress
from .._validate import check_labels
from ..errors import InputError
from ..kernels.layout import unpack_layers
from ..profile.builder import ProfileBuilder
from ..profile.overlap import input_hashes, sketch_to_json, sketch_update
from ..profile.schema import Profile, channel_stats, check_rate, input_stats, merge_channel_stats, merge_input_stats
from ..sources import ArraySource, as_source
from .detectors.baselines import log_softmax
from .runner import Runner


def trusted_labels(logits: np.ndarray, y: np.ndarray | None, min_confidence: float) -> np.ndarray:
    """Which samples enter the profile, and as which class.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(B, K)``.
    y : numpy.ndarray or None
        True labels; without them (or where a label is negative: unknown) the predicted
        class is trusted.
    min_confidence : float
        Minimum softmax probability of the predicted class.

    Returns
    -------
    numpy.ndarray
        int64 ``(B,)``: class, or -1 for samples left out.
    """
    pred = np.argmax(logits, axis=1)
    conf = np.exp(log_softmax(logits).max(axis=1))
    keep = conf >= min_confidence
    if y is not None:
        keep &= (pred == y) | (y < 0)
    return np.where(keep, pred, -1).astype(np.int64)


def build_profile(model: str | os.PathLike | Runner, source: object, batch_size: int = 256,
                  k_sections: int = 10, k_top: int = 3, threshold: str | float = "mean",
                  min_confidence: float = 0.0, rare_rate: float = 0.01, progress: bool = False) -> Profile:
    """Two streaming passes over ``source`` through the instrumented model.

    Parameters
    ----------
    model : path or Runner
        Instrumented model.
    source : ArraySource, arrays or batches
        Trusted training data (``y`` present: only correctly classified samples count): an
        ArraySource, ``x`` or ``(x, y)`` arrays, re-iterable batches (a list, a torch
        DataLoader) or a source spec; see :func:`nnwatch.sources.as_source`.
    batch_size : int
        Samples per onnxruntime call.
    k_sections : int
        k of k-multisection coverage.
    k_top : int
        k of top-k coverage.
    threshold : "mean" or float
        Neuron-coverage activation threshold.
    min_confidence : float
        Minimum softmax confidence of a trusted sample.
    rare_rate : float
        Default rarity rate recorded in the profile for monitors.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Profile
        The profile.
    """
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    check_rate(rare_rate)
    runner = model if isinstance(model, Runner) else Runner(model)
    source = as_source(source, preprocess=runner.preprocess)  # pixels read as the model declares
    man = runner.manifest
    for name, size in zip(man.layer_names, man.layer_sizes):
        if int(k_top) > size:
            raise InputError(f"k_top={k_top} is larger than layer {name!r} ({size} neurons); top-k coverage needs "
                             f"k_top <= {min(man.layer_sizes)}, the smallest monitored layer")
    feature_layer = man.layer_names.index(man.penultimate) if man.penultimate in man.layer_names else None
    builder = ProfileBuilder(man.layer_sizes, runner.n_classes, k_sections=k_sections, k_top=k_top,
                             threshold=threshold, feature_layer=feature_layer)
    if not 0.0 <= min_confidence <= 1.0:
        raise InputError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if isinstance(source, ArraySource) and source.y is not None:  # before any pass, not after one
        check_labels(source.y, runner.n_classes, source.name)
    inputs: dict[str, float] | None = input_stats(np.zeros(0))
    channels: dict | None = {}  # per-channel statistics of image inputs
    sketch: np.ndarray | None = None
    for phase in (1, 2):
        bar = Progress(len(source), f"profile pass {phase}/2", progress)
        for x, y in source.batches(batch_size):
            arr = runner.check_input(x)
            if phase == 1:
                if y is not None:
                    check_labels(y, runner.n_classes, source.name)
                inputs = merge_input_stats(inputs, input_stats(arr))
                channels = merge_channel_stats(channels, channel_stats(arr))
                sketch = sketch_update(sketch, input_hashes(arr))
            ws = runner.workspace(arr.shape[0])
            runner.run(arr, ws)
            labels = trusted_labels(ws.logits, y, min_confidence)
            layers = unpack_layers(ws.buf, ws.batch, runner.offsets)
            if phase == 1:
                builder.update_ranges(layers, labels)
            else:
                builder.update_sections(layers, labels)
            bar.update(arr.shape[0])
        bar.close()
        if phase == 1:
            builder.finish_ranges()
    profile = builder.build(man.fingerprint, man.layer_names, reduction=manifest_reduction(man), dataset=source.name,
                            min_confidence=min_confidence)
    profile.header["rare_rate"] = check_rate(rare_rate)
    profile.header["input_stats"] = inputs
    if channels:
        profile.header["input_channel_stats"] = channels
    preprocess = getattr(source, "preprocess", None)  # a recording: how its frames became the model's input
    if preprocess is not None:
        profile.header["preprocess"] = preprocess.to_json()
    span = source.span() if hasattr(source, "span") else None  # the recording and frames profiled
    if span is not None:
        profile.header["profiled_on"] = span
    if sketch is not None:
        profile.header["input_sketch"] = sketch_to_json(sketch)
    return profile


def manifest_reduction(manifest) -> str:  # type: ignore[no-untyped-def]
    """How the manifest's taps reduce feature maps, as recorded in a profile header.

    Parameters
    ----------
    manifest : TapManifest
        The model's taps.

    Returns
    -------
    str
        ``"mean"``/``"max"`` when all reduced taps agree, ``"none"`` or ``"mixed"``.
    """
    kinds = {t.reduction for t in manifest.taps if t.reduction != "none"}
    return kinds.pop() if len(kinds) == 1 else ("none" if not kinds else "mixed")
