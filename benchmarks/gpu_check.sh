#!/usr/bin/env bash
# One GPU session's checks (run through the device tool; never part of CI):
#   1. the CUDA path of the unit tests (model logits vs transformers, checkpoints, params,
#      the training engine: DDP + megatron optimizer, bf16 main weights, recompute);
#   2. bf16 forward throughput, minitron vs transformers, on random-weight models.
# Needs .whl/ with megatron-core 0.16.1 and omegaconf wheels for the device's Python
# (see docs/benchmarks.md); writes its results under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  python3 -c "import torch, megatron.core, transformers; print('torch', torch.__version__, 'mcore', megatron.core.__version__, 'transformers', transformers.__version__)";
  python3 -c "import transformer_engine.pytorch" 2>&1 | tail -1; echo "te import rc=$?"; } > "$OUT/env.txt" 2>&1
timeout 240 python3 -m pytest -q -p no:cacheprovider -p no:warnings \
  tests/unit/test_model.py tests/unit/test_checkpoint.py tests/unit/test_params.py \
  tests/unit/test_engine.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$?" >> "$OUT/pytest.txt"
timeout 150 python3 benchmarks/bench_forward.py --device cuda --dtype bfloat16 --batch 8 --seq 2048 \
  --repeats 10 --random-config examples/smollm2-135m/config.json --out "$OUT/fwd_smollm2.json" > "$OUT/fwd_smollm2.txt" 2>&1
timeout 240 python3 benchmarks/bench_forward.py --device cuda --dtype bfloat16 --batch 4 --seq 2048 \
  --repeats 10 --random-config examples/llama-3.2-1b/config.json --out "$OUT/fwd_llama1b.json" > "$OUT/fwd_llama1b.txt" 2>&1
tail -3 "$OUT"/*.txt
