"""Built-in detectors: coverage (Rossolini et al.), logit baselines, feature-space baselines."""

from . import baselines, coverage, fdbd, features, gen, layers, nci, react, rmd, shaping, vim  # noqa: F401  (registration side effect)

COVERAGE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage")
BASELINES = ("msp", "max_logit", "energy", "mahalanobis", "knn", "boxes")
DEFAULT = COVERAGE + BASELINES
# Registered and tested, not yet in the default set (their evaluation comes with the fused verdict).
MORE = ("gen", "rmd", "react", "fdbd", "ash", "scale", "vim", "nci", "mahalanobis_layers")
