"""The monitor's fused epilogue for coverage detectors: argmax, scores, flags, confidence.

After a large inference the caches are cold and every separate numpy call pays for it; doing
the per-sample bookkeeping in one compiled pass keeps the monitor's own time small. Results
are identical to the general (per-detector) path; tests compare the two.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit

COMBINED = 5  # detector id of the combined score; ids 0..4 are coverage columns


@njit()
def argmax_rows(logits, pred):
    """First index of the maximum of each row (NaN rows give the first NaN, like numpy)."""
    for b in range(logits.shape[0]):
        best = 0
        bv = logits[b, 0]
        if not np.isnan(bv):
            for k in range(1, logits.shape[1]):
                v = logits[b, k]
                if np.isnan(v):
                    best = k
                    break
                if v > bv:
                    bv = v
                    best = k
        pred[b] = best


@njit()
def decide(cov, nonfinite_in, det_ids, thr, has_thr, decision, cal_flat, cal_off, pred,
           scores, flags, flag, conf):
    """Per sample: scores of the chosen coverage detectors, flags, decision flag, confidence."""
    n_det = det_ids.shape[0]
    inf = np.inf
    for b in range(cov.shape[0]):
        bad_acts = cov[b, 5] > 0
        c = pred[b]
        for j in range(n_det):
            d = det_ids[j]
            if bad_acts or nonfinite_in[b]:
                s = inf
            elif d == COMBINED:
                s = (cov[b, 0] + cov[b, 1] + cov[b, 2] + cov[b, 3]) * 0.25
            else:
                s = cov[b, d]
            scores[b, j] = s
            flags[b, j] = has_thr[j] and s > thr[c, j]
        flag[b] = (has_thr[decision] and flags[b, decision]) or nonfinite_in[b]
        if cal_off.shape[0] == 0:
            conf[b] = np.nan
        elif nonfinite_in[b]:
            conf[b] = 0.0
        else:
            s = scores[b, decision]
            lo = cal_off[c]
            hi = cal_off[c + 1]
            n = hi - lo
            # lower bound: first calibration score >= s
            left, right = lo, hi
            while left < right:
                mid = (left + right) // 2
                if cal_flat[mid] < s:
                    left = mid + 1
                else:
                    right = mid
            conf[b] = (1.0 + (hi - left)) / (n + 1.0)
