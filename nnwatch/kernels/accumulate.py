"""Streaming accumulation of a profile's statistics, one batch at a time.

Row ``c`` of every array holds class ``c``; the last row holds all classes together.
Samples labelled ``-1`` are skipped (not trusted).

Pass 1 (no range needed): count, min, max, mean and M2 (Welford), top-k membership counts.
Pass 2 (needs pass 1's ranges and thresholds): k-section hit counts, active counts, and
counts of values outside the range (0 when pass 2 sees the same data as pass 1).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array
from ..errors import InputError
from ._jit import njit
from .topk import topk_insert


@njit()
def _pass1(buf, batch, off, labels, count, mn, mx, mean, m2, topk_count, k_top, best_v, best_i):
    n_layers = off.shape[0] - 1
    n_total = off[n_layers]
    glob = count.shape[0] - 1
    for b in range(batch):
        c = labels[b]
        if c < 0:
            continue
        count[c] += 1
        count[glob] += 1
        inv_c = 1.0 / count[c]
        inv_g = 1.0 / count[glob]
        for layer in range(n_layers):
            start = off[layer]
            n_l = off[layer + 1] - start
            base = b * n_total + start
            kk = min(k_top, n_l)
            filled = 0
            for j in range(n_l):
                n = start + j
                v = buf[base + j]
                x = np.float64(v)
                for row, inv in ((c, inv_c), (glob, inv_g)):
                    if v < mn[row, n]:
                        mn[row, n] = v
                    if v > mx[row, n]:
                        mx[row, n] = v
                    delta = x - mean[row, n]
                    mean[row, n] += delta * inv
                    m2[row, n] += delta * (x - mean[row, n])
                filled = topk_insert(v, j, filled, kk, best_v, best_i)
            for t in range(filled):
                topk_count[c, start + best_i[t]] += 1
                topk_count[glob, start + best_i[t]] += 1


@njit()
def _pass2(buf, batch, off, labels, lo, hi, inv_w, thr, section_hits, active_count, outside_count):
    n_layers = off.shape[0] - 1
    glob = lo.shape[0] - 1
    n_total = off[n_layers]
    k = section_hits.shape[2]
    for b in range(batch):
        c = labels[b]
        if c < 0:
            continue
        for layer in range(n_layers):
            start = off[layer]
            n_l = off[layer + 1] - start
            base = b * n_total + start
            for j in range(n_l):
                n = start + j
                v = buf[base + j]
                active = v > thr[n]
                for row in (c, glob):
                    if active:
                        active_count[row, n] += 1
                    low = lo[row, n]
                    if v >= low and v <= hi[row, n]:
                        s = int((np.float64(v) - np.float64(low)) * inv_w[row, n])
                        if s >= k:
                            s = k - 1
                        section_hits[row, n, s] += 1
                    else:
                        outside_count[row, n] += 1


def _check_pass(buf: np.ndarray, batch: int, offsets: np.ndarray, labels: np.ndarray, rows: int) -> int:
    check_array(offsets, "offsets", np.int64, (None,))
    if offsets.size < 2 or offsets[0] != 0 or (np.diff(offsets) < 1).any():
        raise InputError("offsets must start at 0 and grow by at least 1 per layer")
    n = int(offsets[-1])
    if isinstance(batch, bool) or int(batch) < 0:
        raise InputError(f"batch must be >= 0, got {batch}")
    check_array(buf, "buf", np.float32, (int(batch) * n,))
    check_array(labels, "labels", np.int64, (int(batch),), contiguous=False)
    if labels.size and (labels.min() < -1 or labels.max() >= rows - 1):
        raise InputError(f"labels must be in [-1, {rows - 1}) (-1 = skip)")
    return n


def accumulate_ranges(buf: np.ndarray, batch: int, offsets: np.ndarray, labels: np.ndarray, count: np.ndarray,
                      mn: np.ndarray, mx: np.ndarray, mean: np.ndarray, m2: np.ndarray, topk_count: np.ndarray,
                      k_top: int) -> None:
    """Pass 1: add one sample-major batch to per-class (and global) ranges, moments, top-k counts.

    Parameters
    ----------
    buf : numpy.ndarray
        float32 ``(B * N,)`` sample-major activations (finite for every labelled sample).
    batch : int
        ``B``.
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets.
    labels : numpy.ndarray
        int64 ``(B,)`` class per sample in ``[0, C)``, -1 = skip.
    count : numpy.ndarray
        int64 ``(C + 1,)``, updated in place (last row: all classes).
    mn, mx : numpy.ndarray
        float32 ``(C + 1, N)``, updated in place.
    mean, m2 : numpy.ndarray
        float64 ``(C + 1, N)``, updated in place (Welford).
    topk_count : numpy.ndarray
        int64 ``(C + 1, N)``, updated in place.
    k_top : int
        k of top-k membership (>= 1).

    Raises
    ------
    InputError
        Wrong dtype, shape or layout, or a label out of range.
    """
    rows = check_array(count, "count", np.int64, (None,), writeable=True).shape[0]
    n = _check_pass(buf, batch, offsets, labels, rows)
    for name, arr, dtype in (("min", mn, np.float32), ("max", mx, np.float32), ("mean", mean, np.float64),
                             ("m2", m2, np.float64), ("topk_count", topk_count, np.int64)):
        check_array(arr, name, dtype, (rows, n), writeable=True)
    if int(k_top) < 1:
        raise InputError(f"k_top must be >= 1, got {k_top}")
    best_v = np.empty(int(k_top), np.float32)
    best_i = np.empty(int(k_top), np.int64)
    _pass1(buf, int(batch), offsets, labels, count, mn, mx, mean, m2, topk_count, int(k_top), best_v, best_i)


def accumulate_sections(buf: np.ndarray, batch: int, offsets: np.ndarray, labels: np.ndarray, lo: np.ndarray,
                        hi: np.ndarray, inv_width: np.ndarray, threshold: np.ndarray, section_hits: np.ndarray,
                        active_count: np.ndarray, outside_count: np.ndarray) -> None:
    """Pass 2: add one sample-major batch to k-section, active and outside counts.

    Parameters
    ----------
    buf : numpy.ndarray
        float32 ``(B * N,)`` sample-major activations.
    batch : int
        ``B``.
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets.
    labels : numpy.ndarray
        int64 ``(B,)`` class per sample in ``[0, C)``, -1 = skip.
    lo, hi : numpy.ndarray
        float32 ``(C + 1, N)`` section edges.
    inv_width : numpy.ndarray
        float64 ``(C + 1, N)``: ``k / (hi - lo)``, 0 for empty ranges.
    threshold : numpy.ndarray
        float32 ``(N,)`` activation thresholds.
    section_hits : numpy.ndarray
        int64 ``(C + 1, N, k)``, updated in place.
    active_count, outside_count : numpy.ndarray
        int64 ``(C + 1, N)``, updated in place.

    Raises
    ------
    InputError
        Wrong dtype, shape or layout, or a label out of range.
    """
    rows = check_array(lo, "lo", np.float32, (None, None)).shape[0]
    n = _check_pass(buf, batch, offsets, labels, rows)
    check_array(hi, "hi", np.float32, (rows, n))
    check_array(inv_width, "inv_width", np.float64, (rows, n))
    check_array(threshold, "threshold", np.float32, (n,))
    hits = check_array(section_hits, "section_hits", np.int64, (rows, n, None), writeable=True)
    if hits.shape[2] < 1:
        raise InputError("section_hits needs at least one section")
    check_array(active_count, "active_count", np.int64, (rows, n), writeable=True)
    check_array(outside_count, "outside_count", np.int64, (rows, n), writeable=True)
    _pass2(buf, int(batch), offsets, labels, lo, hi, inv_width, threshold, section_hits, active_count, outside_count)


@njit()
def _reduce_maps(maps, out, batch, channels, spatial, use_max):
    # maps: (B * C * S,) row-major (B, C, S); out: (B * C,) block of the layer buffer.
    for b in range(batch):
        for ch in range(channels):
            base = (b * channels + ch) * spatial
            if use_max:
                acc = maps[base]
                for s in range(1, spatial):
                    if maps[base + s] > acc:
                        acc = maps[base + s]
                out[b * channels + ch] = acc
            else:
                total = 0.0
                for s in range(spatial):
                    total += maps[base + s]
                out[b * channels + ch] = total / spatial


def reduce_maps(maps: np.ndarray, out: np.ndarray, use_max: bool) -> None:
    """Reduce ``(B, C, ...)`` feature maps to ``(B, C)`` per-channel means or maxima.

    Parameters
    ----------
    maps : numpy.ndarray
        float32 C-contiguous ``(B, C, *spatial)``.
    out : numpy.ndarray
        float32 contiguous destination with ``B * C`` elements (a layer block).
    use_max : bool
        Spatial max instead of mean.
    """
    batch, channels = maps.shape[0], maps.shape[1]
    spatial = maps.size // max(batch * channels, 1)
    _reduce_maps(maps.reshape(-1), out.reshape(-1), batch, channels, spatial, use_max)


@njit()
def _nonfinite_rows(bits, batch, width, exp_mask, out):
    # Integer test on the raw bits (exponent all ones = Inf or NaN): vectorizes, unlike a
    # float reduction under our fastmath policy (no reassociation).
    for b in range(batch):
        n = 0
        base = b * width
        for j in range(width):
            n += (bits[base + j] & exp_mask) == exp_mask
        out[b] = n


_BITS = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF0000000000000)}


def count_nonfinite_rows(x: np.ndarray) -> np.ndarray:
    """Number of NaN/Inf values in each sample of a float batch.

    Parameters
    ----------
    x : numpy.ndarray
        C-contiguous float ``(B, ...)``.

    Returns
    -------
    numpy.ndarray
        int64 ``(B,)``.
    """
    batch = x.shape[0]
    out = np.empty(batch, np.int64)
    utype, mask = _BITS[x.dtype.itemsize]
    bits = np.ascontiguousarray(x).reshape(-1).view(utype)
    _nonfinite_rows(bits, batch, x.size // max(batch, 1), utype(mask), out)
    return out


@njit(exact=True)
def _dequantize(q, scale, zero_point, out):
    # Same arithmetic as onnxruntime's DequantizeLinear: float32((q - zp)) * scale.
    for i in range(q.shape[0]):
        out[i] = np.float32(np.int32(q[i]) - zero_point) * scale


def dequantize(q: np.ndarray, scale: float, zero_point: int, out: np.ndarray) -> None:
    """Write ``(q - zero_point) * scale`` into ``out`` (float32), as DequantizeLinear does.

    Parameters
    ----------
    q : numpy.ndarray
        C-contiguous uint8 or int8 tensor.
    scale : float
        Quantization scale (> 0).
    zero_point : int
        Quantization zero point, within the range of ``q``'s type.
    out : numpy.ndarray
        C-contiguous float32, same number of elements.

    Raises
    ------
    InputError
        Wrong dtypes, sizes, layout or parameters.
    """
    if q.dtype not in (np.uint8, np.int8) or out.dtype != np.float32:
        raise InputError(f"dequantize: need uint8/int8 -> float32, got {q.dtype} -> {out.dtype}")
    if q.size != out.size or not (q.flags.c_contiguous and out.flags.c_contiguous):
        raise InputError(f"dequantize: q ({q.size} values) and out ({out.size}) must be C-contiguous and equal in size")
    info = np.iinfo(q.dtype)
    if not (np.isfinite(scale) and scale > 0) or not info.min <= zero_point <= info.max:
        raise InputError(f"dequantize: scale {scale} must be finite and > 0, zero point {zero_point} in "
                         f"[{info.min}, {info.max}]")
    _dequantize(q.reshape(-1), np.float32(scale), np.int32(zero_point), out.reshape(-1))
