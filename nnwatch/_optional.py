"""Optional dependencies: import them, or name the extra that installs them."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import MissingDependencyError

# What each optional module is needed for, and the extra that provides it.
EXTRAS = {
    "torch": ("torch", "exporting from PyTorch, attacks, the demo's training and the LLM head score"),
    "onnxscript": ("torch", "exporting from PyTorch"),
    "sklearn": ("demo", "the 'digits' data source, the demo and the language monitor's text baseline"),
    "ray": ("dist", "distributed work (--ray)"),
    "transformers": ("llm", "the LLM head score"),
    "onnx_ir": ("compile", "compiling the monitor into ONNX (nnwatch compile, Monitor(engine='graph'))"),
    "PIL": ("recordings", "reading images (images: sources, CompressedImage frames) and resizing frames"),
    "av": ("recordings", "reading video files (video: sources)"),
    "mcap": ("recordings", "reading MCAP recordings (mcap: sources)"),
    "mcap_ros2": ("recordings", "decoding ROS 2 messages in MCAP recordings (mcap: sources)"),
    "mcap_protobuf": ("recordings", "decoding Foxglove's protobuf image messages in MCAP recordings (mcap: sources)"),
    "rosbags": ("recordings", "reading ROS 2 and ROS 1 bags (rosbag: sources)"),
}


def require(module: str, extra: str | None = None) -> Any:
    """Import an optional dependency, or raise an error that says how to install it.

    Parameters
    ----------
    module : str
        Top-level module name (a key of :data:`EXTRAS`, or a submodule of one).
    extra : str, optional
        The extra to name, where the caller's command has its own (the README installs the
        demo with ``.[demo]`` and the language monitor with ``.[llm]``); default: the
        module's entry in :data:`EXTRAS`.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        Not installed; the message names the extra and the install command.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        default, purpose = EXTRAS.get(top, (top, "this command"))
        extra = extra or default
        raise MissingDependencyError(
            f"{top} is not installed; it is needed for {purpose}: pip install -c constraints.txt -e '.[{extra}]' "
            f"(or pip install 'nnwatch[{extra}]')") from None
