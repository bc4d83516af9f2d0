"""One onnxruntime call per batch, its taps landing in the sample-major activation buffer.

A model with joined taps (one ``nnwatch/taps`` output, the default of ``nnwatch instrument``)
is bound so that onnxruntime writes the buffer itself: one output, no copy. A model with one
output per tap is bound into staging arrays, copied (dequantized, reduced) into the buffer.

Each thread gets its own workspaces (one per batch size seen, a few kept): preallocated
logits, activation buffer and I/O binding, so a batch-1 call allocates nothing on the hot
path and concurrent calls never share buffers.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .._io import is_zip_archive
from ..errors import InputError, ModelError
from ..kernels.accumulate import dequantize, reduce_maps
from ..kernels.layout import layer_offsets
from ..manifest import HEAD_KEY, MANIFEST_KEY, PREPROCESS_KEY, TapManifest, check_logit_columns, decode_head
from .providers import QUIET, resolve_providers

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


@dataclass
class Workspace:
    """Buffers for one batch size in one thread.

    Attributes
    ----------
    batch : int
        Batch size.
    logits : numpy.ndarray
        float32 ``(B, K)``.
    buf : numpy.ndarray
        float32 ``(B * N,)`` sample-major activations.
    maps : dict
        Without joined taps: the float32 staging array of each tap output (vectors, full maps
        reduced after the run, dequantized integers), by output name; copied into ``buf``.
    binding : onnxruntime.IOBinding or None
        Bound outputs (None when the graph's batch is fixed and differs from ``batch``).
    inputs : numpy.ndarray or None
        The bound input buffer.
    nonfinite : numpy.ndarray
        int64 ``(B,)``: NaN/Inf count of each input sample of the last call.
    quantized : dict
        Integer outputs of quantized taps, by output name; dequantized after the run.
    device_input : onnxruntime.OrtValue or None
        On a GPU provider, the bound input in device memory; each call copies ``inputs``
        into it once, and the outputs come back into the host buffers above.
    """

    batch: int
    logits: np.ndarray
    buf: np.ndarray
    maps: dict
    binding: object
    inputs: np.ndarray | None
    nonfinite: np.ndarray
    quantized: dict
    device_input: object = None

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return ((0 if self.inputs is None else self.inputs.nbytes) + self.logits.nbytes + self.buf.nbytes
                + self.nonfinite.nbytes + sum(m.nbytes for m in self.maps.values())
                + sum(q.nbytes for q in self.quantized.values()))


def session_options(threads: int | None = None, spinning: bool = True) -> ort.SessionOptions:
    """Quiet session options with full graph optimization.

    Parameters
    ----------
    threads : int or None
        Intra-op threads; None leaves onnxruntime's default.
    spinning : bool
        Let onnxruntime's workers spin after a run (its default: lowest latency). They then
        compete with a parallel coverage kernel for the cores: turning spinning off costs
        inference latency, and a parallel kernel next to spinning workers runs slower than the
        serial one (docs/results.md, "Coverage kernel", measures both), so the Monitor keeps
        spinning on and scores serially unless told otherwise.

    Returns
    -------
    onnxruntime.SessionOptions
        Options.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = QUIET
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def read_manifest(session: ort.InferenceSession, where: str) -> TapManifest:
    """The nnwatch manifest stored in a session's model metadata.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        Session of an instrumented model.
    where : str
        Model name for messages.

    Returns
    -------
    TapManifest
        Parsed manifest.

    Raises
    ------
    ModelError
        The model was not instrumented by nnwatch.
    """
    meta = session.get_modelmeta().custom_metadata_map
    if MANIFEST_KEY not in meta:
        raise ModelError(f"{where} is not instrumented by nnwatch; run `nnwatch instrument {where} --out OUT.onnx` first")
    return TapManifest.from_json(meta[MANIFEST_KEY])


def _declared_preprocess(text: str | None, where: str) -> dict | None:
    """The preprocessing fields recorded with ``nnwatch instrument --preprocess`` (None: none declared)."""
    if text is None:
        return None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        raise ModelError(f"{where}: its recorded preprocessing ({PREPROCESS_KEY}) is not a JSON object of fields; "
                         "instrument the original model again")
    return fields


def _shape_hint(got: tuple[int, ...], want: tuple[int | None, ...]) -> str:
    # The two most common mistakes: a missing batch axis, and channels-last images.
    if got == tuple(d if d is not None else g for d, g in zip(want, got)) and len(got) == len(want):
        return f"; a single sample needs a batch axis: x[None] has shape {(1,) + got}"
    if len(got) == len(want) + 1 and len(want) == 3 and want[0] is not None and got[-1] == want[0] \
            and got[1:3] == tuple(d if d is not None else g for d, g in zip(want[1:], got[1:3])):
        return "; channels-last images? use x.transpose(0, 3, 1, 2)"
    if len(got) == len(want) and len(want) >= 2 and want[0] == 1 and got[1:] == tuple(
            d if d is not None else g for d, g in zip(want[1:], got[1:])):
        return f"; a batch without the channel axis? use x[:, None] (shape {(got[0], 1) + got[1:]})"
    return ""


class Runner:
    """Runs an instrumented model and fills the activation buffer.

    Parameters
    ----------
    model : path or bytes
        Instrumented ONNX model.
    providers : "auto", "cpu", "cuda" or list of str
        Execution providers.
    threads : int or None
        Intra-op threads.
    max_workspaces : int
        Batch sizes whose buffers each thread keeps.
    spinning : bool
        onnxruntime worker spinning (see :func:`session_options`).
    """

    def __init__(self, model: str | os.PathLike | bytes, providers: str | Sequence[str] = "auto",
                 threads: int | None = None, max_workspaces: int = 4, spinning: bool = True) -> None:
        where = "model" if isinstance(model, bytes) else str(model)
        self.where = where
        if not isinstance(model, bytes) and not os.path.isfile(model):
            raise ModelError(f"ONNX file {model} does not exist")
        if not isinstance(model, bytes) and is_zip_archive(model):
            raise ModelError(f"{model} is an .npz archive (a profile or data), not an ONNX model; the model comes "
                             "first: Monitor(MODEL.onnx, PROFILE.npz)")
        self.source = model  # where the model came from (path or bytes): the graph engine rebuilds from it
        self.threads, self.spinning = threads, spinning
        try:
            self.session = ort.InferenceSession(
                model if isinstance(model, bytes) else os.fspath(model), session_options(threads, spinning),
                providers=resolve_providers(providers))
        except InputError:
            raise
        except Exception as exc:
            raise ModelError(f"onnxruntime cannot load {where}: {exc}") from None
        self.manifest = read_manifest(self.session, where)
        meta = self.session.get_modelmeta().custom_metadata_map
        outputs = {o.name: o for o in self.session.get_outputs()}
        joined = self.manifest.joined
        wanted = [self.manifest.logits] + ([joined] if joined else [t.output for t in self.manifest.taps])
        missing = [o for o in wanted if o not in outputs]
        if missing:
            raise ModelError(f"{where}: outputs {missing} named by the manifest are not graph outputs")
        want_types = {"float32": "tensor(float)", "uint8": "tensor(uint8)", "int8": "tensor(int8)"}
        if joined:
            total = sum(t.neurons for t in self.manifest.taps)
            declared = outputs[joined].shape
            if outputs[joined].type != "tensor(float)" or len(declared) != 2 or declared[1] not in (total, None) \
                    and not isinstance(declared[1], str):
                raise ModelError(f"{where}: joined taps {joined!r} are {outputs[joined].type} {declared}, but the "
                                 f"manifest says float32 (batch, {total}); re-instrument the model")
        for tap in () if joined else self.manifest.taps:
            if outputs[tap.output].type != want_types[tap.dtype]:
                raise ModelError(f"{where}: output {tap.output!r} is {outputs[tap.output].type}, but the manifest says "
                                 f"{tap.dtype}; re-instrument the model")
            declared = outputs[tap.output].shape[1:]
            static = [d for d in declared if isinstance(d, int)]
            if len(declared) != len(tap.shape) or (len(static) == len(declared) and tuple(static) != tap.shape):
                raise ModelError(f"{where}: output {tap.output!r} has per-sample shape {tuple(declared)}, "
                                 f"but the manifest says {tap.shape}; re-instrument the model")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_TYPES.get(inp.type)
        if self.input_dtype is None:
            raise ModelError(f"{where}: input type {inp.type} is not supported")
        lshape = outputs[self.manifest.logits].shape
        if len(lshape) != 2 or not isinstance(lshape[1], int):
            raise ModelError(f"{where}: logits output has shape {lshape}, expected (batch, classes)")
        self.n_classes = int(lshape[1])
        check_logit_columns(self.n_classes, where)
        man = self.manifest
        # The classifier head as data, for detectors that recompute logits from changed features.
        self.head: tuple[np.ndarray, np.ndarray] | None = None
        if HEAD_KEY in meta and man.penultimate in man.layer_names:
            size = man.layer_sizes[man.layer_names.index(man.penultimate)]
            self.head = decode_head(meta[HEAD_KEY], self.n_classes, size)
        self.output_names = wanted
        self.preprocess = _declared_preprocess(meta.get(PREPROCESS_KEY), where)
        self.offsets = layer_offsets(self.manifest.layer_sizes)
        self.n_neurons = int(self.offsets[-1])
        self.providers = self.session.get_providers()
        self._device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self._local = threading.local()
        self._max_workspaces = max_workspaces
        shape = self.manifest.input_shape
        self._static_shape = tuple(shape) if all(d is not None for d in shape) else None

    @property
    def max_workspaces(self) -> int:
        """How many batch sizes each thread keeps buffers for (least recently used dropped first)."""
        return self._max_workspaces

    def model_bytes(self) -> bytes:
        """The instrumented model's serialized bytes.

        Returns
        -------
        bytes
            The model file as loaded.
        """
        if isinstance(self.source, bytes):
            return self.source
        with open(self.source, "rb") as fh:
            return fh.read()

    @property
    def static_input_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape when every axis is fixed (None with dynamic non-batch axes)."""
        return self._static_shape

    def check_input(self, x: object) -> np.ndarray:
        """Validate a batch against the model input and convert it to the input dtype.

        Parameters
        ----------
        x : array_like
            ``(B, *input_shape)``.

        Returns
        -------
        numpy.ndarray
            C-contiguous array of the model's input dtype.

        Raises
        ------
        InputError
            Wrong rank, sizes or dtype, or an empty batch.
        """
        if (type(x) is np.ndarray and x.dtype == self.input_dtype and x.flags.c_contiguous
                and x.shape[1:] == self._static_shape and x.shape[0] > 0):
            return x  # hot path: already exactly what the model takes
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        want = tuple(self.manifest.input_shape)
        shown = "(batch, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
        if arr.ndim == 0:
            raise InputError(f"input: expected a batch of shape {shown}, got a scalar")
        if arr.dtype.kind not in "biuf":
            raise InputError(f"input: dtype {arr.dtype} is not numeric; pass a float array")
        tail = arr.shape[1:]
        if len(tail) != len(want) or any(w is not None and g != w for g, w in zip(tail, want)):
            raise InputError(f"input: expected shape {shown}, got {arr.shape}{_shape_hint(arr.shape, want)}")
        if arr.shape[0] == 0:
            raise InputError("input: empty batch; pass at least one sample")
        if arr.dtype != self.input_dtype or not arr.flags.c_contiguous:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, flagged later
                arr = np.ascontiguousarray(arr, dtype=self.input_dtype)
        return arr

    def workspace(self, batch: int) -> Workspace:
        """The calling thread's buffers for ``batch`` (created on first use).

        Parameters
        ----------
        batch : int
            Batch size.

        Returns
        -------
        Workspace
            Buffers.
        """
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        ws = cache.get(batch)
        if ws is not None:
            cache.move_to_end(batch)
            return ws
        ws = self._new_workspace(batch)
        cache[batch] = ws
        while len(cache) > self._max_workspaces:
            cache.popitem(last=False)
        return ws

    def workspace_bytes(self) -> int:
        """Bytes of this thread's cached workspaces.

        Returns
        -------
        int
            Bytes.
        """
        cache = getattr(self._local, "cache", None) or {}
        return int(sum(ws.nbytes for ws in cache.values()))

    def _new_workspace(self, batch: int) -> Workspace:
        logits = np.empty((batch, self.n_classes), np.float32)
        buf = np.empty(batch * self.n_neurons, np.float32)
        joined = self.manifest.joined
        taps = () if joined else self.manifest.taps
        # One output per tap: each lands in a staging array (float vectors, full maps, integers).
        maps = {t.output: np.empty((batch,) + t.shape, np.float32) for t in taps if t.dtype == "float32"}
        quantized = {t.output: np.empty((batch,) + t.shape, np.dtype(t.dtype)) for t in taps if t.dtype != "float32"}
        binding = None
        inputs = None
        device_input = None
        fixed = self.manifest.batch
        if fixed is None or fixed == batch:
            binding = self.session.io_binding()
            # Bound once; each call copies the batch into it (cheaper than rebinding).
            inputs = np.empty((batch,) + tuple(d or 1 for d in self.manifest.input_shape), self.input_dtype)
            if self._device == "cuda":
                # onnxruntime copies a host-bound input to the GPU once, when it is bound (seen
                # on an H100: every later call ran on the first data). So the input is bound in
                # device memory and refreshed each call; outputs still come back into the
                # preallocated host buffers (the kernels score on the CPU): no host allocation.
                device_input = ort.OrtValue.ortvalue_from_shape_and_type(list(inputs.shape), self.input_dtype, "cuda", 0)
                binding.bind_ortvalue_input(self.input_name, device_input)
            else:
                binding.bind_input(self.input_name, "cpu", 0, self.input_dtype, list(inputs.shape), inputs.ctypes.data)
            binding.bind_output(self.manifest.logits, "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
            if joined:
                binding.bind_output(joined, "cpu", 0, np.float32, [batch, self.n_neurons], buf.ctypes.data)
            for tap in taps:
                arr = quantized[tap.output] if tap.dtype != "float32" else maps[tap.output]
                binding.bind_output(tap.output, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        return Workspace(batch, logits, buf, maps, binding, inputs, np.zeros(batch, np.int64), quantized, device_input)

    def run(self, x: np.ndarray, ws: Workspace) -> None:
        """Run the model on a checked batch, filling ``ws.logits`` and ``ws.buf``.

        Parameters
        ----------
        x : numpy.ndarray
            Output of :meth:`check_input`, batch size ``ws.batch``.
        ws : Workspace
            This thread's workspace for that batch size.
        """
        if ws.binding is not None:
            if ws.inputs.shape == x.shape:
                np.copyto(ws.inputs, x)
                if ws.device_input is not None:
                    ws.device_input.update_inplace(ws.inputs)
            else:  # dynamic non-batch input axes: bind this batch as it is
                ws.binding.bind_cpu_input(self.input_name, x)
            self.session.run_with_iobinding(ws.binding)
        else:
            self._run_chunked(x, ws)
        if not self.manifest.joined:
            self._gather_taps(ws)

    def _gather_taps(self, ws: Workspace) -> None:
        # One output per tap: dequantize / reduce / copy each into its columns of the buffer.
        rows = ws.buf.reshape(ws.batch, self.n_neurons)
        for i, tap in enumerate(self.manifest.taps):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if tap.dtype != "float32":
                staged = ws.maps.get(tap.output)
                if staged is None:
                    staged = ws.maps[tap.output] = np.empty((ws.batch,) + tap.shape, np.float32)
                dequantize(ws.quantized[tap.output], tap.scale, tap.zero_point, staged)
            else:
                staged = ws.maps[tap.output]
            if tap.in_graph:
                rows[:, lo:hi] = staged
            else:
                reduced = np.empty((ws.batch, hi - lo), np.float32)
                reduce_maps(staged, reduced.reshape(-1), tap.reduction == "max")
                rows[:, lo:hi] = reduced

    def _run_chunked(self, x: np.ndarray, ws: Workspace) -> None:
        # Graphs with a fixed batch size: run in chunks of that size, padding the last one.
        fixed = int(self.manifest.batch)  # type: ignore[arg-type]
        batch = ws.batch
        for lo in range(0, batch, fixed):
            hi = min(lo + fixed, batch)
            chunk = x[lo:hi]
            if hi - lo < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - (hi - lo),) + x.shape[1:], x.dtype)])
            outs = self.session.run(self.output_names, {self.input_name: chunk})
            ws.logits[lo:hi] = outs[0][: hi - lo]
            if self.manifest.joined:
                ws.buf.reshape(batch, self.n_neurons)[lo:hi] = outs[1][: hi - lo]
                continue
            for tap, out in zip(self.manifest.taps, outs[1:]):
                staged = ws.quantized[tap.output] if tap.dtype != "float32" else ws.maps[tap.output]
                staged[lo:hi] = out[: hi - lo]
