#!/usr/bin/env bash
# The demo pipeline on a second synthetic data set that no setting was tuned on (the check of the
# demo results): generate it, preprocess, train the demo models, evaluate them beside the baselines.
#   bash scripts/second_dataset.sh [SEED]        (default 7; writes data/seed<SEED>, runs/*-seed<SEED>_*,
#                                                 data_stats/seed<SEED>/, figures/seed<SEED>/)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${1:-7}
PY=${PY:-.venv/bin/python}
ROOT=data/seed$SEED
DATA=(data.panel_path=$ROOT/panels data.annot_path=$ROOT/annotations data.sequence_path=$ROOT/sequences.json
      data.faces_path=$ROOT/faces data.ground_truth_path=$ROOT/ground_truth.csv)
CONFIGS=(demo_plain_ssupergan demo_bilstm_ssupergan demo_plain_ssupervae demo_plain_ssuper_exemplar)

[ -d "$ROOT/panels" ] || $PY -m ssuper_lib.data.synthetic --out "$ROOT" --series 40 --seed "$SEED"
[ -f "$ROOT/sequences.json" ] || $PY -m ssuper_lib.preprocess configs/data/synthetic.yaml "${DATA[@]}" --no-faces --no-progress
runs=()
for c in "${CONFIGS[@]}"; do
  name=seed${SEED}_$c
  run=$(ls -d runs/*-"$name" 2>/dev/null | tail -n 1 || true)
  if [ -z "$run" ] || [ ! -f "$run/done.json" ]; then
    $PY -m ssuper_lib.train "configs/models/$c.yaml" "name=$name" "${DATA[@]}" --no-progress
    run=$(ls -d runs/*-"$name" | tail -n 1)
  fi
  runs+=("$run")
done
$PY -m ssuper_lib.evaluate "${runs[@]}" --out "data_stats/seed$SEED" --figures "figures/seed$SEED" --seed 0
