"""``Monitor(engine="graph")``: the model and its verdict in one onnxruntime graph.

The merged model (:mod:`nnwatch.graphs.assemble`) computes the verdict with standard ONNX
operators inside the same onnxruntime call as the model; Python only binds the buffers and
wraps the outputs. The verdict is the compiled engine's, in float32 (see
:mod:`nnwatch.graphs.verdict_graph` for what "equal" means). Detectors written in Python and
the degrade policy have no place in the graph and are refused; columns nobody calibrated are
computed with NaN p-values. Counting columns come back as the exact ratios the compiled
engine computes (:meth:`GraphEngine.exact_scores`); an attached stream is advanced after the
graph, by the same compiled step as the compiled engine's.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import InputError
from .runner import session_options


class GraphEngine:
    """One merged model, its session, and per-thread bound buffers.

    Parameters
    ----------
    monitor : Monitor
        A calibrated monitor whose columns can all be compiled.
    """

    def __init__(self, monitor: Any) -> None:
        from ..graphs.assemble import merged_model  # the graph is built when the engine is chosen
        from ..graphs.verdict_graph import column_denominators

        if monitor.budget.policy == "degrade":
            raise InputError("the graph engine computes every column in one graph call: it has no degrade policy; "
                             "use engine='compiled' or a budget policy of 'report' or 'raise'")
        if not monitor.calibrated:
            raise InputError("the graph engine needs a calibrated profile (nnwatch calibrate): its verdict is the "
                             "conformal flag")
        runner = monitor.runner
        record = {"columns": list(monitor.columns), "decision": monitor.decision}
        proto = merged_model(runner.model_bytes(), monitor.verdict_tables.spec, monitor.columns,
                             monitor.columns.index(monitor.decision), record)
        self.model = proto.SerializeToString()
        den = column_denominators(monitor.verdict_tables.spec)
        self._counting = np.flatnonzero(den > 0)
        self._denominators = den[self._counting].astype(np.float64)
        self.session = ort.InferenceSession(self.model, session_options(runner.threads, runner.spinning),
                                            providers=runner.session.get_providers())
        self.input_name = runner.input_name
        self.input_dtype = runner.input_dtype
        self.logits = runner.manifest.logits
        names = ("pred", "flag", "confidence", "scores", "p_values", "flags")
        self.outputs = {key: f"nnwatch/{key}" for key in names}
        self.n_classes, self.n_columns = runner.n_classes, len(monitor.columns)
        self.fixed = runner.manifest.batch  # a graph with a fixed batch runs in chunks of it
        self.max_buffers = runner.max_workspaces
        self._local = threading.local()

    def _buffers(self, batch: int) -> tuple:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        entry = cache.get(batch)
        if entry is None:
            B, C, D = batch, self.n_classes, self.n_columns
            arrays = {"logits": np.empty((B, C), np.float32), "pred": np.empty(B, np.int64),
                      "flag": np.empty(B, np.bool_), "confidence": np.empty(B, np.float32),
                      "scores": np.empty((B, D), np.float32), "p_values": np.empty((B, D), np.float32),
                      "flags": np.empty((B, D), np.bool_)}
            binding = self.session.io_binding()
            binding.bind_output(self.logits, "cpu", 0, np.float32, [B, C], arrays["logits"].ctypes.data)
            for key, name in self.outputs.items():
                arr = arrays[key]
                binding.bind_output(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
            while len(cache) >= self.max_buffers:  # as many batch sizes as the runner keeps buffers for
                cache.pop(next(iter(cache)))
            entry = cache[batch] = (binding, arrays)
        return entry

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run the merged model on a checked batch.

        Parameters
        ----------
        x : numpy.ndarray
            The batch, checked by the runner (model input dtype, C-contiguous).

        Returns
        -------
        dict
            Fresh copies: ``pred``, ``logits``, ``flag``, ``confidence``, ``scores``,
            ``p_values``, ``flags``.
        """
        if self.fixed is None or x.shape[0] == self.fixed:
            binding, arrays = self._buffers(x.shape[0])
            binding.bind_cpu_input(self.input_name, x)
            self.session.run_with_iobinding(binding)
            return {key: arr.copy() for key, arr in arrays.items()}
        parts = []
        for lo in range(0, x.shape[0], self.fixed):
            chunk = x[lo : lo + self.fixed]
            n = chunk.shape[0]
            if n < self.fixed:  # pad the last chunk; its padding rows are dropped
                chunk = np.concatenate([chunk, np.zeros((self.fixed - n,) + chunk.shape[1:], chunk.dtype)])
            out = self.run(np.ascontiguousarray(chunk))
            parts.append({key: arr[:n] for key, arr in out.items()})
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def exact_scores(self, scores: np.ndarray) -> np.ndarray:
        """float64 scores, counting columns as the exact ratios ``k / n`` the compiled engine computes.

        The graph's float32 ``k / n`` is within half an ulp of the ratio, and ``n < 2**24``:
        ``rint(score * n) / n`` gives ``k / n`` back, so a stream compares these scores with the
        calibration's float64 ratios exactly, ties included.

        Parameters
        ----------
        scores : numpy.ndarray
            float32 ``(B, D)`` from :meth:`run`.

        Returns
        -------
        numpy.ndarray
            float64 ``(B, D)``.
        """
        out = scores.astype(np.float64)
        if self._counting.size:
            part = out[:, self._counting]
            exact = np.rint(part * self._denominators) / self._denominators
            out[:, self._counting] = np.where(np.isfinite(part), exact, part)
        return out
