"""Built-in detectors: coverage (Rossolini et al.), logit and feature-space baselines, the fused verdict.

``DEFAULT`` is what a monitor runs unless told otherwise: every column of the coverage kernel
and the logit scores (all computed in compiled passes), the feature Mahalanobis score, and the
fused verdict, which decides once calibrated. Calibration picks the fused verdict's members
among them from clean data and counted cost (``nnwatch.calibration.fused_verdict``); afterwards a
monitor built with ``detectors=None`` runs the compiled columns and the members only, so a
Python detector left out of the fusion costs nothing at run time. ``ALL`` adds every other
detector (evaluation, or opt-in by name).
"""

COVERAGE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage")
LOGITS = ("msp", "max_logit", "energy")
COMPILED = COVERAGE + LOGITS  # columns of the compiled passes: nearly free
DEFAULT = COMPILED + ("mahalanobis", "fused")
MORE = ("knn", "boxes", "gen", "rmd", "react", "fdbd", "ash", "scale", "vim", "nci", "mahalanobis_layers", "doctor")
ALL = DEFAULT + MORE
# The classes behind these names are listed in nnwatch.monitor.registry.
