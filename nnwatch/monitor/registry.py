"""Detector names and the classes behind them: the built-in ones listed here, users' own added.

The built-in detectors are listed explicitly (no registration by import side effect): this
module imports the detector modules, which import only :mod:`nnwatch.monitor.detector` (the
protocol). :func:`register` adds a user's detector class and refuses a name already taken.
"""

from __future__ import annotations

from .._validate import unknown_name
from ..errors import InputError
from .detector import Detector
from .detectors.baselines import Energy, Mahalanobis, MaxLogit, MaxSoftmax
from .detectors.fdbd import DecisionBoundaryDistance
from .detectors.features import DeepKNN, OutsideTheBox
from .detectors.fused import FusedVerdict
from .detectors.gen import GeneralizedEntropy
from .detectors.layers import LayerMahalanobis
from .detectors.nci import NeuralCollapse
from .detectors.neuron_coverage import (
    BoundaryCoverage,
    BoundaryExcess,
    CombinedCoverage,
    KMultisectionCoverage,
    NeuronCoverage,
    TopKCoverage,
)
from .detectors.react import ReAct
from .detectors.rmd import RelativeMahalanobis
from .detectors.shaping import ActivationShaping, Scale
from .detectors.vim import VirtualLogit

BUILT_IN: tuple[type[Detector], ...] = (
    NeuronCoverage, KMultisectionCoverage, TopKCoverage, BoundaryCoverage, BoundaryExcess, CombinedCoverage,
    MaxSoftmax, MaxLogit, Energy, Mahalanobis, RelativeMahalanobis, LayerMahalanobis, DeepKNN, OutsideTheBox,
    GeneralizedEntropy, ReAct, ActivationShaping, Scale, VirtualLogit, DecisionBoundaryDistance, NeuralCollapse,
    FusedVerdict)

REGISTRY: dict[str, type[Detector]] = {cls.name: cls for cls in BUILT_IN}
if len(REGISTRY) != len(BUILT_IN):  # two built-in classes with one name: a programming error, caught at import
    raise RuntimeError("two built-in detectors share a name")


def register(cls: type[Detector]) -> type[Detector]:
    """Add a detector class under its ``name`` (usable as a class decorator).

    Parameters
    ----------
    cls : type
        A :class:`~nnwatch.monitor.detector.Detector` subclass with a ``name``.

    Returns
    -------
    type
        The class.

    Raises
    ------
    InputError
        Not a Detector subclass, no name, or a name already registered (built-in or not).
    """
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise InputError(f"register() takes a Detector subclass, got {cls!r}")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name:
        raise InputError(f"{cls.__name__} has no name: set a class attribute name = '...'")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise InputError(f"detector name {name!r} is taken by {REGISTRY[name].__name__}; choose another name")
    REGISTRY[name] = cls
    return cls


def make_detector(name: str) -> Detector:
    """Instantiate a registered detector.

    Parameters
    ----------
    name : str
        Registered name.

    Returns
    -------
    Detector
        New, unfitted detector.

    Raises
    ------
    InputError
        Unknown name (lists the registered ones).
    """
    if name not in REGISTRY:
        raise unknown_name("detector", name, REGISTRY)
    return REGISTRY[name]()
