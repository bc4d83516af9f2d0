"""Profile building and screening on Ray Data (optional extra ``dist``; nothing else imports ray).

Each Ray actor loads the instrumented model once and keeps activations to itself: only
partial statistics (profile building) or per-input scores (screening) leave the actor.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError


def ray_module() -> Any:
    """Import ray, or say which extra to install.

    Returns
    -------
    module
        ``ray``.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("distributed work needs Ray Data: pip install 'nnwatch[dist]'") from None
    return ray


__all__ = ["ray_module"]
