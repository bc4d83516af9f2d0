"""A scikit-learn-style face of the monitor: ``fit(X, y)``, ``score_samples``, ``predict``.

For people who think in estimators. ``fit`` builds the profile on one part of the clean data
and calibrates on the rest (disjoint, seeded split); afterwards the fitted :class:`Monitor` is
``monitor_``. Sign conventions follow scikit-learn's outlier detectors: ``score_samples`` is
higher for normal inputs (the conformal p-value of the decision detector), ``predict`` gives
+1 for inputs that pass and -1 for flagged ones; ``flag`` gives the booleans.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Sequence

import numpy as np

from .calibration.calibrate import calibrate
from .errors import InputError, NotFittedError
from .monitor.detectors import DEFAULT
from .monitor.monitor import Monitor
from .monitor.profiling import build_profile
from .sources import ArraySource, as_source, in_memory


class MonitorEstimator:
    """Monitor an instrumented ONNX classifier, fitted like a scikit-learn estimator.

    Parameters
    ----------
    model : path
        Instrumented ONNX model (``nnwatch instrument`` / ``nnwatch export``).
    detectors : sequence of str
        Detectors to run.
    decision : str
        Detector whose calibrated p-value decides ("auto": the fused verdict, see ``Monitor``).
    fpr : float
        Target false-alarm rate of the flags.
    calibration_fraction : float
        Share of the clean data held out for calibration (never used for the profile): a random
        share, or, for a time-ordered recording (video, MCAP, ROS 2 bag), its last frames.
    random_state : int
        Seed of the random split.
    batch_size : int
        Samples per onnxruntime call.
    providers : str
        onnxruntime execution providers ("auto", "cpu", "cuda").

    Attributes
    ----------
    monitor_ : Monitor
        The fitted, calibrated monitor (after :meth:`fit`).
    """

    def __init__(self, model: str | os.PathLike, detectors: Sequence[str] = DEFAULT, decision: str = "auto",
                 fpr: float = 0.05, calibration_fraction: float = 0.3, random_state: int = 0, batch_size: int = 256,
                 providers: str = "auto") -> None:
        self.model = model
        self.detectors = detectors
        self.decision = decision
        self.fpr = fpr
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.batch_size = batch_size
        self.providers = providers

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's estimator contract: ``clone``, grid search).

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn; no parameter is itself an estimator.

        Returns
        -------
        dict
            ``{parameter: value}``, the values as given.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "MonitorEstimator":
        """Set constructor parameters (refitting is up to the caller, as in scikit-learn).

        Parameters
        ----------
        **params
            Parameters of :class:`MonitorEstimator`.

        Returns
        -------
        MonitorEstimator
            self.

        Raises
        ------
        InputError
            A name that is not a parameter (lists the ones there are).
        """
        names = self._param_names()
        unknown = [k for k in params if k not in names]
        if unknown:
            raise InputError(f"MonitorEstimator has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                             f"{', '.join(names)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 reads an estimator's tags: an outlier detector that needs no labels."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False), no_validation=True)

    def __repr__(self) -> str:
        return f"MonitorEstimator({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def fit(self, X: Any, y: Any = None) -> "MonitorEstimator":
        """Build the profile and calibrate on disjoint parts of clean data.

        Parameters
        ----------
        X : array_like or batches
            Clean inputs ``(N, ...)``, or anything :func:`nnwatch.sources.as_source` takes.
        y : array_like, optional
            True labels (then only correctly classified samples enter the profile).

        Returns
        -------
        MonitorEstimator
            self.
        """
        if not 0.0 < float(self.calibration_fraction) < 1.0:
            raise InputError(f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}")
        source = as_source(X if y is None else (X, y))
        data = in_memory(source, self.batch_size)  # batches and recordings
        n_cal = int(round(len(data) * float(self.calibration_fraction)))
        if n_cal < 1 or n_cal >= len(data):
            raise InputError(f"{len(data)} samples cannot be split into a profile and a calibration part")
        if getattr(source, "time_ordered", False):
            # Neighbouring frames of a video or robot recording are near-duplicates: a shuffled split would
            # calibrate on frames the profile has nearly seen. The last frames calibrate instead.
            prof_idx, cal_idx = np.arange(len(data) - n_cal), np.arange(len(data) - n_cal, len(data))
        else:
            order = np.random.default_rng(self.random_state).permutation(len(data))
            prof_idx, cal_idx = np.sort(order[n_cal:]), np.sort(order[:n_cal])
        part = lambda idx: ArraySource(data.x[idx], None if data.y is None else data.y[idx], "fit")  # noqa: E731
        profile = build_profile(self.model, part(prof_idx), batch_size=self.batch_size)
        monitor = Monitor(self.model, profile, detectors=self.detectors, decision=self.decision,
                          providers=self.providers)
        calibrate(monitor, part(cal_idx), fpr=self.fpr, batch_size=self.batch_size)
        self.monitor_ = monitor
        return self

    def _verdicts(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "monitor_"):
            raise NotFittedError("this MonitorEstimator is not fitted yet; call fit(X, y) first")
        data = as_source(X)
        flags, conf = [], []
        for x, _ in data.batches(self.batch_size):
            v = self.monitor_(x)
            flags.append(v.flag)
            conf.append(v.confidence)
        return np.concatenate(flags), np.concatenate(conf)

    def score_samples(self, X: Any) -> np.ndarray:
        """Conformal p-value of the decision detector: higher = more like the clean data.

        Parameters
        ----------
        X : array_like
            Inputs.

        Returns
        -------
        numpy.ndarray
            float64 ``(N,)`` in [0, 1].
        """
        return self._verdicts(X)[1]

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - fpr``: negative for flagged inputs.

        Parameters
        ----------
        X : array_like
            Inputs.

        Returns
        -------
        numpy.ndarray
            float64 ``(N,)``.
        """
        return self.score_samples(X) - float(self.fpr)

    def flag(self, X: Any) -> np.ndarray:
        """Whether each input is flagged (unlike the clean data, or non-finite).

        Parameters
        ----------
        X : array_like
            Inputs.

        Returns
        -------
        numpy.ndarray
            bool ``(N,)``.
        """
        return self._verdicts(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inputs that pass, -1 for flagged ones (scikit-learn's outlier convention).

        Parameters
        ----------
        X : array_like
            Inputs.

        Returns
        -------
        numpy.ndarray
            int ``(N,)``.
        """
        return np.where(self.flag(X), -1, 1)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """:meth:`fit` then :meth:`predict` on the same data.

        Parameters
        ----------
        X : array_like
            Clean inputs.
        y : array_like, optional
            Labels.

        Returns
        -------
        numpy.ndarray
            int ``(N,)``.
        """
        return self.fit(X, y).predict(X)
