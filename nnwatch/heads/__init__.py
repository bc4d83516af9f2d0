"""The single-head safety score ("One Head to Rule Them All", NeurIPS 2025) as an nnwatch detector.

- :mod:`.arch`: where heads live in Llama/Qwen/SmolLM-style and LLaVA-style models;
- :mod:`.torch_scorer`: the score with hooks (no weight edits, thread-safe), sharing the
  layers below the masked one and common prompt prefixes;
- :mod:`.onnx_backend`: the prefill exported with a head-scale input, plain and masked
  passes as one onnxruntime batch;
- :mod:`.search`, :mod:`.detector`: head search, thresholds, the fitted detector file;
- :mod:`.evaluate`, :mod:`.latency`, :mod:`.report`: comparison with probes and prompt
  length, costs, plots;
- :mod:`.guard`: generation that starts from a refusal for flagged prompts.

Needs the ``llm`` extra (transformers); the ONNX scorer and detector files need only numpy
and onnxruntime.
"""
