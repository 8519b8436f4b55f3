#!/usr/bin/env bash
# MS3 testing, local (no cluster launcher). Arguments go to test.py, e.g.
#   bash test.sh --synthetic              # the small CPU configuration on the synthetic data
#   bash test.sh --gpus 2 ...             # distributed testing on 2 GPUs (torchrun)
# The GPU is used when there is one, else the CPU (override with --device).
set -euo pipefail
cd "$(dirname "$0")"
export PYTHONPATH="$(cd ../.. && pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
elif [ -x ../../.venv/bin/python ]; then
  PYTHON=../../.venv/bin/python
else
  PYTHON=python3
fi
GPUS=1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --gpus=*) GPUS="${1#--gpus=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ "$GPUS" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" test.py ${ARGS[@]+"${ARGS[@]}"}
fi
exec "$PYTHON" test.py ${ARGS[@]+"${ARGS[@]}"}
