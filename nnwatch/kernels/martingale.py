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
from .rules import finite_or_inf

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
def _score_step(bag, sizes, g, s, theta):
    """One frame of the score test: its smoothed online p-value, then the score joins group ``g``'s bag."""
    s = finite_or_inf(s)  # NaN and -inf: maximal evidence, like +inf
    n = sizes[g]
    n_ge, n_gt = _count_ge_gt(bag, g, n, s)
    p = (n_gt + theta * (n_ge - n_gt + 1.0)) / (n + 1.0)
    _insert_point(bag, g, n, s)
    sizes[g] = n + 1
    return p


@njit()
def _class_step(counts, c, theta):
    """One frame of the class test: the full conformal p-value of class ``c``'s rarity (this frame counted)."""
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
    return (rarer + theta * same) / total


@njit()
def _stream_update(scores, groups, thetas, bag, sizes, state, method, jump, threshold, p_out, stat_out, alarm_out):
    """One batch of frames, in order: p-values, bag insertion, alarm statistic (see module)."""
    for b in range(scores.shape[0]):
        p = _score_step(bag, sizes, groups[b], scores[b], thetas[b])
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
        p = _class_step(counts, classes[b], thetas[b])
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

    def take_remaining(self) -> np.ndarray:
        """The smoothing draws not yet used, in order; they count as used from now on."""
        rest = self._thetas[self._next_theta :].copy()
        self._next_theta = self._thetas.shape[0]
        return rest

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


# The packed state of a stream attached to a monitor (both tests, one column), so that the
# monitor's compiled verdict pass advances it: int64 header slots, then group of each class,
# bag sizes and class counts; float64 jump, threshold, the two alarm states, the smoothing
# draws of each test, then the bags.
(S_COL, S_METHOD, S_G, S_C, S_CAP, S_T, S_CUR, S_CCUR, S_FRAMES, S_FIRST, S_HEADER) = range(11)
SF_STATE, SF_CSTATE, SF_THETAS = 2, 5, 8


class StreamState:
    """A score test and a class test on one column of a monitor, packed for the verdict pass.

    Parameters
    ----------
    column : int
        Score-matrix column the score test follows.
    reference : sequence of numpy.ndarray
        Per calibration group, the column's clean calibration scores (finite).
    group_of : numpy.ndarray
        int64 ``(C,)`` calibration group of each class.
    classes : numpy.ndarray
        int ``(M,)`` predicted classes of the calibration samples (the class test's start).
    delta, method, jump, seed
        As for :class:`Alarm` (each test at this ``delta``).
    """

    def __init__(self, column: int, reference: list[np.ndarray], group_of: np.ndarray, classes: np.ndarray,
                 delta: float = 0.01, method: str = "jumper", jump: float = 0.01, seed: int = 0) -> None:
        score, cls = StreamTest(reference, delta, method, jump, seed), ClassStreamTest(
            classes, group_of.shape[0], delta, method, jump, seed + 1)
        if int(column) < 0:
            raise InputError(f"column must be >= 0 (an index into the score matrix), got {column}")
        group_of = np.ascontiguousarray(group_of, np.int64)
        if group_of.min() < 0 or group_of.max() >= score.sizes.shape[0]:
            raise InputError(f"group_of must name the {score.sizes.shape[0]} calibration groups")
        self._score, self._class = score, cls
        G, C = score.sizes.shape[0], group_of.shape[0]
        self.column = int(column)
        self.ints = np.zeros(S_HEADER + C + G + C, np.int64)
        self.ints[[S_COL, S_METHOD, S_G, S_C]] = self.column, score.method_code, G, C
        self.ints[S_FIRST] = -1
        self.ints[S_HEADER : S_HEADER + C] = group_of
        self.ints[S_HEADER + C : S_HEADER + C + G] = score.sizes
        self.ints[S_HEADER + C + G :] = cls.counts
        self.calibration_counts = cls.counts.copy()
        self._block = _THETA_BLOCK
        self._pack(score.bag, score.take_remaining(), cls.take_remaining())
        self.floats[0], self.floats[1] = score.jump, score.threshold
        self.floats[SF_STATE : SF_STATE + 3] = score.state
        self.floats[SF_CSTATE : SF_CSTATE + 3] = cls.state
        self.threshold = score.threshold
        self._checked_for: object = None
        self._left = min(int(self.ints[S_CAP]) - int(score.sizes.max()), int(self.ints[S_T]) - 1)

    def _pack(self, bag: np.ndarray, thetas: np.ndarray, cthetas: np.ndarray, state: np.ndarray | None = None) -> None:
        T = max(self._block, thetas.shape[0], cthetas.shape[0])
        G, cap = bag.shape
        floats = np.zeros(SF_THETAS + 2 * T + G * cap)
        if state is not None:
            floats[:SF_THETAS] = state
        floats[SF_THETAS : SF_THETAS + thetas.shape[0]] = thetas
        floats[SF_THETAS + T : SF_THETAS + T + cthetas.shape[0]] = cthetas
        floats[SF_THETAS + 2 * T :] = bag.reshape(-1)
        self.floats = floats
        self.ints[S_CAP], self.ints[S_T], self.ints[S_CUR], self.ints[S_CCUR] = cap, T, 0, 0

    def _unpack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        T, G, cap = int(self.ints[S_T]), int(self.ints[S_G]), int(self.ints[S_CAP])
        thetas = self.floats[SF_THETAS + int(self.ints[S_CUR]) : SF_THETAS + T]
        cthetas = self.floats[SF_THETAS + T + int(self.ints[S_CCUR]) : SF_THETAS + 2 * T]
        return self.floats[SF_THETAS + 2 * T :].reshape(G, cap), thetas, cthetas

    def arrays_for(self, tables: object, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The packed arrays, with room for ``batch`` more frames (bags grown, draws refilled).

        Parameters
        ----------
        tables : VerdictTables
            The tables of the pass that will advance the stream (checked against the state).
        batch : int
            Frames in the coming call.

        Returns
        -------
        tuple of numpy.ndarray
            ``(int64 state, float64 state)``.

        Raises
        ------
        InputError
            The state does not fit these tables.
        """
        if tables is not self._checked_for:
            if self.column >= getattr(tables, "n_columns", 0) or int(self.ints[S_C]) != getattr(tables, "n_classes", -1):
                raise InputError("this stream state was built for another monitor")
            self._checked_for = tables
        return self._room(batch)

    def _room(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        # Every frame adds one score to one bag and uses one draw of each test: while ``batch``
        # fits in what is left (tracked in Python, no array reads), nothing needs to change.
        if batch > self._left:
            ints = self.ints
            G, C = int(ints[S_G]), int(ints[S_C])
            top = int(ints[S_HEADER + C : S_HEADER + C + G].max())
            bag, thetas, cthetas = self._unpack()
            cap = bag.shape[1]
            if top + batch > cap:
                grown = np.zeros((G, max(top + batch, 2 * cap)))
                grown[:, :cap] = bag
                bag = grown
            self._block = max(self._block, 2 * batch)
            draw = self._score.draws(self._block), self._class.draws(self._block)
            self._pack(bag, np.concatenate([thetas, draw[0]]), np.concatenate([cthetas, draw[1]]),
                       self.floats[:SF_THETAS].copy())
            self._left = min(bag.shape[1] - top, int(self.ints[S_T]))
        self._left -= batch
        return self.ints, self.floats

    def reset(self) -> None:
        """Start new tests (capital 1 / CUSUM 0); what they have seen stays."""
        start = np.full(3, 1.0 / 3.0) if self._score.method == "jumper" else np.zeros(3)
        self.floats[SF_STATE : SF_STATE + 3] = start
        self.floats[SF_CSTATE : SF_CSTATE + 3] = start
        self.ints[S_FIRST] = -1

    @property
    def frames(self) -> int:
        """Frames seen."""
        return int(self.ints[S_FRAMES])

    @property
    def first_alarm(self) -> int | None:
        """Stream index of the first frame at which either test alarmed since the last reset."""
        first = int(self.ints[S_FIRST])
        return None if first < 0 else first

    def statistics(self) -> tuple[float, float]:
        """Current statistics of the score and class tests."""
        s, c = self.floats[SF_STATE : SF_STATE + 3], self.floats[SF_CSTATE : SF_CSTATE + 3]
        if self._score.method == "jumper":
            return float(s.sum()), float(c.sum())
        return float(s[0]), float(c[0])

    def advance(self, score_matrix: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
        """Advance both tests by a batch of frames outside a monitor's call.

        Parameters
        ----------
        score_matrix : numpy.ndarray
            float ``(B, D)``: the followed column is :attr:`column`.
        pred : numpy.ndarray
            int ``(B,)`` predicted classes in ``[0, C)``.

        Returns
        -------
        tuple of numpy.ndarray
            Per frame: the score test's p-value and statistic, the class test's p-value and
            statistic, whether either test alarms, whether the class test does.
        """
        scores = check_array(np.ascontiguousarray(score_matrix, np.float64), "scores", np.float64, (None, None))
        B = scores.shape[0]
        pred = check_array(np.ascontiguousarray(pred, np.int64), "pred", np.int64, (B,))
        C = int(self.ints[S_C])
        if scores.shape[1] <= self.column or (B and not 0 <= pred.min() <= pred.max() < C):
            raise InputError(f"scores need column {self.column} and classes in [0, {C})")
        si, sf = self._room(B)
        out = np.empty((4, B))
        alarms = np.empty((2, B), np.bool_)
        stream_step(si, sf, scores, pred, out[0], out[1], out[2], out[3], alarms[0], alarms[1])
        return out[0], out[1], out[2], out[3], alarms[0], alarms[1]

    def class_counts(self) -> np.ndarray:
        """Predicted-class counts of the stream (calibration samples not included)."""
        C, G = int(self.ints[S_C]), int(self.ints[S_G])
        return self.ints[S_HEADER + C + G :] - self.calibration_counts


@njit()
def stream_step(si, sf, scores, pred, p_out, stat_out, cp_out, cstat_out, alarm_out, calarm_out):
    """Advance an attached stream by a batch of frames, in order; for the verdict pass.

    ``scores`` is the batch's score matrix (the followed column is ``si[S_COL]``), ``pred`` its
    predicted classes. Writes per frame the score test's p-value and statistic, the class
    test's, whether either test is at its threshold, and whether the class test is.
    """
    col, method, G, C, cap, T = si[S_COL], si[S_METHOD], si[S_G], si[S_C], si[S_CAP], si[S_T]
    group_of = si[S_HEADER : S_HEADER + C]
    sizes = si[S_HEADER + C : S_HEADER + C + G]
    counts = si[S_HEADER + C + G : S_HEADER + C + G + C]
    jump, threshold = sf[0], sf[1]
    state = sf[SF_STATE : SF_STATE + 3]
    cstate = sf[SF_CSTATE : SF_CSTATE + 3]
    bag = sf[SF_THETAS + 2 * T : SF_THETAS + 2 * T + G * cap].reshape((G, cap))
    for b in range(pred.shape[0]):
        c = pred[b]
        p = _score_step(bag, sizes, group_of[c], scores[b, col], sf[SF_THETAS + si[S_CUR]])
        si[S_CUR] += 1
        cp = _class_step(counts, c, sf[SF_THETAS + T + si[S_CCUR]])
        si[S_CCUR] += 1
        p_out[b] = p
        cp_out[b] = cp
        stat_out[b] = _bet(state, method, jump, p)
        cstat_out[b] = _bet(cstate, method, jump, cp)
        calarm = cstat_out[b] >= threshold
        alarm = stat_out[b] >= threshold or calarm
        alarm_out[b] = alarm
        calarm_out[b] = calarm
        if alarm and si[S_FIRST] < 0:
            si[S_FIRST] = si[S_FRAMES]
        si[S_FRAMES] += 1
