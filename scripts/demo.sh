#!/usr/bin/env bash
# The main job on the embedded synthetic data, on the CPU: set up .venv, write the synthetic
# AVSBench S4 into avsbench_data/, train S4 with the small CPU configuration, test it
# (official metrics, masks, overlays, visual report), and test again with each clip's audio
# swapped for another clip's to show that the model listens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
avsbench make-toy-data --out avsbench_data --settings s4 --num-categories 4
cd avs_scripts/avs_s4
bash train.sh --synthetic --session_name S4_synthetic
bash test.sh --synthetic --session_name S4_synthetic --save_pred_mask --report \
  --out_json test_logs/S4_synthetic_metrics.json
bash test.sh --synthetic --session_name S4_synthetic --swap_audio \
  --out_json test_logs/S4_synthetic_swapped_audio_metrics.json
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "metrics:        avs_scripts/avs_s4/test_logs/S4_synthetic_metrics.json"
echo "swapped audio:  avs_scripts/avs_s4/test_logs/S4_synthetic_swapped_audio_metrics.json"
echo "pictures:       avs_scripts/avs_s4/test_logs/ (masks, overlays, report grids)"
