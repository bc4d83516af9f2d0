"""Detector names and the classes behind them: the built-in ones listed here, users' own added.

The built-in detectors are listed explicitly (no registration by import side effect): this
module imports the detector modules, which import only :mod:`nnwatch.monitor.detector` (the
protocol). :func:`register` adds a user's detector class and refuses a name already taken.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._validate import unknown_name
from ..errors import InputError
from .detector import Detector
from .detectors.baselines import Energy, Mahalanobis, MaxLogit, MaxSoftmax
from .detectors.doctor import Doctor
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
    Doctor, FusedVerdict)

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


def detector_parameters(name: str) -> dict[str, Any]:
    """The parameters a registered detector takes, with their defaults.

    Parameters
    ----------
    name : str
        Registered name.

    Returns
    -------
    dict
        ``{parameter: default}`` (``inspect.Parameter.empty`` where there is none).

    Raises
    ------
    InputError
        Unknown name.
    """
    if name not in REGISTRY:
        raise unknown_name("detector", name, REGISTRY)
    signature = inspect.signature(REGISTRY[name].__init__)
    return {p.name: p.default for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def make_detector(name: str, **params: Any) -> Detector:
    """Instantiate a registered detector with its parameters.

    Parameters
    ----------
    name : str
        Registered name.
    **params
        The detector's parameters (e.g. ``make_detector("react", percentile=95)``); see
        :func:`detector_parameters`.

    Returns
    -------
    Detector
        New, unfitted detector.

    Raises
    ------
    InputError
        Unknown name (lists the registered ones), a parameter the detector does not take (lists
        the ones it does), or a value it refuses.
    """
    accepted = detector_parameters(name)
    unknown = [k for k in params if k not in accepted]
    if unknown:
        takes = ", ".join(f"{k}={v!r}" if v is not inspect.Parameter.empty else k for k, v in accepted.items())
        raise InputError(f"detector {name!r} takes no parameter {', '.join(map(repr, unknown))}; it takes "
                         f"{takes or 'no parameters'}")
    try:
        return REGISTRY[name](**params)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:  # a required parameter missing, a value of the wrong kind
        raise InputError(f"detector {name!r}: {exc}; it takes "
                         + ", ".join(f"{k}={v!r}" if v is not inspect.Parameter.empty else k
                                     for k, v in accepted.items())) from None


def _value(text: str) -> Any:
    """A parameter value written on a command line: int, float, true/false, or text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_detector_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Read ``NAME`` or ``NAME:key=value,key=value`` (the CLI's ``--detector``).

    Parameters
    ----------
    spec : str
        E.g. ``"react:percentile=95"`` or ``"ash:percentile=90,variant=b"``.

    Returns
    -------
    tuple
        ``(name, params)``; values are int, float, bool (``true``/``false``) or text.

    Raises
    ------
    InputError
        Malformed text, an unknown detector or parameter (checked by building it).
    """
    name, _, rest = str(spec).strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise InputError(f"detector {spec!r}: {item!r} is not key=value; write NAME:key=value,key=value, "
                             "e.g. react:percentile=95")
        if key.strip() in params:
            raise InputError(f"detector {spec!r} sets {key.strip()!r} twice")
        params[key.strip()] = _value(value.strip())
    make_detector(name, **params)  # refuses an unknown name, parameter or value now, before any work
    return name, params

