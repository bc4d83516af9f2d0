"""The language monitor: safety detectors for language and vision-language models, with the
classifier Monitor's contract (Verdicts, conformal p-values, budgets).

- :mod:`.monitor`: prompts -> Verdicts; calibration on benign prompts;
- :mod:`.scores`: the detectors (the published single head of "One Head to Rule Them All",
  NeurIPS 2025, a multi-head angle probe, refusal directions, residual probes, MLP coverage,
  prompt length as the baseline);
- :mod:`.search`, :mod:`.fit`, :mod:`.training`, :mod:`.augment`: head search, choices by
  cross-validation on training prompts, this project's jailbreak-style wrappers;
- :mod:`.detector`: the fitted file (checked JSON, tied to one model);
- :mod:`.evaluate`, :mod:`.bench`, :mod:`.report`: operating points, costs, plots;
- :mod:`.arch`, :mod:`.torch_scorer`, :mod:`.collect`: where heads live, the hooked passes
  (shared lower layers and prompt prefixes), sweeps over many prompts;
- :mod:`.onnx_backend`: the prefill exported with a head-scale input;
- :mod:`.guard`: generation that starts from a refusal for flagged prompts.

Needs the ``llm`` extra (transformers, Pillow for images); detector files load with numpy.
"""
