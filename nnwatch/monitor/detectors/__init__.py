"""Built-in detectors: coverage (Rossolini et al.), logit and feature-space baselines, the fused verdict.

``DEFAULT`` is what a runtime monitor runs unless told otherwise: every column of the coverage
kernel, the logit scores, the feature Mahalanobis score and the fused verdict over them, which
decides once calibrated. ``ALL`` adds every other detector (evaluation, or opt-in by name);
the heavier ones (``knn``, ``boxes``, the activation-shaping family) cost more per call.
"""

from . import baselines, coverage, fdbd, features, fused, gen, layers, nci, react, rmd, shaping, vim  # noqa: F401  (registration side effect)

COVERAGE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage")
LOGITS = ("msp", "max_logit", "energy")
DEFAULT = COVERAGE + LOGITS + ("mahalanobis", "fused")
MORE = ("knn", "boxes", "gen", "rmd", "react", "fdbd", "ash", "scale", "vim", "nci", "mahalanobis_layers")
ALL = DEFAULT + MORE
