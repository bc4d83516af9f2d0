"""Stable names for the graph outputs nnwatch adds. Changing this scheme breaks saved profiles."""

from __future__ import annotations

TAP_PREFIX = "nnwatch/"


def tap_output_name(tensor: str, reduction: str, cast: bool) -> str:
    """Name of the graph output that exposes ``tensor``.

    Parameters
    ----------
    tensor : str
        Tapped tensor name in the original graph.
    reduction : str
        ``"mean"`` or ``"max"`` when reduced in the graph, ``"none"`` otherwise.
    cast : bool
        Whether a Cast to float32 was inserted.

    Returns
    -------
    str
        ``tensor`` itself when exposed unchanged, else ``nnwatch/<op>/<tensor>``.
    """
    if reduction == "none" and not cast:
        return tensor
    op = reduction if reduction != "none" else "float"
    return f"{TAP_PREFIX}{op}/{tensor}"
