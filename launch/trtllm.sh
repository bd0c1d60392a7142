#!/usr/bin/env bash
# Build a TensorRT-LLM engine from a minitron checkpoint and measure it, inside NVIDIA's
# TensorRT-LLM container (TensorRT-LLM does not install elsewhere).
#
#   docker run --gpus all --rm -v "$PWD:/work" -w /work nvcr.io/nvidia/tensorrt-llm/release:latest \
#     bash launch/trtllm.sh runs/smollm2/checkpoints/width 1
#
# Arguments: CKPT (a minitron checkpoint) [TP (default 1)]. Variables: OUT (default
# runs/trtllm/<name>), DTYPE (bfloat16), MAX_BATCH (64), MAX_INPUT (1024), MAX_SEQ (2048),
# INPUT_LEN (128), OUTPUT_LEN (128), REQUESTS (256).
set -euo pipefail
CKPT=${1:?usage: launch/trtllm.sh CKPT [TP]}
TP=${2:-1}
OUT=${OUT:-runs/trtllm/$(basename "$CKPT")}
pip install --no-deps -e . >/dev/null 2>&1 || true   # minitron itself; the container has the rest
python -m minitron export --ckpt "$CKPT" --format trtllm --tp "$TP" \
  --dtype "${DTYPE:-bfloat16}" --out "$OUT/checkpoint" --overwrite
python -m minitron export --ckpt "$CKPT" --format hf --out "$OUT/hf" --overwrite   # tokenizer + config
trtllm-build --checkpoint_dir "$OUT/checkpoint" --output_dir "$OUT/engine" --gemm_plugin auto \
  --max_batch_size "${MAX_BATCH:-64}" --max_input_len "${MAX_INPUT:-1024}" \
  --max_seq_len "${MAX_SEQ:-2048}"
# a synthetic dataset of fixed lengths (token ids), the format trtllm-bench reads
python - "$OUT/dataset.jsonl" <<'PY'
import json, os, random, sys
rng = random.Random(0)
n, lin, lout = int(os.environ.get("REQUESTS", 256)), int(os.environ.get("INPUT_LEN", 128)), int(os.environ.get("OUTPUT_LEN", 128))
with open(sys.argv[1], "w") as f:
    for i in range(n):
        f.write(json.dumps({"task_id": i, "input_ids": [rng.randint(100, 20000) for _ in range(lin)], "output_tokens": lout}) + "\n")
PY
trtllm-bench --model "$OUT/hf" throughput --engine_dir "$OUT/engine" --dataset "$OUT/dataset.jsonl" \
  | tee "$OUT/trtllm_bench.txt"
