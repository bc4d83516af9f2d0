"""Starting Ray for the ``--ray`` commands (classifiers and detectors alike)."""

from __future__ import annotations

import argparse


def ray_init(args: argparse.Namespace) -> None:
    """Connect to ``--ray-address`` (``local``: start a local instance), Ray's logging at nnwatch's verbosity.

    Parameters
    ----------
    args : argparse.Namespace
        ``ray_address``, ``verbose`` and ``quiet``.
    """
    import logging

    from ..distributed import ray_module

    ray = ray_module()
    # Ray's INFO/WARNING lines (actor pool sizing, "the job may hang" on jobs that succeed)
    # follow nnwatch's verbosity: shown with --verbose, silenced otherwise.
    verbose = getattr(args, "verbose", False)
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(level)
    quiet = {"logging_level": level, "log_to_driver": verbose, "ignore_reinit_error": True}
    if args.ray_address == "local":
        ray.init(include_dashboard=False, **quiet)
    else:
        ray.init(address=args.ray_address, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not args.quiet
    ctx.print_on_execution_start = verbose
