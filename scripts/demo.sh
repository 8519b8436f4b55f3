#!/usr/bin/env bash
# One setting end to end on its embedded synthetic data, on the CPU: set up .venv, write the
# synthetic dataset of the setting into avsbench_data/, train it with the small CPU
# configuration (`--synthetic`), test it (official metrics, masks, overlays, visual report),
# test again with each clip's audio swapped for another clip's to show that the model
# listens, and with AVSBench-Robust's negatives (silence, noise, an off-screen sound), then
# print the figures side by side. Measured figures: README, "Results on the synthetic
# AVSBench".
#
#   bash scripts/demo.sh                   # S4 (the default)
#   bash scripts/demo.sh --setting ms3     # or avss
#   bash scripts/demo.sh --skip-setup      # use the .venv as it is (no setup.sh)
#   bash scripts/demo.sh --dry-run         # print the commands only
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

usage() {
  echo "usage: bash scripts/demo.sh [--setting s4|ms3|avss] [--skip-setup] [--dry-run]"
}
setting=s4
setup=1
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --setting) [ $# -ge 2 ] || { usage >&2; exit 2; }; setting="$2"; shift 2 ;;
    --setting=*) setting="${1#--setting=}"; shift ;;
    --skip-setup) setup=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

# Per setting: the avs_scripts folder, the session name and the synthetic categories.
case "$setting" in
  s4) folder=avs_s4; session=S4_synthetic; categories=4 ;;
  ms3) folder=avs_ms3; session=MS3_synthetic; categories=4 ;;
  avss) folder=avss; session=AVSS_synthetic; categories=4 ;;
  *) echo "demo.sh: unknown setting '$setting'; valid: s4, ms3, avss" >&2; exit 2 ;;
esac

run() {
  echo "+ $*"
  if [ "$dry_run" = 0 ]; then "$@"; fi
}

if [ "$setup" = 1 ]; then run bash scripts/setup.sh; fi
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
# --overwrite replaces only the files this generator wrote (its manifest lists them) and
# refuses a root holding anything else, naming it.
run avsbench make-toy-data --out avsbench_data --settings "$setting" \
  --num-categories "$categories" --overwrite
logs="avs_scripts/$folder/test_logs"
run cd "avs_scripts/$folder"
run bash train.sh --synthetic --session_name "$session"
run bash test.sh --synthetic --session_name "$session" --save_pred_mask --report \
  --out_json "test_logs/${session}_metrics.json"
run bash test.sh --synthetic --session_name "$session" --swap_audio \
  --out_json "test_logs/${session}_swapped_audio_metrics.json"
# AVSBench-Robust's negatives: the same frames with silence, noise, an off-screen sound
for negative in silence noise offscreen; do
  run bash test.sh --synthetic --session_name "$session" --audio "$negative" \
    --out_json "test_logs/${session}_${negative}_audio_metrics.json"
done
echo
echo "demo ($setting) finished in $(( $(date +%s) - start )) s"
echo "metrics:        $logs/${session}_metrics.json"
echo "swapped audio:  $logs/${session}_swapped_audio_metrics.json"
echo "negatives:      $logs/${session}_{silence,noise,offscreen}_audio_metrics.json"
echo "pictures:       $logs/ (masks, overlays, report grids)"
echo
echo "own / swapped / negative audio (docs/METRICS.md, 'AVSBench-Robust'):"
run env PYTHONPATH="$root" python -m avsbench.metrics_robust \
  "test_logs/${session}_metrics.json" "test_logs/${session}_swapped_audio_metrics.json" \
  "test_logs/${session}_silence_audio_metrics.json" \
  "test_logs/${session}_noise_audio_metrics.json" \
  "test_logs/${session}_offscreen_audio_metrics.json"
