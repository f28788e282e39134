#!/usr/bin/env bash
# The GPU check of the paper's model, one table, under 8 minutes on one GPU (benchmarks/bench_gpu.py):
# training steps/s in float32 and bf16-mixed at the paper's batch, whether cuDNN runs the LSTM,
# the separation real-time factor, the fast BSS Eval on the GPU against the CPU.
# Without a GPU: the same code on the CPU at tiny sizes (says so; checks the script, measures nothing).
#
#   bash benchmarks/gpu_check.sh            # options are bench_gpu.py's (--steps, --song_seconds, --bss_seconds, --cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
echo "gpu_check: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -n), load: $(cut -d' ' -f1-3 /proc/loadavg)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv,noheader || true
fi
exec timeout 470 "$PY" benchmarks/bench_gpu.py "$@"
