#!/usr/bin/env bash
# Shared by every avs_scripts/<setting>/{train,test}.sh: `bash launch.sh FOLDER/ENTRY.py
# [ARGS...]` runs ENTRY.py in its FOLDER with the project's Python, locally (no cluster
# launcher), on the GPU when there is one, else the CPU (override with --device).
# `--gpus N` (N > 1) starts N processes with torchrun (DistributedDataParallel).
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
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" "$entry" ${ARGS[@]+"${ARGS[@]}"}
fi
exec "$PYTHON" "$entry" ${ARGS[@]+"${ARGS[@]}"}
