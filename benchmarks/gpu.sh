#!/usr/bin/env bash
# Everything worth measuring on one lent GPU (H100/H200 class) in one call of at most 10 minutes: training step time,
# peak memory and model FLOPs utilisation at batch 32/64/128 in bf16 with and without the audio cache and gradient
# checkpointing, embedding throughput, and 1M-video search latency. Writes $OUT/gpu_benchmarks.md (default: the
# current folder) and prints it. Exit status 1 if a section failed or overran; its message is in the report.
#
#   OUT=results bash benchmarks/gpu.sh              # on the GPU machine (pass a timeout of about 11 minutes)
#   OUT=/tmp/dry bash benchmarks/gpu.sh --dry-run   # CPU, tiny model, small sizes: checks every step end to end
#
# Extra arguments go to benchmarks/bench_gpu.py (e.g. --sections train, --peak-tflops 989).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"

if [[ " $* " != *" --dry-run "* ]]; then
    if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
        echo "gpu.sh: no NVIDIA GPU answers nvidia-smi; on a CPU machine run 'bash benchmarks/gpu.sh --dry-run'" >&2
        exit 1
    fi
fi
exec "$PYTHON" benchmarks/bench_gpu.py --out "${OUT:-.}" "$@"
