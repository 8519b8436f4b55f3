#!/usr/bin/env bash
# Shared by every avs_scripts/<setting>/{train,test}.sh: `bash launch.sh FOLDER/ENTRY.py
# [ARGS...]` runs ENTRY.py in its FOLDER with the project's Python, locally (no cluster
# launcher), on the GPU when there is one, else the CPU (override with --device).
# `--gpus N` (N > 1) starts N processes with torchrun (DistributedDataParallel), one per
# GPU: refused when the machine has fewer than N GPUs, unless --device cpu is given (N CPU
# processes).
# Relative paths given as ARGS stay relative to where the command was typed: that folder
# is passed on as AVSBENCH_CWD before the change into FOLDER.
set -euo pipefail
entry="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export AVSBENCH_CWD="$PWD"
cd "$(dirname "$entry")"
entry="$(basename "$entry")"
export PYTHONPATH="$(cd "$here/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
elif [ -x "$here/../.venv/bin/python" ]; then
  PYTHON="$here/../.venv/bin/python"
else
  PYTHON=python3
fi
fail() { echo "launch.sh: $*" >&2; exit 2; }
GPUS=1
DEVICE=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) [ $# -ge 2 ] || fail "--gpus needs a number of processes, e.g. --gpus 2"
            GPUS="$2"; shift 2 ;;
    --gpus=*) GPUS="${1#--gpus=}"; shift ;;
    --device) DEVICE="${2:-}"; ARGS+=("$1"); shift ;;
    --device=*) DEVICE="${1#--device=}"; ARGS+=("$1"); shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
case "$GPUS" in
  ''|*[!0-9]*|0*) fail "--gpus $GPUS: give a whole number of GPUs >= 1, e.g. --gpus 2" ;;
esac
if [ "$GPUS" -gt 1 ] && [ "$DEVICE" != "cpu" ]; then
  # --gpus N: N processes, one per GPU; on CPU processes only with an explicit --device cpu
  FOUND="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)"
  if [ "$FOUND" -lt "$GPUS" ]; then
    USE="use --gpus $FOUND or fewer, or"
    [ "$FOUND" -gt 1 ] || USE="leave --gpus out, or"
    fail "--gpus $GPUS: this machine has $FOUND CUDA GPU(s); $USE add --device cpu to run" \
      "$GPUS CPU processes (DDP on the CPU, for tests)"
  fi
fi
if [ "$GPUS" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" "$entry" ${ARGS[@]+"${ARGS[@]}"}
fi
exec "$PYTHON" "$entry" ${ARGS[@]+"${ARGS[@]}"}
