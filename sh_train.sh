#!/usr/bin/env bash
# The DeepLabV3 paper's two-phase recipe, then evaluation on val.
#
#   phase 1: output stride 16, BatchNorm training, batch 16, lr 7e-3, 30K iterations (poly)
#   phase 2: output stride 8, BatchNorm frozen, batch 8, 30K iterations, from phase 1's weights
#   then:    single-scale evaluation of the final model on val at output stride 8
#
# Every value below can be set in the environment or as NAME=VALUE arguments:
#   ./sh_train.sh GPUS=0,1 HEAD=2 DECODER=1 ARCH=resnet_v2_50 DATA_DIR=/data/VOCdevkit_aug
# Arguments after "--" go to both phases' train.py, e.g. -- --syncbn 1
#   ./sh_train.sh --demo   the same two phases at toy scale on the CPU (what `make demo` runs)
set -euo pipefail
cd "$(dirname "$0")"

DEMO=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) DEMO=1 ;;
    --help|-h) sed -n '2,14p' "$0"; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *=*) export "${1?}" ;;
    *) echo "sh_train.sh: unknown argument '$1' (use NAME=VALUE, --demo, or -- train.py flags)" >&2; exit 2 ;;
  esac
  shift
done

PYTHON=${PYTHON:-python}
HEAD=${HEAD:-1}            # --aspp_or_vortex: 1 ASPP, 2 Vortex Pooling
DECODER=${DECODER:-0}      # --decoder: 1 adds the DeepLabV3+ decoder
# each model its own default folder: a finished phase 1 of another model would otherwise be reused
MODEL_SUFFIX=$( { [ "$HEAD" = 2 ] && printf _vortex; [ "$DECODER" = 1 ] && printf _decoder; } || true)
if [ "$DEMO" = 1 ]; then
  # Toy scale: synthetic shapes, ResNet-18-v2 from scratch, small crops, a few minutes on 2 CPU cores.
  DATASET=${DATASET:-toy}; DATA_DIR=${DATA_DIR:-data/toy}; ARCH=${ARCH:-resnet_v2_18}; GPUS=${GPUS:--1}
  TRAIN_SPLIT=${TRAIN_SPLIT:-train}; CROP=${CROP:-96}; PRETRAINED=${PRETRAINED:-}
  PHASE1_ITERS=${PHASE1_ITERS:-700}; PHASE1_BATCH=${PHASE1_BATCH:-8}; PHASE1_LR=${PHASE1_LR:-0.05}
  PHASE2_ITERS=${PHASE2_ITERS:-200}; PHASE2_BATCH=${PHASE2_BATCH:-8}; PHASE2_LR=${PHASE2_LR:-0.005}
  WORKERS=${WORKERS:-1}; OUT=${OUT:-runs/demo$MODEL_SUFFIX}; VAL_EVERY=${VAL_EVERY:-0}
  SCALE_RANGE=${SCALE_RANGE:-0.75,1.25}  # the toy's objects already vary in size; milder rescaling learns faster
else
  DATASET=${DATASET:-voc}; DATA_DIR=${DATA_DIR:-VOCdevkit_aug}; ARCH=${ARCH:-resnet_v2_101}; GPUS=${GPUS:-0,1,2,3}
  TRAIN_SPLIT=${TRAIN_SPLIT:-train_aug}; CROP=${CROP:-513}
  case "$ARCH" in  # the zoo file's name: Gluon's resnet101_v2-*, gluoncv's resnet101_v1s-*, xception-* ...
    resnet_v2_*) ZOO_NAME=resnet${ARCH##*_}_v2 ;;
    xception65) ZOO_NAME=xception ;;
    *) ZOO_NAME=$ARCH ;;
  esac
  PRETRAINED=${PRETRAINED:-$(ls pretrained/"$ZOO_NAME"-*.params 2>/dev/null | head -n 1 || true)}
  PHASE1_ITERS=${PHASE1_ITERS:-30000}; PHASE1_BATCH=${PHASE1_BATCH:-16}; PHASE1_LR=${PHASE1_LR:-7e-3}
  PHASE2_ITERS=${PHASE2_ITERS:-30000}; PHASE2_BATCH=${PHASE2_BATCH:-8}; PHASE2_LR=${PHASE2_LR:-1e-3}
  WORKERS=${WORKERS:-4}; OUT=${OUT:-runs/voc$MODEL_SUFFIX}; VAL_EVERY=${VAL_EVERY:-5}
  SCALE_RANGE=${SCALE_RANGE:-0.5,2.0}    # the paper's
fi
VAL_SPLIT=${VAL_SPLIT:-val}
RESUME=${RESUME:-last}     # each phase continues where it stopped, if it has checkpoints

common=(--dataset "$DATASET" --data_dir "$DATA_DIR" --train_split "$TRAIN_SPLIT" --val_split "$VAL_SPLIT"
        --base_architecture "$ARCH" --aspp_or_vortex "$HEAD" --decoder "$DECODER" --gpus "$GPUS" --crop_size "$CROP"
        --scale_range "$SCALE_RANGE" --num_workers "$WORKERS" --val_every "$VAL_EVERY")

resume_flag() {  # continue a phase that has checkpoints; start it fresh otherwise
  if ls "$1"/checkpoints/iter-*.ckpt >/dev/null 2>&1; then echo "$RESUME"; else echo -1; fi
}

phase1_done() { [ -f "$OUT/phase1/summary.json" ]; }

echo "== phase 1: output stride 16, BatchNorm training, $PHASE1_ITERS iterations, batch $PHASE1_BATCH"
if phase1_done; then
  echo "phase 1 already finished ($OUT/phase1/summary.json)"
else
  "$PYTHON" train.py "${common[@]}" --output_stride 16 --freeze_batch_norm 0 \
    --batch_size "$PHASE1_BATCH" --initial_learning_rate "$PHASE1_LR" --max_iter "$PHASE1_ITERS" \
    ${PRETRAINED:+--pre_trained_model "$PRETRAINED"} --output_dir "$OUT/phase1" \
    --resume "$(resume_flag "$OUT/phase1")" "${EXTRA[@]}"
fi

echo "== phase 2: output stride 8, BatchNorm frozen, $PHASE2_ITERS iterations, batch $PHASE2_BATCH"
"$PYTHON" train.py "${common[@]}" --output_stride 8 --freeze_batch_norm 1 \
  --batch_size "$PHASE2_BATCH" --initial_learning_rate "$PHASE2_LR" --max_iter "$PHASE2_ITERS" \
  --init_from "$OUT/phase1" --output_dir "$OUT/phase2" \
  --resume "$(resume_flag "$OUT/phase2")" "${EXTRA[@]}"

echo "== evaluation on $VAL_SPLIT (output stride 8, single scale)"
"$PYTHON" -m deeplab_gluon.evaluate --checkpoint "$OUT/phase2" --data_dir "$DATA_DIR" --dataset "$DATASET" \
  --split "$VAL_SPLIT" --output_stride 8 --gpus "$GPUS"

if [ "$DEMO" = 1 ]; then
  echo "== predictions as colour PNGs in $OUT/predictions"
  "$PYTHON" -m deeplab_gluon.predict --checkpoint "$OUT/phase2" --output_dir "$OUT/predictions" \
    --input "$DATA_DIR/VOC2012/ImageSets/Segmentation/$VAL_SPLIT.txt" --gpus "$GPUS" --limit 8
  # the HTML report scores the split once more (seconds at toy scale): its panels need the predictions
  echo "== evaluation report of phase 2 in $OUT/report"
  "$PYTHON" -m deeplab_gluon.evaluate --checkpoint "$OUT/phase2" --data_dir "$DATA_DIR" --dataset "$DATASET" \
    --split "$VAL_SPLIT" --output_stride 8 --gpus "$GPUS" --progress 0 --report "$OUT/report" >/dev/null
  echo "report: $OUT/report/index.html"
fi
