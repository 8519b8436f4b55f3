#!/usr/bin/env bash
# S4 training, local (no cluster launcher). Arguments go to train.py, e.g.
#   bash train.sh --synthetic              # the small CPU configuration on the synthetic data
#   bash train.sh --method avsegformer     # AVSegFormer and its recipe (docs/AVSEGFORMER.md)
#   bash train.sh --gpus 2 ...             # DDP on 2 GPUs (torchrun); --train_batch_size is the global batch
set -euo pipefail
here="$(dirname "$0")"
exec bash "$here/../launch.sh" "$here/train.py" "$@"
