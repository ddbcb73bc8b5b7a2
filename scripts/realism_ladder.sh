#!/usr/bin/env bash
# The realism ladder: every demo model beside the baselines and the oracle on synthetic comics that look
# more and more like real ones (docs/data.md "Realism", docs/results.md "The realism ladder").
#   bash scripts/realism_ladder.sh [SEED ...]           (default: 0)
# For each data seed and preset in $PRESETS (default "clean real hard"): generate the data set with that
# preset, preprocess it, train the four demo models and Robust Exemplar-SSuperGAN ($TRAIN_SEEDS training
# seeds, default "0"; with $MULTI_SEED_CONFIGS only those configs get them), evaluate them beside the
# baselines. Writes data/ladder/<preset>-seed<S>/, runs/*-ladder_<preset>_s<S>_*,
# data_stats/ladder/<preset>-seed<S>/results.{csv,md}, figures/ladder/<preset>-seed<S>/; then one table
# and figure over all of them: data_stats/ladder/ladder.{csv,md} and figures/realism_ladder.png.
# Finished runs and evaluations are reused, so an interrupted ladder continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEEDS=("${@:-0}")
read -r -a PRESET_LIST <<< "${PRESETS:-clean real hard}"
read -r -a TRAIN_SEED_LIST <<< "${TRAIN_SEEDS:-0}"
CONFIGS=(demo_plain_ssupergan demo_bilstm_ssupergan demo_plain_ssupervae demo_plain_ssuper_exemplar
         demo_plain_ssuper_exemplar_robust)
# configs trained with every seed of $TRAIN_SEEDS (default: all); the others train seed 0 only
read -r -a MULTI <<< "${MULTI_SEED_CONFIGS:-${CONFIGS[*]}}"
t0=$(date +%s)

for SEED in "${SEEDS[@]}"; do
  for PRESET in "${PRESET_LIST[@]}"; do
    tag=$PRESET-seed$SEED
    ROOT=data/ladder/$tag
    DATA=(data.panel_path=$ROOT/panels data.annot_path=$ROOT/annotations data.sequence_path=$ROOT/sequences.json
          data.faces_path=$ROOT/faces data.ground_truth_path=$ROOT/ground_truth.csv)
    echo "=== realism ladder: $tag ($(( $(date +%s) - t0 )) s so far)"
    [ -f "$ROOT/manifest.json" ] || $PY -m ssuper_lib.data.synthetic --out "$ROOT" --series 40 --seed "$SEED" \
      --realism "$PRESET" --overwrite
    [ -f "$ROOT/split.json" ] || $PY -m ssuper_lib.preprocess configs/data/synthetic.yaml "${DATA[@]}" --no-faces --no-progress
    runs=()
    for c in "${CONFIGS[@]}"; do
      seeds=(0)
      [[ " ${MULTI[*]} " == *" $c "* ]] && seeds=("${TRAIN_SEED_LIST[@]}")
      for ts in "${seeds[@]}"; do
        name=ladder_${PRESET}_s${SEED}_$c$([ "$ts" = 0 ] || echo "_seed$ts")
        run=$(ls -d runs/*-"$name" 2>/dev/null | tail -n 1 || true)
        if [ -z "$run" ] || [ ! -f "$run/done.json" ]; then
          $PY -m ssuper_lib.train "configs/models/$c.yaml" "name=$name" "seed=$ts" "${DATA[@]}" --no-progress
          run=$(ls -d runs/*-"$name" | tail -n 1)
        fi
        runs+=("$run")
      done
    done
    $PY -m ssuper_lib.evaluate "${runs[@]}" --out "data_stats/ladder/$tag" --figures "figures/ladder/$tag" --seed 0
  done
done
$PY -m ssuper_lib.evaluate.ladder data_stats/ladder --figure figures/realism_ladder.png
echo "=== realism ladder done in $(( $(date +%s) - t0 )) s"
