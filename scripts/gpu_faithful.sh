#!/usr/bin/env bash
# An open question, for a GPU node: do the three faithful demo variants learn *who* the masked
# character is once the backbone trains end to end, as in the original? The CPU demo freezes the backbone
# and caches its features, and those frozen features carry only a few points of identity
# (python -m ssuper_lib.evaluate.probe; docs/results.md, "What the frozen features can carry").
#
# For each data seed: the synthetic set (generated and preprocessed when missing, as scripts/second_dataset.sh),
# then Plain-SSuperGAN, Bi-LSTM-SSuperGAN and Plain-SSuperVAE from their demo configs with only these changes:
# the EfficientNet trains (model.freeze_backbone=false, no feature cache) on PANEL px panels. The three
# trainings run side by side (a step is bound by the host, not by the GPU), then the evaluation writes
# their rows beside the baselines: identity accuracy with true and shuffled context, and its gain.
#
#     bash scripts/gpu_faithful.sh [SEED ...]     (default: 0 7; seed 0 is the demo's data, 7 the held-out set)
#
# Environment: PY (interpreter, default .venv/bin/python or python3), PANEL (panel side, default 160: the
# demo's), STEPS (training steps, default 2500: the demo's), WORKERS (loader workers per training, default 4),
# LR (train.lr of the three runs, default: the configs'), OUT (default runs/gpu_faithful).
# Writes OUT/seed<SEED>/results.{csv,md} and OUT/seed<SEED>/train_<config>.log. Sized for one H200:
# about 1 minute of data per seed, three trainings side by side, then the evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
PANEL=${PANEL:-160}
STEPS=${STEPS:-2500}
WORKERS=${WORKERS:-4}
OUT=${OUT:-runs/gpu_faithful}
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 7)
CONFIGS=(demo_plain_ssupergan demo_bilstm_ssupergan demo_plain_ssupervae)
E2E=(model.freeze_backbone=false train.cache_features=false "data.panel_size=[$PANEL,$PANEL]"
     "data.num_workers=$WORKERS" "train.max_steps=$STEPS")
[ -z "${LR:-}" ] || E2E+=("train.lr=$LR")

for SEED in "${SEEDS[@]}"; do
  if [ "$SEED" = 0 ]; then ROOT=data/synthetic; else ROOT=data/seed$SEED; fi
  DATA=(data.panel_path=$ROOT/panels data.annot_path=$ROOT/annotations data.sequence_path=$ROOT/sequences.json
        data.faces_path=$ROOT/faces data.ground_truth_path=$ROOT/ground_truth.csv)
  [ -d "$ROOT/panels" ] || $PY -m ssuper_lib.data.synthetic --out "$ROOT" --series 40 --seed "$SEED"
  [ -f "$ROOT/sequences.json" ] || $PY -m ssuper_lib.preprocess configs/data/synthetic.yaml "${DATA[@]}" --no-faces --no-progress
  mkdir -p "$OUT/seed$SEED"
  pids=()
  for c in "${CONFIGS[@]}"; do
    name=e2e${PANEL}_seed${SEED}_$c
    $PY -m ssuper_lib.train "configs/models/$c.yaml" "name=$name" "${DATA[@]}" "${E2E[@]}" --no-progress \
      >"$OUT/seed$SEED/train_$c.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  if [ $status -ne 0 ]; then
    echo "a training failed; logs in $OUT/seed$SEED/" >&2
    tail -n 20 "$OUT/seed$SEED"/train_*.log >&2
    exit 1
  fi
  runs=()
  for c in "${CONFIGS[@]}"; do runs+=("$(ls -d runs/*-"e2e${PANEL}_seed${SEED}_$c" | tail -n 1)"); done
  $PY -m ssuper_lib.evaluate "${runs[@]}" --out "$OUT/seed$SEED" --figures "$OUT/seed$SEED/figures" --seed 0
done
