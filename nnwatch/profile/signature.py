"""Derive scoring tables from a profile: what is rare for each class.

Recomputed whenever ``rare_rate`` or ``min_class_samples`` change (nothing is cached on the
profile itself, so a changed parameter cannot leave stale tables behind).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from .._validate import short_list
from ..errors import InputError
from ..kernels.compact import MAX_SECTIONS, CompactTables, decode, encode_outward, grid, pack_bits
from ..kernels.coverage import CoverageTables
from ..kernels.layout import layer_offsets
from .schema import Profile, check_rate


class FallbackWarning(UserWarning):
    """A class had too few trusted samples and uses the global signature."""


def fallback_classes(profile: Profile, min_class_samples: int) -> list[int]:
    """Classes whose signature is replaced by the global one.

    Parameters
    ----------
    profile : Profile
        The profile.
    min_class_samples : int
        Minimum trusted samples for a class signature.

    Returns
    -------
    list of int
        Class indices.
    """
    return [c for c in range(profile.n_classes) if profile.ranges.count[c] < min_class_samples]


def compile_tables(profile: Profile, rare_rate: float = 0.01, min_class_samples: int = 10,
                   warn: bool = True) -> CoverageTables:
    """Compile a profile into per-class coverage tables.

    Parameters
    ----------
    profile : Profile
        The profile.
    rare_rate : float
        A state (section, on/off, top-k membership) is rare for a class when the share of
        its trusted samples in that state is below this rate.
    min_class_samples : int
        Classes with fewer trusted samples use the global signature (with a warning).
    warn : bool
        Emit :class:`FallbackWarning` for such classes.

    Returns
    -------
    CoverageTables
        Tables with one row per class.
    """
    check_rate(rare_rate)
    if min_class_samples < 1:
        raise InputError(f"min_class_samples must be >= 1, got {min_class_samples}")
    rows = _signature_rows(profile, min_class_samples, warn)
    s = profile.sections
    lo, hi, unit = class_ranges(profile, rows)
    section_rare, on_rare, off_rare, topk_rare = _rarity(profile, rare_rate, rows)
    return CoverageTables(
        offsets=layer_offsets(profile.layer_sizes),
        lo=lo,
        hi=hi,
        inv_width=np.ascontiguousarray(s.inv_width[rows]),
        inv_unit=np.ascontiguousarray(1.0 / unit),
        threshold=np.ascontiguousarray(s.threshold),
        section_rare=section_rare,
        on_rare=on_rare,
        off_rare=off_rare,
        topk_rare=topk_rare,
        k_top=int(profile.header["k_top"]),
    )


def class_ranges(profile: Profile, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neuron ranges of signature rows and the unit ``nb_excess`` measures distance outside them in.

    Parameters
    ----------
    profile : Profile
        The profile.
    rows : numpy.ndarray
        int signature rows (a class, or ``C`` for the global signature).

    Returns
    -------
    tuple
        ``(lo, hi)`` float32 ``(len(rows), N)`` and the unit, float64: the range width, or where
        a class range is a point, a share of the neuron's global range.
    """
    s = profile.sections
    lo = np.ascontiguousarray(s.edges_lo[rows])
    hi = np.ascontiguousarray(s.edges_hi[rows])
    width = hi.astype(np.float64) - lo.astype(np.float64)
    return lo, hi, np.where(width > 0, width, _fallback_unit(s.edges_lo[-1], s.edges_hi[-1]))


def signature_rows(profile: Profile, min_class_samples: int) -> np.ndarray:
    """The signature row of each class: its own, or the global one (``C``) when it has too few samples."""
    return _signature_rows(profile, min_class_samples, warn=False)


def _signature_rows(profile: Profile, min_class_samples: int, warn: bool) -> np.ndarray:
    n_cls = profile.n_classes
    rows = np.arange(n_cls)
    weak = fallback_classes(profile, min_class_samples)
    if weak:
        rows[weak] = n_cls
        if warn:
            warnings.warn(
                f"classes {short_list(weak)} have fewer than {min_class_samples} trusted samples; "
                "they use the global signature", FallbackWarning, stacklevel=3)
    return rows


def _fallback_unit(global_lo: np.ndarray, global_hi: np.ndarray) -> np.ndarray:
    # nb_excess's unit where a class range is a single point: the global width, else 1.
    global_width = global_hi.astype(np.float64) - global_lo.astype(np.float64)
    return np.where(global_width > 0, global_width, 1.0)


def _rarity(profile: Profile, rare_rate: float, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """uint8 ``(section_rare (C, N, k), on_rare, off_rare, topk_rare (C, N))`` of the signature rows."""
    r, s = profile.ranges, profile.sections
    n2 = np.maximum(s.samples[rows], 1).astype(np.float64)[:, None]
    n1 = np.maximum(r.count[rows], 1).astype(np.float64)[:, None]
    on_rate = s.active_count[rows] / n2
    return (np.ascontiguousarray(s.section_hits[rows] / n2[:, :, None] < rare_rate).astype(np.uint8),
            (on_rate < rare_rate).astype(np.uint8), ((1.0 - on_rate) < rare_rate).astype(np.uint8),
            (r.topk_count[rows] / n1 < rare_rate).astype(np.uint8))


def rounded_edges(profile: Profile) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The profile's section edges rounded outward to each neuron's 65,535-step grid.

    Parameters
    ----------
    profile : Profile
        A profile whose section edges are finite.

    Returns
    -------
    tuple of numpy.ndarray
        ``(lo_codes, hi_codes)`` uint16 ``(C + 1, N)`` and the grid ``(base, step)``.

    Raises
    ------
    InputError
        Non-finite edges (a neuron never saw a finite value).
    """
    s = profile.sections
    if not (np.isfinite(s.edges_lo).all() and np.isfinite(s.edges_hi).all()):
        raise InputError("compact tables need finite neuron ranges; this profile has non-finite section edges "
                         "(use the full tables: compact_tables=False)")
    base, step = grid(s.edges_lo, s.edges_hi)
    return (encode_outward(s.edges_lo, base, step, up=False), encode_outward(s.edges_hi, base, step, up=True),
            base, step)


def rounded_profile(profile: Profile) -> Profile:
    """A copy of ``profile`` whose section edges are those the compact tables decode.

    Parameters
    ----------
    profile : Profile
        A profile with finite section edges.

    Returns
    -------
    Profile
        The same statistics with edges rounded outward to each neuron's grid.
    """
    lo_codes, hi_codes, base, step = rounded_edges(profile)
    s = profile.sections
    sections = replace(s, edges_lo=decode(base, step, lo_codes), edges_hi=decode(base, step, hi_codes))
    return replace(profile, sections=sections)


def rounded_tables(profile: Profile, rare_rate: float = 0.01, min_class_samples: int = 10,
                   warn: bool = True) -> CoverageTables:
    """The definition the compact tables implement, as full tables.

    :func:`compile_tables` of :func:`rounded_profile`, except where the profile's range is a
    single point: there the rounded (one-step) range keeps a point's single section and the
    global unit of ``nb_excess``. :func:`compile_compact_tables` scores exactly like these.

    Parameters
    ----------
    profile : Profile
        The profile.
    rare_rate, min_class_samples, warn
        As for :func:`compile_tables`.

    Returns
    -------
    CoverageTables
        Full tables of the definition.
    """
    tables = compile_tables(rounded_profile(profile), rare_rate, min_class_samples, warn)
    rows = _signature_rows(profile, min_class_samples, warn=False)
    s = profile.sections
    point = s.edges_hi[rows] == s.edges_lo[rows]
    unit = _rounded_fallback_unit(*rounded_edges(profile))
    tables.inv_width[point] = 0.0
    tables.inv_unit[point] = np.broadcast_to(1.0 / unit, point.shape)[point]
    return tables


def _rounded_fallback_unit(lo_codes: np.ndarray, hi_codes: np.ndarray, base: np.ndarray,
                           step: np.ndarray) -> np.ndarray:
    # The global row's rounded width, as a point range's nb_excess unit.
    return _fallback_unit(decode(base, step, lo_codes[-1:])[0], decode(base, step, hi_codes[-1:])[0])


def compile_compact_tables(profile: Profile, rare_rate: float = 0.01, min_class_samples: int = 10,
                           warn: bool = True) -> CompactTables:
    """Compile a profile into compact per-class tables (6 bytes per class and neuron).

    Parameters
    ----------
    profile : Profile
        The profile (at most 12 k-sections, finite ranges).
    rare_rate : float
        As for :func:`compile_tables`.
    min_class_samples : int
        As for :func:`compile_tables`.
    warn : bool
        Emit :class:`FallbackWarning` for classes using the global signature.

    Returns
    -------
    CompactTables
        Tables scoring exactly as :func:`rounded_tables`.
    """
    check_rate(rare_rate)
    if min_class_samples < 1:
        raise InputError(f"min_class_samples must be >= 1, got {min_class_samples}")
    rows = _signature_rows(profile, min_class_samples, warn)
    lo_codes, hi_codes, base, step = rounded_edges(profile)
    point = profile.sections.edges_hi[rows] == profile.sections.edges_lo[rows]
    bits = pack_bits(*_rarity(profile, rare_rate, rows), point)
    cells = np.ascontiguousarray(np.stack([lo_codes[rows], hi_codes[rows], bits], axis=2))
    fallback = _rounded_fallback_unit(lo_codes, hi_codes, base, step)
    return CompactTables(offsets=layer_offsets(profile.layer_sizes), base=base, step=step,
                         fallback_unit=np.ascontiguousarray(fallback, np.float64),
                         threshold=np.ascontiguousarray(profile.sections.threshold), cells=cells,
                         k_sections=int(profile.sections.section_hits.shape[2]), k_top=int(profile.header["k_top"]))


def full_tables_bytes(profile: Profile) -> int:
    """Bytes :func:`compile_tables` would allocate for this profile (without compiling it).

    Parameters
    ----------
    profile : Profile
        The profile.

    Returns
    -------
    int
        Bytes of the full tables' per-class arrays.
    """
    n, k = profile.sections.edges_lo.shape[1], profile.sections.section_hits.shape[2]
    return int(profile.n_classes * n * (4 + 4 + 8 + 8 + 3 + k))


def class_gaussian(profile: Profile, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the shared (tied) precision matrix of the feature layer.

    Parameters
    ----------
    profile : Profile
        A profile built with a ``feature_layer``.
    ridge : float
        Added to the covariance diagonal, relative to its mean variance.

    Returns
    -------
    tuple of numpy.ndarray
        ``means (C, D)`` (classes without samples get the global mean) and ``precision (D, D)``.

    Raises
    ------
    InputError
        The profile tracks no feature layer.
    """
    r = profile.ranges
    if r.feat_outer.size == 0:
        raise InputError("this profile has no feature layer; rebuild it with a penultimate layer tapped")
    counts = r.count.astype(np.float64)
    means = r.feat_sum / np.maximum(counts, 1)[:, None]
    cls_means = np.where(counts[:-1, None] > 0, means[:-1], means[-1])
    n = max(counts[-1], 1.0)
    # Within-class scatter = sum x x^T - sum_c n_c mu_c mu_c^T, as one (D, C) @ (C, D) product
    # (never a (C, D, D) array: 8 GB for a 1000-class model with 1024 features).
    within = r.feat_outer - (means[:-1].T * counts[:-1]) @ means[:-1]
    return cls_means, regularized_precision(within / n, ridge)


def feature_mean(profile: Profile) -> np.ndarray:
    """Mean of all trusted penultimate features.

    Parameters
    ----------
    profile : Profile
        A profile built with a ``feature_layer``.

    Returns
    -------
    numpy.ndarray
        float64 ``(D,)``.
    """
    return profile.ranges.feat_sum[-1] / max(float(profile.ranges.count[-1]), 1.0)


def background_gaussian(profile: Profile, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of all trusted penultimate features together (one Gaussian).

    Parameters
    ----------
    profile : Profile
        A profile built with a ``feature_layer``.
    ridge : float
        Added to the covariance diagonal, relative to its mean variance.

    Returns
    -------
    tuple of numpy.ndarray
        ``mean (D,)`` and ``precision (D, D)``.

    Raises
    ------
    InputError
        The profile tracks no feature layer.
    """
    r = profile.ranges
    if r.feat_outer.size == 0:
        raise InputError("this profile has no feature layer; rebuild it with a penultimate layer tapped")
    n = max(float(r.count[-1]), 1.0)
    mean = feature_mean(profile)
    return mean, regularized_precision(r.feat_outer / n - np.outer(mean, mean), ridge)


def regularized_precision(cov: np.ndarray, ridge: float) -> np.ndarray:
    """Inverse of a symmetrized covariance with a ridge relative to its mean variance.

    Parameters
    ----------
    cov : numpy.ndarray
        ``(D, D)`` covariance (rounding may have made it slightly asymmetric).
    ridge : float
        Added to the diagonal, times the mean variance; keeps singular directions finite.

    Returns
    -------
    numpy.ndarray
        ``(D, D)`` precision.
    """
    cov = (cov + cov.T) / 2
    scale = max(float(np.trace(cov)) / cov.shape[0], 1e-12)
    return np.linalg.pinv(cov + ridge * scale * np.eye(cov.shape[0]), hermitian=True)


COMPACT_ABOVE_BYTES = 32 * 2**20


def compact_by_default(profile: Profile) -> bool:
    """Whether a Monitor compiles compact tables when not told: when the full tables would
    exceed 32 MiB (many classes) and the profile allows it (<= 12 k-sections, finite ranges).
    """
    s = profile.sections
    return (full_tables_bytes(profile) > COMPACT_ABOVE_BYTES and s.section_hits.shape[2] <= MAX_SECTIONS
            and bool(np.isfinite(s.edges_lo).all() and np.isfinite(s.edges_hi).all()))
