#!/usr/bin/env bash
# The GPU rows of docs/results.md, made in one go on a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu.sh [ORT_GPU_ARCHIVE]
#
# Needs python3 with numpy, numba, onnx, torch (+ onnxscript) and scikit-learn, and
# onnxruntime-gpu for the machine's CUDA: installed, or given as a .tar.xz of its package
# folders (unpacked to /tmp/site and put first on PYTHONPATH). CUDA libraries that come as
# pip packages (nvidia-*) are put on LD_LIBRARY_PATH. Runs the GPU tests, then writes
# benchmarks/results/overhead_gpu_<model>.* (also copied to $OUT when set), one model at a time
# so that a run cut short keeps what it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    mkdir -p /tmp/site && tar -xJf "$1" -C /tmp/site || exit 2
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
LIBS=$(python3 -c 'import glob, os, site
dirs = {os.path.dirname(f) for sp in site.getsitepackages() for f in glob.glob(sp + "/nvidia/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))')
export LD_LIBRARY_PATH=$LIBS:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
python3 -c 'import onnxruntime as o, sys; print("onnxruntime", o.__version__, o.get_available_providers())
from nnwatch.monitor.providers import working_providers; found = working_providers(); print("working:", found)
sys.exit(0 if "CUDAExecutionProvider" in found else 2)' || {
    echo "gpu.sh: no working CUDA execution provider here; run it on a machine with an NVIDIA GPU and" \
         "onnxruntime-gpu for its CUDA (or pass an archive of onnxruntime-gpu's package folders)" >&2
    exit 2
}
python3 -m pytest -q -p no:cacheprovider -rs tests/monitor/test_gpu.py tests/export/test_quantized.py 2>&1 \
    | tee "${OUT:-/tmp}/gpu_tests.txt" | tail -15
TESTS=${PIPESTATUS[0]}
cd benchmarks
for model in ${MODELS:-resnet18 mobilenet_v3_small lenet}; do
    # results go to benchmarks/results (the recorded command stays a relative one); copied to $OUT if set
    python3 overhead.py --providers cuda --precisions fp32 fp16 int8 --models $model --budget-s ${BUDGET_S:-4} \
        --name "overhead_gpu_$model" 2>&1 | grep -E "done|Error|error|failed"
    [ -n "${OUT:-}" ] && cp results/overhead_gpu_$model.* "$OUT"/
done
if [ "$TESTS" -ne 0 ]; then echo "gpu.sh: the GPU tests failed (see gpu_tests.txt)" >&2; exit 1; fi
