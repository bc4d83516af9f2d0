"""Derive scoring tables from a profile: what is rare for each class.

Recomputed whenever ``rare_rate`` or ``min_class_samples`` change (nothing is cached on the
profile itself, so a changed parameter cannot leave stale tables behind).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError
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
    n_cls = profile.n_classes
    rows = np.arange(n_cls)
    weak = fallback_classes(profile, min_class_samples)
    if weak:
        rows[weak] = n_cls
        if warn:
            warnings.warn(
                f"classes {weak} have fewer than {min_class_samples} trusted samples; "
                "they use the global signature", FallbackWarning, stacklevel=2)
    r, s = profile.ranges, profile.sections
    lo = np.ascontiguousarray(s.edges_lo[rows])
    hi = np.ascontiguousarray(s.edges_hi[rows])
    width = hi.astype(np.float64) - lo.astype(np.float64)
    global_width = np.broadcast_to(s.edges_hi[-1].astype(np.float64) - s.edges_lo[-1], width.shape)
    unit = np.where(width > 0, width, np.where(global_width > 0, global_width, 1.0))
    n2 = np.maximum(s.samples[rows], 1).astype(np.float64)[:, None]
    n1 = np.maximum(r.count[rows], 1).astype(np.float64)[:, None]
    on_rate = s.active_count[rows] / n2
    return CoverageTables(
        offsets=layer_offsets(profile.layer_sizes),
        lo=lo,
        hi=hi,
        inv_width=np.ascontiguousarray(s.inv_width[rows]),
        inv_unit=np.ascontiguousarray(1.0 / unit),
        threshold=np.ascontiguousarray(s.threshold),
        section_rare=np.ascontiguousarray(s.section_hits[rows] / n2[:, :, None] < rare_rate).astype(np.uint8),
        on_rare=(on_rate < rare_rate).astype(np.uint8),
        off_rare=((1.0 - on_rate) < rare_rate).astype(np.uint8),
        topk_rare=(r.topk_count[rows] / n1 < rare_rate).astype(np.uint8),
        k_top=int(profile.header["k_top"]),
    )


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
