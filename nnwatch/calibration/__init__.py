"""Conformal calibration: the rules that turn clean held-out scores into guaranteed flags.

- :mod:`~nnwatch.calibration.groups`: which classes get a threshold of their own, conformal
  tables from scores, and the settings a calibration depends on;
- :mod:`~nnwatch.calibration.fused_verdict`: the fused verdict (members, split, tables);
- :mod:`~nnwatch.calibration.calibrate`: the driver that runs a monitor over clean data.

The compiled arithmetic (p-values, counts, the fused statistic) is in :mod:`nnwatch.kernels`.
"""
