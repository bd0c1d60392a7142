#!/usr/bin/env bash
# Serve-benchmark a minitron checkpoint with TensorRT-LLM, inside NVIDIA's TensorRT-LLM
# container (TensorRT-LLM does not install elsewhere). Two routes:
#
#   ROUTE=pytorch (default): TensorRT-LLM's PyTorch backend on the Hugging Face export; no
#     engine build. The only route from TensorRT-LLM 1.3 on (the TensorRT engine backend
#     and trtllm-build were removed), and the default since 1.0.
#       docker run --gpus all --rm -v "$PWD:/work" -w /work \
#         nvcr.io/nvidia/tensorrt-llm/release:1.0.0 bash launch/trtllm.sh CKPT [TP]
#     (any release >= 1.0 works for this route, newer ones included)
#
#   ROUTE=engine: minitron's TensorRT-LLM checkpoint -> trtllm-build -> an engine, run with
#     `trtllm-bench --backend tensorrt --engine_dir`. Needs a release that still has the
#     engine backend: pin 1.0.0 (its trtllm-bench lists --backend tensorrt); 1.3 and later
#     do not have it.
#       docker run --gpus all --rm -v "$PWD:/work" -w /work -e ROUTE=engine \
#         nvcr.io/nvidia/tensorrt-llm/release:1.0.0 bash launch/trtllm.sh CKPT [TP]
#
# Arguments: CKPT (a minitron checkpoint) [TP (default 1)]. Variables: OUT (default
# runs/trtllm/<name>), DTYPE (bfloat16), MAX_BATCH (64), MAX_INPUT (1024), MAX_SEQ (2048),
# INPUT_LEN (128), OUTPUT_LEN (128), REQUESTS (256).
set -euo pipefail
CKPT=${1:?usage: launch/trtllm.sh CKPT [TP]}
TP=${2:-1}
ROUTE=${ROUTE:-pytorch}
OUT=${OUT:-runs/trtllm/$(basename "$CKPT")}
case "$ROUTE" in
  pytorch|engine) ;;
  *) echo "ROUTE=$ROUTE: use pytorch (default) or engine" >&2; exit 2 ;;
esac
if [ "$ROUTE" = engine ] && ! command -v trtllm-build >/dev/null; then
  echo "ROUTE=engine needs trtllm-build, which this TensorRT-LLM ($(python -c \
'import tensorrt_llm; print(tensorrt_llm.__version__)' 2>/dev/null || echo 'not installed')) \
does not have: run it in nvcr.io/nvidia/tensorrt-llm/release:1.0.0, or use ROUTE=pytorch" >&2
  exit 2
fi
pip install --no-deps -e . >/dev/null 2>&1 || true   # minitron itself; the container has the rest
python -m minitron export --ckpt "$CKPT" --format hf --dtype "${DTYPE:-bfloat16}" \
  --out "$OUT/hf" --overwrite   # weights for the PyTorch route; tokenizer + config for both
# a synthetic dataset of fixed lengths (token ids), the format trtllm-bench reads
python - "$OUT/dataset.jsonl" <<'PY'
import json, os, random, sys
rng = random.Random(0)
n, lin, lout = int(os.environ.get("REQUESTS", 256)), int(os.environ.get("INPUT_LEN", 128)), int(os.environ.get("OUTPUT_LEN", 128))
with open(sys.argv[1], "w") as f:
    for i in range(n):
        f.write(json.dumps({"task_id": i, "input_ids": [rng.randint(100, 20000) for _ in range(lin)], "output_tokens": lout}) + "\n")
PY
if [ "$ROUTE" = engine ]; then
  python -m minitron export --ckpt "$CKPT" --format trtllm --tp "$TP" \
    --dtype "${DTYPE:-bfloat16}" --out "$OUT/checkpoint" --overwrite
  trtllm-build --checkpoint_dir "$OUT/checkpoint" --output_dir "$OUT/engine" --gemm_plugin auto \
    --max_batch_size "${MAX_BATCH:-64}" --max_input_len "${MAX_INPUT:-1024}" \
    --max_seq_len "${MAX_SEQ:-2048}"
  trtllm-bench --model "$OUT/hf" --model_path "$OUT/hf" throughput --backend tensorrt \
    --engine_dir "$OUT/engine" --dataset "$OUT/dataset.jsonl" | tee "$OUT/trtllm_bench_engine.txt"
else
  trtllm-bench --model "$OUT/hf" --model_path "$OUT/hf" throughput --backend pytorch \
    --tp "$TP" --max_batch_size "${MAX_BATCH:-64}" --max_seq_len "${MAX_SEQ:-2048}" \
    --dataset "$OUT/dataset.jsonl" | tee "$OUT/trtllm_bench_pytorch.txt"
fi
