#!/usr/bin/env bash
# One-shot training-throughput benchmark for a lent GPU (H100/H200): the full-size model, bf16 autocast, batch 32,
# with and without the audio cache, with and without gradient checkpointing, sdpa attention.
#
#   bash benchmarks/gpu_train.sh                    # on the GPU machine; the table goes to stdout and $OUT if set
#   DEVICE=cpu bash benchmarks/gpu_train.sh --size tiny --batch-sizes 2 --steps 1 --warmup 0   # CPU check of the path
#
# Extra arguments are passed to bench_train.py after the preset, so they override it. Four subprocesses, each building
# the model and timing 3 + 10 steps; meant to fit in one device call (pass a timeout that leaves room for a rerun).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
DEVICE="${DEVICE:-cuda}"

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

table="$("$PYTHON" benchmarks/bench_train.py --device "$DEVICE" --dtype bf16 --batch-sizes 32 \
    --configs sdpa/ast sdpa/cache --gradient-checkpointing off on --warmup 3 --steps 10 "$@")"
echo "$table"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    printf '%s\n\nCommand: bash benchmarks/gpu_train.sh %s\n' "$table" "$*" > "$OUT/bench_train_gpu.md"
fi
