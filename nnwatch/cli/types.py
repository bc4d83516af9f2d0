"""argparse types: numbers are checked when the command line is parsed, before any work."""

from __future__ import annotations

import argparse


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def unit_interval(low_open: bool, high_open: bool):  # type: ignore[no-untyped-def]
    """Argparse type factory: a float in [0, 1] with the given open ends."""
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {lo}0, 1{hi}, got {text!r}") from None
        if not (0 < value if low_open else 0 <= value) or not (value < 1 if high_open else value <= 1):
            hint = f"; did you mean {value / 100:g} ({text}%)?" if 1 < value < 100 else ""
            raise argparse.ArgumentTypeError(f"expected a number in {lo}0, 1{hi}, got {value:g}{hint}")
        return value

    return parse


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def percent(text: str) -> float:
    """Argparse type: a number in (0, 100)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentile in (0, 100), got {text!r}") from None
    if not 0.0 < value < 100.0:
        raise argparse.ArgumentTypeError(f"expected a percentile in (0, 100), got {value}")
    return value


def detector_names(text: str) -> tuple[str, ...]:
    """Argparse type: comma-separated registered detector names (not the fused column itself)."""
    from ..monitor.registry import REGISTRY

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated detector names, got none")
    unknown = [n for n in names if n not in REGISTRY or n in ("fused", "coverage")]
    if unknown:
        usable = ", ".join(sorted(n for n in REGISTRY if n not in ("fused", "coverage")))
        raise argparse.ArgumentTypeError(f"expected detector names that can be fused; cannot fuse {unknown}; "
                                         f"choose among: {usable} (an object detector fuses some of its members, "
                                         "which nnwatch info OBJECTS.npz lists)")
    return names


def detector_names_any(text: str) -> tuple[str, ...]:
    """Argparse type: comma-separated detector names (any registered one, the fused column too)."""
    from ..monitor.registry import REGISTRY

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated detector names, got none")
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown detectors {unknown}; choose among: {', '.join(sorted(REGISTRY))}")
    return names


def non_negative_float(text: str) -> float:
    """Argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def budget_text(text: str) -> str:
    """Argparse type: a latency budget, ``1.05x`` or ``2.5ms``.

    Parameters
    ----------
    text : str
        Command-line value.

    Returns
    -------
    str
        The value, checked.
    """
    from ..errors import InputError
    from ..eval.tap_budget import parse_budget

    try:
        parse_budget(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--budget must be ", "expected ")) from None
    return text


def detector_with_params(text: str) -> str:
    """Argparse type: ``NAME`` or ``NAME:key=value,...`` of a registered detector (checked by building it)."""
    from ..errors import InputError
    from ..monitor.registry import parse_detector_spec

    try:
        parse_detector_spec(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
