"""The monitor compiled into ONNX: the verdict as standard operators any ONNX runtime executes.

A second compilation of the definitions in :mod:`nnwatch.kernels.reference` and
:mod:`nnwatch.kernels.verdict` (the first is the Numba pass), built with ``onnx_ir``:

- :mod:`~nnwatch.graphs.verdict_graph`: the verdict subgraph (prediction, coverage family,
  logit scores, Mahalanobis, conformal counts and p-values, the fused verdict, flags);
- :mod:`~nnwatch.graphs.assemble`: the tapped model with one verdict input, the verdict
  model, and the merged model, with their metadata.

Needs the ``compile`` extra (``onnx-ir``); the Numba path never imports this package.
"""
