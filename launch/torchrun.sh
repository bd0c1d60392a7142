#!/usr/bin/env bash
# Single-node launcher: any minitron command on NPROC processes (one per GPU, or gloo ranks on CPU).
#
#   launch/torchrun.sh 4 import --hf /models/Llama-3.1-8B --out ckpt/llama --tp 2 --pp 2
#   NPROC=2 launch/torchrun.sh loss --model ckpt/llama data.paths=[data/builtin] tp=2
#
# Variables: NPROC (default: first argument, else the GPU count, else 1),
# MASTER_PORT (default 29500), OMP_NUM_THREADS (default: cores / NPROC on CPU).
set -euo pipefail
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then NPROC=$1; shift; fi
if [ -z "${NPROC:-}" ]; then
  NPROC=$(nvidia-smi -L 2>/dev/null | wc -l || true)
  [ "${NPROC:-0}" -ge 1 ] || NPROC=1
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
fi
exec torchrun --standalone --nproc_per_node "$NPROC" --master_port "${MASTER_PORT:-29500}" \
  -m minitron "$@"
