"""Built-in detectors: coverage (Rossolini et al.) and logit/feature baselines."""

from . import baselines, coverage  # noqa: F401  (registration side effect)

COVERAGE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage")
BASELINES = ("msp", "max_logit", "energy", "mahalanobis")
DEFAULT = COVERAGE + BASELINES
