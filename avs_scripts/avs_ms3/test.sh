#!/usr/bin/env bash
# MS3 testing, local (no cluster launcher). Arguments go to test.py, e.g.
#   bash test.sh --synthetic              # the small CPU configuration on the synthetic data
#   bash test.sh --weights AVSegFormer_pvt2_s4.pth  # a released checkpoint: method read off its keys
#   bash test.sh --gpus 2 ...             # distributed testing on 2 GPUs (torchrun)
set -euo pipefail
here="$(dirname "$0")"
exec bash "$here/../launch.sh" "$here/test.py" "$@"
