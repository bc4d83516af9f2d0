"""Built-in detectors: coverage (Rossolini et al.), logit baselines, feature-space baselines."""

from . import baselines, coverage, features  # noqa: F401  (registration side effect)

COVERAGE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage")
BASELINES = ("msp", "max_logit", "energy", "mahalanobis", "knn", "boxes")
DEFAULT = COVERAGE + BASELINES
