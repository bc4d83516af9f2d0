"""Stream tests on conformal p-values: online (growing-bag) smoothed p-values and two alarms.

p-values. For a frame with score ``s`` in calibration group ``g`` whose *bag* holds ``n``
scores (the group's clean calibration scores, then every earlier frame of the group):

    p = (#{bag > s} + theta * (#{bag == s} + 1)) / (n + 1),    theta ~ U(0, 1)

after which ``s`` joins the bag. If calibration and stream are exchangeable, these smoothed
online conformal p-values are independent and uniform on (0, 1) (Vovk, Gammerman, Shafer,
*Algorithmic Learning in a Random World*, ch. 2 and 8; per group, Mondrian). That is what
makes the alarm below valid over a whole stream; p-values against a *fixed* calibration set
are dependent through it and do not give the guarantee.

Alarms. ``simple jumper`` (Vovk, Nouretdinov, Gammerman, "Conformal test martingales",
2021): capital split over betting functions ``f_e(p) = 1 + e (p - 1/2)``, ``e`` in {-1, 0, 1};
each step a share ``J`` of the total is redistributed evenly (so the martingale recovers
after a transient), then each part is multiplied by its bet. It is a nonnegative martingale
with initial value 1 under the null, so by Ville's inequality
``P(capital ever >= 1/delta) <= delta``. ``cusum``: ``S = max(0, S + log(1.5 - p))`` (the
likelihood ratio of the ``e = -1`` bet), alarm at ``S >= log(1/delta)``: familiar and quick to
react, but with no whole-stream bound (its false alarms grow with the stream length).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array, check_probability
from ..errors import InputError
from ._jit import njit

METHODS = ("jumper", "cusum")
JUMPER, CUSUM = 0, 1
_THETA_BLOCK = 4096


@njit()
def _insert_point(bag, g, n, s):
    # position after every equal element; shift the tail right by one
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if bag[g, mid] <= s:
            lo = mid + 1
        else:
            hi = mid
    for i in range(n, lo, -1):
        bag[g, i] = bag[g, i - 1]
    bag[g, lo] = s


@njit()
def _count_ge_gt(bag, g, n, s):
    lo, hi = 0, n
    while lo < hi:  # first index with bag >= s
        mid = (lo + hi) // 2
        if bag[g, mid] < s:
            lo = mid + 1
        else:
            hi = mid
    first_ge = lo
    hi = n
    while lo < hi:  # first index with bag > s
        mid = (lo + hi) // 2
        if bag[g, mid] <= s:
            lo = mid + 1
        else:
            hi = mid
    return n - first_ge, n - lo


@njit()
def _stream_update(scores, groups, thetas, bag, sizes, state, method, jump, threshold, p_out, stat_out, alarm_out):
    """One batch of frames, in order: p-values, bag insertion, alarm statistic (see module)."""
    for b in range(scores.shape[0]):
        g = groups[b]
        s = scores[b]
        if not s == s:  # NaN: maximal evidence, like +inf
            s = np.inf
        n = sizes[g]
        n_ge, n_gt = _count_ge_gt(bag, g, n, s)
        p = (n_gt + thetas[b] * (n_ge - n_gt + 1.0)) / (n + 1.0)
        _insert_point(bag, g, n, s)
        sizes[g] = n + 1
        p_out[b] = p
        stat_out[b] = _bet(state, method, jump, p)
        alarm_out[b] = stat_out[b] >= threshold


@njit()
def _bet(state, method, jump, p):
    # one step of the alarm statistic on p-value p; returns the statistic
    if method == JUMPER:
        total = state[0] + state[1] + state[2]
        for e in range(3):
            state[e] = ((1.0 - jump) * state[e] + jump / 3.0 * total) * (1.0 + (e - 1.0) * (p - 0.5))
        return state[0] + state[1] + state[2]
    stat = max(0.0, state[0] + np.log(1.5 - p))
    state[0] = stat
    return stat


@njit()
def _class_update(classes, thetas, counts, state, method, jump, threshold, p_out, stat_out, alarm_out):
    """Predicted classes, in order: full conformal p-values of class rarity, then the alarm statistic."""
    for b in range(classes.shape[0]):
        c = classes[b]
        counts[c] += 1
        mine = counts[c]
        rarer = 0  # samples (this one included) of classes rarer than c: more nonconforming
        same = 0  # samples of classes exactly as frequent as c
        total = 0
        for k in range(counts.shape[0]):
            total += counts[k]
            if counts[k] < mine:
                rarer += counts[k]
            elif counts[k] == mine:
                same += counts[k]
        p = (rarer + thetas[b] * same) / total
        p_out[b] = p
        stat_out[b] = _bet(state, method, jump, p)
        alarm_out[b] = stat_out[b] >= threshold


class Alarm:
    """The alarm statistic's settings and state, shared by the stream tests.

    Parameters
    ----------
    delta : float
        Bound on the probability of ever alarming on a clean stream (``jumper``); the
        ``cusum`` threshold is ``log(1/delta)``.
    method : {"jumper", "cusum"}
        The alarm statistic.
    jump : float
        Simple jumper's redistributed share per step, in [0, 1).
    seed : int
        Seed of the p-values' smoothing draws.
    """

    def __init__(self, delta: float = 0.01, method: str = "jumper", jump: float = 0.01, seed: int = 0) -> None:
        self.delta = check_probability(delta, "delta")
        if method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {method!r}")
        if not 0.0 <= float(jump) < 1.0:
            raise InputError(f"jump must be in [0, 1), got {jump}")
        self.method = method
        self.method_code = JUMPER if method == "jumper" else CUSUM
        self.jump = float(jump)
        self.threshold = 1.0 / self.delta if method == "jumper" else float(np.log(1.0 / self.delta))
        self._rng = np.random.default_rng(seed)
        self._thetas = self._rng.random(_THETA_BLOCK)  # smoothing draws, taken in order, refilled in blocks
        self._next_theta = 0
        self.reset()

    def draws(self, batch: int) -> np.ndarray:
        """The next ``batch`` smoothing draws of the p-values (uniform on [0, 1))."""
        if self._next_theta + batch > self._thetas.shape[0]:
            self._thetas = np.concatenate([self._thetas[self._next_theta :], self._rng.random(max(_THETA_BLOCK, batch))])
            self._next_theta = 0
        self._next_theta += batch
        return self._thetas[self._next_theta - batch : self._next_theta]

    def reset(self) -> None:
        """Start a new test (capital 1 / CUSUM 0); what the test has seen stays."""
        self.state = np.full(3, 1.0 / 3.0) if self.method == "jumper" else np.zeros(3)

    @property
    def statistic(self) -> float:
        """Current capital (jumper) or CUSUM statistic."""
        return float(self.state.sum() if self.method == "jumper" else self.state[0])


class StreamTest(Alarm):
    """State of one stream test: per-group bags, the alarm statistic; arrays owned and checked here.

    Parameters
    ----------
    reference : sequence of numpy.ndarray
        Per calibration group, its clean calibration scores (any order, finite).
    delta, method, jump, seed
        As for :class:`Alarm`.
    """

    def __init__(self, reference: list[np.ndarray], delta: float = 0.01, method: str = "jumper", jump: float = 0.01,
                 seed: int = 0) -> None:
        super().__init__(delta, method, jump, seed)
        if not reference:
            raise InputError("a stream test needs at least one calibration group")
        refs = [np.sort(np.asarray(r, np.float64).ravel()) for r in reference]
        if any(r.size == 0 or not np.isfinite(r).all() for r in refs):
            raise InputError("every calibration group needs at least one score, all finite")
        self.sizes = np.array([r.size for r in refs], np.int64)
        self.bag = np.zeros((len(refs), int(self.sizes.max()) + 64))
        for g, r in enumerate(refs):
            self.bag[g, : r.size] = r
        self.frames = 0

    def update(self, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed frames in order.

        Parameters
        ----------
        scores : numpy.ndarray
            float ``(B,)``: higher = more anomalous; NaN/Inf count as +inf.
        groups : numpy.ndarray
            int ``(B,)``: calibration group of each frame.

        Returns
        -------
        tuple of numpy.ndarray
            ``(p-values (B,), statistic after each frame (B,), alarm (B,) bool)``.
        """
        scores = check_array(np.ascontiguousarray(scores, np.float64), "scores", np.float64, (None,))
        groups = check_array(np.ascontiguousarray(groups, np.int64), "groups", np.int64, (scores.shape[0],))
        if scores.shape[0] and not 0 <= groups.min() <= groups.max() < self.sizes.shape[0]:
            raise InputError(f"groups must be in [0, {self.sizes.shape[0]})")
        return self.advance(scores, groups)

    def advance(self, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`update` for inputs already known to be valid (a monitor's own verdicts).

        Parameters
        ----------
        scores : numpy.ndarray
            C-contiguous float64 ``(B,)``.
        groups : numpy.ndarray
            C-contiguous int64 ``(B,)`` in ``[0, groups)``.

        Returns
        -------
        tuple of numpy.ndarray
            As :meth:`update`.
        """
        batch = scores.shape[0]
        # every bag fits the frames so far: grow geometrically, outside the kernel
        if int(self.sizes.max()) + batch > self.bag.shape[1]:
            grown = np.zeros((self.bag.shape[0], max(int(self.sizes.max()) + batch, 2 * self.bag.shape[1])))
            grown[:, : self.bag.shape[1]] = self.bag
            self.bag = grown
        thetas = self.draws(batch)
        p, stat, alarm = np.empty(batch), np.empty(batch), np.empty(batch, np.bool_)
        _stream_update(scores, groups, thetas, self.bag, self.sizes, self.state, self.method_code, self.jump,
                       self.threshold, p, stat, alarm)
        self.frames += batch
        return p, stat, alarm


class ClassStreamTest(Alarm):
    """A stream test on the predicted classes alone (drift in what the model sees, not how).

    Nonconformity of a frame is minus the number of samples of its class in the bag (the
    calibration samples' predicted classes, then every earlier frame); the full conformal
    p-value ``(#{rarer} + theta #{as frequent}) / n`` (this frame included) is computed from
    the class counts alone, so the state is ``C`` counts whatever the stream's length. On an
    exchangeable stream the p-values are independent and uniform, and the alarm carries the
    same bound as :class:`StreamTest`'s.

    Parameters
    ----------
    classes : numpy.ndarray
        int ``(M,)`` predicted classes of the calibration samples.
    n_classes : int
        ``C``.
    delta, method, jump, seed
        As for :class:`Alarm`.
    """

    def __init__(self, classes: np.ndarray, n_classes: int, delta: float = 0.01, method: str = "jumper",
                 jump: float = 0.01, seed: int = 0) -> None:
        super().__init__(delta, method, jump, seed)
        classes = np.asarray(classes)
        if int(n_classes) < 1 or classes.dtype.kind not in "iu" or (classes.size and (classes.min() < 0 or classes.max() >= n_classes)):
            raise InputError(f"calibration classes must be integers in [0, {n_classes})")
        self.counts = np.bincount(classes.astype(np.int64), minlength=int(n_classes)).astype(np.int64)

    def update(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed predicted classes in order.

        Parameters
        ----------
        classes : numpy.ndarray
            int ``(B,)`` in ``[0, C)``.

        Returns
        -------
        tuple of numpy.ndarray
            ``(p-values (B,), statistic after each frame (B,), alarm (B,) bool)``.
        """
        classes = check_array(np.ascontiguousarray(classes, np.int64), "classes", np.int64, (None,))
        if classes.size and not 0 <= classes.min() <= classes.max() < self.counts.shape[0]:
            raise InputError(f"classes must be in [0, {self.counts.shape[0]})")
        return self.advance(classes)

    def advance(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`update` for classes already known to be valid (a monitor's own predictions).

        Parameters
        ----------
        classes : numpy.ndarray
            C-contiguous int64 ``(B,)`` in ``[0, C)``.

        Returns
        -------
        tuple of numpy.ndarray
            As :meth:`update`.
        """
        batch = classes.shape[0]
        p, stat, alarm = np.empty(batch), np.empty(batch), np.empty(batch, np.bool_)
        _class_update(classes, self.draws(batch), self.counts, self.state, self.method_code, self.jump,
                      self.threshold, p, stat, alarm)
        return p, stat, alarm
