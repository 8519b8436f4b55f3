#!/usr/bin/env bash
# The whole GPU path in one run (< 8 min on one GPU): train + test steps of S4/MS3/AVSS x
# TPAVI/AVSegFormer x fp32/bf16/fp16(+scaler) x NCHW/channels_last, a short train.sh run
# (torchrun DDP with NCCL over every GPU present), avsbench predict on a generated video
# with that checkpoint, the batch-4 TPAVI benchmarks and the AVSegFormer ones (attention
# alone, whole model) against the published formulation, and VCT/COMBO/AVSegFormer's exact
# training savings (bench_mask2former.py)
# (benchmarks/results/*_cuda.json; summarise them in BENCHMARKS.md).
#   bash benchmarks/gpu_check.sh            # on a GPU machine, after bash scripts/setup.sh
#   bash benchmarks/gpu_check.sh --dry-run  # CPU, tiny sizes, one process: checks the wiring
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
export PATH="$root/.venv/bin:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/avsbench-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT  # only the folder this script made
if [ $dry = 1 ]; then
  device=cpu; steps_args="--tiny"; out="$work/results"; gpus=1
else
  device=cuda; steps_args=""; out="$root/benchmarks/results"
  gpus=$(python -c 'import torch; print(torch.cuda.device_count())')
  [ "$gpus" -ge 1 ] || { echo "gpu_check: no CUDA device (use --dry-run on a CPU)"; exit 1; }
fi
mkdir -p "$out"
echo "[gpu_check] 1/4 train + test steps in every precision and layout ($device)"
python benchmarks/gpu_check.py steps --device $device $steps_args --out "$out/gpu_steps_$device.json"

echo "[gpu_check] 2/4 train.sh on $gpus process(es) (DDP with NCCL when > 1), test.sh"
avsbench make-toy-data --out "$work/data" --settings s4 --num-categories 2 >/dev/null
run=(--synthetic --data_root "$work/data/Single-source" --log_dir "$work/train_logs"
     --session_name gpu_check --max_epoches 1 --max_steps_per_epoch 2 --device $device)
(cd avs_scripts/avs_s4 && if [ "$gpus" -gt 1 ]; then bash train.sh "${run[@]}" --gpus "$gpus";
  else bash train.sh "${run[@]}"; fi)
ckpt=$(ls "$work"/train_logs/gpu_check_*/checkpoints/gpu_check_best.pth)
(cd avs_scripts/avs_s4 && bash test.sh --synthetic --data_root "$work/data/Single-source" \
  --weights "$ckpt" --device $device --log_dir "$work/test_logs" --out_json "$work/test.json")

echo "[gpu_check] 3/4 avsbench predict on a generated video"
python benchmarks/gpu_check.py video "$work/clip.mp4" --seconds 3
avsbench predict "$work/clip.mp4" --weights "$ckpt" --out "$work/predict" --device $device
test -s "$work/predict/overlay.mp4"

if [ $dry = 1 ]; then
  echo "[gpu_check] 4/4 benchmarks: only bench_mask2former's train step, tiny, on the CPU"
  python benchmarks/bench_mask2former.py --size tiny --methods combo,avsegformer --tasks train \
    --repeats 1 --no-memory --out "$work/mask2former_cpu_tiny.json"  # VCT: 384 px, too slow
else
  echo "[gpu_check] 4/4 benchmarks at batch 4 against the published formulation"
  python benchmarks/bench_model.py train --device cuda --configs resnet50:4,pvt_v2_b5:4 --repeats 3
  python benchmarks/bench_model.py infer --device cuda --metrics --repeats 3
  python benchmarks/bench_avsegformer.py --device cuda --repeats 10
  python benchmarks/bench_avsegformer_model.py --device cuda --repeats 5
  python benchmarks/bench_mask2former.py --device cuda --repeats 5
fi
echo "[gpu_check] passed"
