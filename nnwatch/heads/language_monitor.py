"""The language monitor: prompts -> Verdicts, with the classifier Monitor's contract.

One sweep per call runs each prompt's plain prefill once (reading the last token's residual
state at every layer) and, only when a head detector is active, the masked re-runs of the
layers above each head. Every detector fills one column of the score matrix; conformal
p-values and flags come from :mod:`nnwatch.kernels.conformal` against the benign calibration
prompts' scores, built by the same code as the classifier monitor's
(:func:`nnwatch.calibration.groups.calibration_from_scores`, one calibration group);
latency budgets use the same :class:`~nnwatch.monitor.budget.Budget` and tracker.

Verdicts' ``pred`` is 0 for every prompt (one group, no classes) and ``logits`` is empty.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from ..calibration.groups import (
    calibration_from_scores,
    check_calibration_size,
    check_settings,
    compile_conformal,
)
from ..errors import InputError, ModelMismatchError, NotFittedError
from ..kernels.conformal import conformal_p_values
from ..monitor.budget import Budget, LatencyTracker, over_budget_error
from ..monitor.results import Verdicts
from ..profile.schema import Calibration
from .collect import Sweep, sweep
from .detector_file import LanguageDetector, load_detector
from .prompts import PromptSet
from .scores import MASKED, PREFILL, heads_needed, needs_mlp


def _prompt_list(prompts: Any) -> list[Any]:
    if isinstance(prompts, PromptSet):
        return list(prompts.prompts)
    if isinstance(prompts, (str, dict)):
        return [prompts]
    out = list(prompts)
    if not out:
        raise InputError("no prompts: pass at least one prompt")
    return out


class LanguageMonitor:
    """Runtime monitor for a language or vision-language model.

    Parameters
    ----------
    detector : LanguageDetector or path
        A detector file from ``nnwatch heads search`` + ``nnwatch heads fit``.
    scorer : TorchHeadScorer, optional
        A scorer of the model (default: load ``model``).
    model : str, optional
        Model spec to load (default: the one the detector was fitted on).
    threads : int or None
        Intra-op threads of torch (set for the whole process when the model loads here) and
        of the onnxruntime session; None leaves torch's setting and onnxruntime's default.
        The CLI passes 1 unless ``--threads`` says otherwise.
    detectors : sequence of str, "all" or None
        Columns to run. None: every detector that needs only the prefill (the masked head
        detectors cost several prefills; name them, or "all", to run them).
    decision : str
        Detector whose flag and p-value set ``flag`` and ``confidence``; "auto": the file's
        default.
    budget : Budget, optional
        Latency budget and policy; ``degrade`` skips the masked head detectors and decides
        with ``budget.fallback`` (default: the file's default detector).
    truncate : bool
        Keep the last ``max_tokens`` tokens of an over-long text prompt instead of refusing it.
    quiet : bool
        No model-loading progress bars.
    onnx : path, optional
        A prefill exported by ``nnwatch heads export``: the features then come from one
        onnxruntime call per prompt (text prompts; no ``mlp_coverage``). A prefill exported
        with its tokenizer (this nnwatch) needs neither torch nor transformers; an older one
        loads the torch model to tokenize.
    cache_dir : path, optional
        Weights cache of a GGUF model (see :func:`nnwatch.heads.weights_cache.cache_root`).

    Attributes
    ----------
    columns : tuple of str
        Detector of each score column.
    column_detectors : list
        The detectors (:mod:`nnwatch.heads.scores`), in column order.

    Raises
    ------
    InputError
        A detector or decision the file does not have, or a degrade fallback that is not a
        prefill detector.
    ModelMismatchError
        The detector was fitted for another model, or its calibration for other detectors.
    """

    def __init__(self, detector: LanguageDetector | str | os.PathLike, scorer: Any = None, model: str | None = None,
                 threads: int | None = None, detectors: Sequence[str] | str | None = None, decision: str = "auto",
                 budget: Budget | None = None, truncate: bool = False, quiet: bool = True,
                 onnx: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> None:
        det = detector if isinstance(detector, LanguageDetector) else load_detector(detector)
        self.detector = det
        if detectors is None:
            names = [n for n, d in det.detectors.items() if d.cost == PREFILL] or list(det.detectors)
        elif detectors == "all":
            names = list(det.detectors)
        else:
            names = list(dict.fromkeys(detectors))
            unknown = [n for n in names if n not in det.detectors]
            if unknown or not names:
                raise InputError(f"detectors {unknown or names}: this detector file has {sorted(det.detectors)}")
        wanted = det.default if decision == "auto" else decision
        if wanted not in det.detectors:
            raise InputError(f"decision {wanted!r}: this detector file has {sorted(det.detectors)}")
        if wanted not in names:
            names.append(wanted)
        self.budget = budget or Budget(fallback=det.default)
        if self.budget.policy == "degrade":
            fb = self.budget.fallback
            if fb not in det.detectors or det.detectors[fb].cost != PREFILL:
                cheap = sorted(n for n, d in det.detectors.items() if d.cost == PREFILL)
                raise InputError(f"budget fallback {fb!r} must be a detector that needs only the prefill: {cheap}")
            if fb not in names:
                names.append(fb)
        self.columns = tuple(names)
        self.column_detectors = [det.detectors[n] for n in names]
        cheap = np.array([s.cost != MASKED for s in self.column_detectors], np.bool_)
        self._masks = [np.ones(len(names), np.bool_), cheap]  # all columns; what the degrade policy keeps
        self.tracker = LatencyTracker(self.budget)
        self.decision = wanted
        self.threads = threads
        if onnx is not None and needs_mlp(self.column_detectors):
            raise InputError("mlp_coverage reads MLP activations, which the onnxruntime prefill does not output; "
                             "leave it out (--detectors) or use the torch path")
        self._set_calibration(det.calibration)
        # The arguments are checked; now the model (and the onnxruntime session) load.
        self.onnx = None
        if onnx is not None:
            from .onnx_backend import OnnxHeadScorer, PromptEncoder

            self.onnx = OnnxHeadScorer(onnx, threads=threads)
            det.check_model(self.onnx.fingerprint)
            if scorer is None and self.onnx.tokenizer is not None:  # no torch: the prefill carries its tokenizer
                from .text_encoder import template_encoder

                scorer = PromptEncoder(template_encoder(self.onnx.tokenizer, det.encoder["max_tokens"], truncate,
                                                        det.encoder["system_prompt"]), self.onnx.fingerprint)
        if scorer is None:
            from .encoders import encoder_for
            from .loading import load_model
            from .torch_scorer import TorchHeadScorer

            lm = load_model(model or det.model, threads, quiet=quiet, cache_dir=cache_dir)
            scorer = TorchHeadScorer(lm.model, encoder_for(lm, det.encoder["max_tokens"], truncate,
                                                           det.encoder["system_prompt"]))
        det.check_model(scorer.fingerprint)
        self.scorer = scorer

    # -- calibration -------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """What the scores depend on; recorded with a calibration and checked against it."""
        return {"detector_digest": self.detector.digest()}

    def _set_calibration(self, cal: Calibration | None) -> None:
        self.calibration = cal
        self._tables, self._cal_row = None, np.full(len(self.columns), -1, np.int64)
        # without a calibration on the user's prompts, the cross-fitted one of the fit decides
        self.cross_fit = self.detector.cross_fit if cal is None else None
        self._cross = np.array([self.cross_fit is not None and c in self.cross_fit.folds for c in self.columns],
                               np.bool_)
        if cal is not None:
            check_settings(cal, self.settings)
            used = [c for c in self.columns if c in cal.detectors]
            if used:
                self._tables, self._cal_row = compile_conformal(cal, self.columns, 1)
        if self.decision not in self.calibrated_columns and cal is not None:
            raise ModelMismatchError(f"decision detector {self.decision!r} is not calibrated (calibrated: "
                                     f"{cal.detectors}); calibrate again (nnwatch calibrate)")

    def set_calibration(self, cal: Calibration) -> None:
        """Use a calibration made for this monitor's detectors (also stored in the detector file).

        Parameters
        ----------
        cal : Calibration
            From :meth:`calibrate` or :func:`nnwatch.calibration.groups.calibration_from_scores`
            with this monitor's :attr:`settings`.

        Raises
        ------
        ModelMismatchError
            Made for other detector parameters, or without the decision detector.
        """
        self._set_calibration(cal)
        self.detector.calibration = cal

    @property
    def calibrated_columns(self) -> list[str]:
        """Columns with a calibration (on the user's prompts, or cross-fitted by ``heads fit``)."""
        return [c for c, r, x in zip(self.columns, self._cal_row, self._cross) if r >= 0 or x]

    @property
    def calibration_summary(self) -> dict[str, Any]:
        """How the p-values are calibrated: ``kind`` ("prompts": split conformal on benign
        prompts never fitted on; "cross-fit": cross-conformal over the benign training prompts;
        "none"), ``prompts``, ``fpr``, and for a cross-fit ``folds`` and ``bound`` (the
        guaranteed false-alarm bound).
        """
        if self.calibration is not None:
            return {"kind": "prompts", "prompts": int(len(self.calibration.scores)), "fpr": self.calibration.fpr}
        if self.cross_fit is not None:
            cf = self.cross_fit
            return {"kind": "cross-fit", "prompts": cf.n, "fpr": cf.fpr, "folds": cf.k,
                    "bound": cf.bound}
        return {"kind": "none", "prompts": 0, "fpr": float("nan")}

    @property
    def calibrated(self) -> bool:
        """Whether the decision detector has a calibration."""
        return self.decision in self.calibrated_columns

    def calibrate(self, prompts: Any, fpr: float = 0.05, progress: bool = False) -> Calibration:
        """Calibrate every column on benign prompts and use the result.

        Parameters
        ----------
        prompts : PromptSet or sequence of str
            Benign prompts never used to fit the detectors (a PromptSet's unsafe prompts are
            refused: the guarantee is about benign inputs).
        fpr : float
            Target false-positive rate ``alpha`` of the flags.
        progress : bool
            Progress line.

        Returns
        -------
        Calibration
            The calibration (also stored in ``self.detector``).

        Raises
        ------
        InputError
            Unsafe prompts among them, or too few for ``fpr``.
        """
        if isinstance(prompts, PromptSet) and (prompts.labels == 1).any():
            raise InputError(f"calibration prompts must all be benign (label 0); {int((prompts.labels == 1).sum())} "
                             "are labelled unsafe. Calibrate on benign prompts only: the false-positive guarantee is "
                             "about them")
        texts = _prompt_list(prompts)
        check_calibration_size(len(texts), fpr, "calibration prompts", "benign prompts")
        s = self.features(texts, heads_needed(self.column_detectors), progress=progress)
        scores = np.stack([sc.score(s) for sc in self.column_detectors], axis=1)
        cal = calibration_from_scores(self.columns, scores, np.zeros(len(texts), np.int64), 1, fpr=fpr,
                                      min_class_samples=1, settings=self.settings, warn=False)
        self.set_calibration(cal)
        return cal

    # -- scoring -----------------------------------------------------------------------------
    def features(self, prompts: Any, heads: Sequence[tuple[int, int]], progress: bool = False,
                 label: str = "prompts") -> Sweep:
        """Residual states (the angles of ``heads``, MLP activations when a column reads them), prefixes shared.

        Parameters
        ----------
        prompts : PromptSet or sequence of str
            Prompts.
        heads : sequence of (layer, head)
            Heads to mask (may be empty).
        progress : bool
            Progress line.
        label : str
            Its label.

        Returns
        -------
        Sweep
            Features in prompt order.
        """
        if self.onnx is not None:
            from .onnx_backend import onnx_sweep

            return onnx_sweep(self.scorer.encode, self.onnx, _prompt_list(prompts), heads, label=label)
        return sweep(self.scorer, _prompt_list(prompts), heads, progress=progress, label=label,
                     mlp=needs_mlp(self.column_detectors))

    def score_features(self, s: Sweep, degraded: bool = False) -> np.ndarray:
        """The score matrix of already-computed features.

        Parameters
        ----------
        s : Sweep
            Features holding every active column's heads.
        degraded : bool
            Skip the masked head detectors (NaN columns).

        Returns
        -------
        numpy.ndarray
            float64 ``(N, D)``.
        """
        out = np.full((len(s.lengths), len(self.columns)), np.nan)
        for j, sc in enumerate(self.column_detectors):
            if not (degraded and sc.cost == MASKED):
                out[:, j] = sc.score(s)
        return out

    def decide(self, scores: np.ndarray, degraded: bool = False,
               features: Sweep | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """p-values and flags of a score matrix against the calibration.

        Parameters
        ----------
        scores : numpy.ndarray
            ``(N, D)`` from :meth:`score_features`.
        degraded : bool
            Decide with the budget's fallback column.
        features : Sweep, optional
            The features behind ``scores``: cross-fitted columns score them with their fold
            detectors (without them those columns get no p-value).

        Returns
        -------
        tuple
            ``(p float64 (N, D), flags bool (N, D), active bool (D,), decision column name)``.
        """
        p = np.full(scores.shape, np.nan)
        flags = np.zeros(scores.shape, np.bool_)
        used = self._cal_row >= 0
        if self._tables is not None:
            cols = np.flatnonzero(used)
            order = self._cal_row[cols]
            block = np.empty((len(scores), self._tables.n_detectors))
            block[:, order] = scores[:, cols]
            bp, bf = conformal_p_values(block, np.zeros(len(scores), np.int64), self._tables)
            p[:, cols], flags[:, cols] = bp[:, order], bf[:, order]
        active = self._masks[1 if degraded else 0]
        crossed = np.flatnonzero(self._cross & active)
        if len(crossed) and features is None:
            raise InputError("cross-fitted columns score the prompts' features with their fold detectors: pass "
                             "features= (the Sweep behind the scores)")
        for j in crossed:
            p[:, j], flags[:, j] = self.cross_fit.p_values(self.columns[j], features)
        p[:, ~active] = np.nan
        flags[:, ~active] = False
        return p, flags, active, (self.budget.fallback if degraded else self.decision)

    def score(self, prompts: Any, progress: bool = False) -> Verdicts:
        """Monitor one batch of prompts.

        Parameters
        ----------
        prompts : str, PromptSet or sequence of str
            Prompts (or ready model inputs as dicts, e.g. with ``pixel_values``).
        progress : bool
            Progress line.

        Returns
        -------
        Verdicts
            Per-prompt scores, p-values and flags; ``flag`` and ``confidence`` from the
            decision detector (flag False and confidence NaN when uncalibrated).

        Raises
        ------
        InputError
            An empty or over-long prompt (unless ``truncate``).
        BudgetError
            Over the latency budget under the ``raise`` policy (``exc.verdicts`` holds the result).
        """
        texts = _prompt_list(prompts)
        degraded = self.tracker.degraded and not self._masks[1].all()  # nothing to skip: stay whole
        heads = [] if degraded else self.heads_needed()
        t0 = time.perf_counter()
        s = self.features(texts, heads, progress=progress)
        scores = self.score_features(s, degraded)
        p, flags, active, decision = self.decide(scores, degraded, s)
        total_ms = (time.perf_counter() - t0) * 1e3
        infer_ms = float(s.prefill_seconds.sum()) * 1e3
        over = self.tracker.record(infer_ms, total_ms - infer_ms)
        col = self.columns.index(decision)
        n = len(texts)
        calibrated = (self._cal_row >= 0) | self._cross
        verdicts = Verdicts(
            pred=np.zeros(n, np.int64), logits=np.zeros((n, 0), np.float32), columns=self.columns,
            score_matrix=scores, p_matrix=p, flag_matrix=flags, active=active, calibrated=calibrated,
            flag=flags[:, col].copy(), confidence=p[:, col].copy(), nonfinite_input=np.zeros(n, np.bool_),
            decision=decision,
            timings={"infer_ms": infer_ms, "monitor_ms": total_ms - infer_ms, "total_ms": total_ms},
            over_budget=over, degraded=degraded)
        if over and self.budget.policy == "raise":
            raise over_budget_error(verdicts, self.budget)
        return verdicts

    __call__ = score

    def warmup(self, prompt: str = "Hello, how are you?") -> None:
        """Run one untimed call so the first real one is not charged the model's first-pass setup.

        Parameters
        ----------
        prompt : str
            Any prompt.
        """
        self.features([prompt], self.heads_needed())

    def heads_needed(self) -> list[tuple[int, int]]:
        """Heads the columns (and their cross-fitted fold detectors) mask.

        Returns
        -------
        list of (layer, head)
            In first-use order.
        """
        extra = self.cross_fit.heads(list(self.columns)) if self.cross_fit is not None else []
        return list(dict.fromkeys(heads_needed(self.column_detectors) + extra))

    def stats(self) -> dict[str, float]:
        """Latency percentiles and overrun counts (:meth:`LatencyTracker.stats`)."""
        return self.tracker.stats()

    def require_calibration(self) -> None:
        """Raise unless the decision detector is calibrated."""
        if not self.calibrated:
            raise NotFittedError("this detector file has no calibration for its decision detector: run "
                                 "`nnwatch calibrate DETECTOR.json --data BENIGN.jsonl` (or `nnwatch heads fit`)")
