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
#   ./sh_train.sh --recipe camvid --data_dir DIR --output_dir OUT
#                          a recipe of recipes/: its phases (recipes/NAME/phase*.json, in order, each
#                          from the last one's weights) into OUT/phase*, OUT/final naming the last, then
#                          the final model scored on DIR's val split (see docs/recipes.md)
# PYTHON: the project's .venv/bin/python where it exists, else python.
# DRY_RUN=1: check the arguments and print each command (prefixed "+ ") instead of running it.
set -euo pipefail
cd "$(dirname "$0")"

DEMO=0
RECIPE=""
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) DEMO=1 ;;
    --recipe|--data_dir|--output_dir)
      [ $# -ge 2 ] || { echo "sh_train.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --recipe) RECIPE=$2 ;; --data_dir) export DATA_DIR=$2 ;; --output_dir) export OUT=$2 ;; esac
      shift ;;
    --help|-h) sed -n '2,17p' "$0"; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *=*) export "${1?}" ;;
    *) echo "sh_train.sh: unknown argument '$1' (use NAME=VALUE, --demo, --recipe NAME, or -- train.py flags)" >&2
       exit 2 ;;
  esac
  shift
done

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

if [ "${DRY_RUN:-0}" = 1 ]; then  # print, don't run: every "$PYTHON" call below goes through here
  run_python() { printf '+ %s' "$PYTHON"; printf ' %q' "$@"; echo; }
else
  run_python() { "$PYTHON" "$@"; }
fi

resume_flag() {  # continue a phase that has checkpoints; start it fresh otherwise
  if ls "$1"/checkpoints/iter-*.ckpt >/dev/null 2>&1; then echo "${RESUME:-last}"; else echo -1; fi
}

if [ -n "$RECIPE" ]; then
  phases=(recipes/"$RECIPE"/phase*.json)
  if [ ! -f "${phases[0]}" ]; then
    echo "sh_train.sh: no recipe '$RECIPE' (no recipes/$RECIPE/phase*.json; recipes: $(ls recipes | tr '\n' ' '))" >&2
    exit 2
  fi
  DATA_DIR=${DATA_DIR:?sh_train.sh: --recipe needs --data_dir DIR}
  OUT=${OUT:-runs/$RECIPE}
  started=$(date +%s)
  echo "== recipe $RECIPE: ${#phases[@]} phase(s) on $DATA_DIR into $OUT"
  previous=""
  for config in "${phases[@]}"; do
    phase=$(basename "$config" .json)
    if [ -f "$OUT/$phase/summary.json" ]; then
      echo "== $phase already finished ($OUT/$phase/summary.json)"
    else
      echo "== $phase: $config"
      run_python train.py --config "$config" --data_dir "$DATA_DIR" --output_dir "$OUT/$phase" \
        ${previous:+--init_from "$OUT/$previous"} --resume "$(resume_flag "$OUT/$phase")" "${EXTRA[@]}"
    fi
    previous=$phase
  done
  [ "${DRY_RUN:-0}" = 1 ] || ln -sfn "$previous" "$OUT/final"
  echo "== evaluation of $OUT/final on $DATA_DIR's val split"
  run_python -m deeplab_gluon.evaluate --checkpoint "$OUT/final" --data_dir "$DATA_DIR" --split val
  elapsed=$(( $(date +%s) - started ))
  echo "== recipe $RECIPE done: $OUT/final is the model; wall time $((elapsed / 60)) min $((elapsed % 60)) s (training, validation and evaluation)"
  exit 0
fi

HEAD=${HEAD:-1}            # --aspp_or_vortex: 1 ASPP, 2 Vortex Pooling
DECODER=${DECODER:-0}      # --decoder: 1 adds the DeepLabV3+ decoder
# each model its own default folder: a finished phase 1 of another model would otherwise be reused
MODEL_SUFFIX=$( { [ "$HEAD" = 2 ] && printf _vortex; [ "$DECODER" = 1 ] && printf _decoder; } || true)
HEAD_NAME=$( [ "$HEAD" = 2 ] && echo vortex || echo aspp)
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
  if [ -z "$PRETRAINED" ] && [ "${SCRATCH:-0}" != 1 ]; then
    case "$ARCH" in
      resnet_v2_*) ZOO_CALL="from mxnet.gluon.model_zoo import vision; vision.get_model('$ZOO_NAME', pretrained=True, root='pretrained')" ;;
      *) ZOO_CALL="from gluoncv.model_zoo import get_model; get_model('$ZOO_NAME', pretrained=True, root='pretrained')" ;;
    esac
    echo "sh_train.sh: no ImageNet weights for $ARCH: expected pretrained/$ZOO_NAME-*.params; download it on a machine" \
         "with internet with: python -c \"$ZOO_CALL\" (or pass PRETRAINED=FILE, or SCRATCH=1 to train from random weights)" >&2
    exit 2
  fi
  # The paper's Multi-Grid (1, 2, 4) on the last ResNet stage; other backbones have no such stage.
  case "$ARCH" in resnet*) MULTI_GRID=${MULTI_GRID-1,2,4} ;; *) MULTI_GRID=${MULTI_GRID-} ;; esac
  PHASE1_ITERS=${PHASE1_ITERS:-30000}; PHASE1_BATCH=${PHASE1_BATCH:-16}; PHASE1_LR=${PHASE1_LR:-7e-3}
  PHASE2_ITERS=${PHASE2_ITERS:-30000}; PHASE2_BATCH=${PHASE2_BATCH:-8}; PHASE2_LR=${PHASE2_LR:-1e-3}
  WORKERS=${WORKERS:-4}; OUT=${OUT:-runs/voc_$HEAD_NAME$( [ "$DECODER" = 1 ] && echo _decoder || true)}; VAL_EVERY=${VAL_EVERY:-5}
  SCALE_RANGE=${SCALE_RANGE:-0.5,2.0}    # the paper's
fi
VAL_SPLIT=${VAL_SPLIT:-val}
RESUME=${RESUME:-last}     # each phase continues where it stopped, if it has checkpoints

common=(--dataset "$DATASET" --data_dir "$DATA_DIR" --train_split "$TRAIN_SPLIT" --val_split "$VAL_SPLIT"
        --base_architecture "$ARCH" --aspp_or_vortex "$HEAD" --decoder "$DECODER" --gpus "$GPUS" --crop_size "$CROP"
        --scale_range "$SCALE_RANGE" --num_workers "$WORKERS" --val_every "$VAL_EVERY" --multi_grid "${MULTI_GRID:-}")
echo "== $ARCH, ${HEAD_NAME} head$( [ "$DECODER" = 1 ] && echo ' + decoder'), runs in $OUT"

phase1_done() { [ -f "$OUT/phase1/summary.json" ]; }

echo "== phase 1: output stride 16, BatchNorm training, $PHASE1_ITERS iterations, batch $PHASE1_BATCH"
if phase1_done; then
  echo "phase 1 already finished ($OUT/phase1/summary.json)"
else
  run_python train.py "${common[@]}" --output_stride 16 --freeze_batch_norm 0 \
    --batch_size "$PHASE1_BATCH" --initial_learning_rate "$PHASE1_LR" --max_iter "$PHASE1_ITERS" \
    ${PRETRAINED:+--pre_trained_model "$PRETRAINED"} --output_dir "$OUT/phase1" \
    --resume "$(resume_flag "$OUT/phase1")" "${EXTRA[@]}"
fi

echo "== phase 2: output stride 8, BatchNorm frozen, $PHASE2_ITERS iterations, batch $PHASE2_BATCH"
run_python train.py "${common[@]}" --output_stride 8 --freeze_batch_norm 1 \
  --batch_size "$PHASE2_BATCH" --initial_learning_rate "$PHASE2_LR" --max_iter "$PHASE2_ITERS" \
  --init_from "$OUT/phase1" --output_dir "$OUT/phase2" \
  --resume "$(resume_flag "$OUT/phase2")" "${EXTRA[@]}"

if [ "$DEMO" = 1 ]; then
  echo "== evaluation on $VAL_SPLIT (output stride 8, single scale)"
  run_python -m deeplab_gluon.evaluate --checkpoint "$OUT/phase2" --data_dir "$DATA_DIR" --dataset "$DATASET" \
    --split "$VAL_SPLIT" --output_stride 8 --gpus "$GPUS"
else
  # What the paper reports: phase 1 scored at OS16, at OS8, at OS8 with multi-scale + flip; then phase 2 at OS8.
  evaluation() {  # name checkpoint-folder output-stride [evaluate flags...]
    local name=$1 run=$2 stride=$3; shift 3
    echo "== evaluation $name: $run on $VAL_SPLIT at output stride $stride $*"
    run_python -m deeplab_gluon.evaluate --checkpoint "$run" --data_dir "$DATA_DIR" --dataset "$DATASET" \
      --split "$VAL_SPLIT" --output_stride "$stride" --gpus "$GPUS" --output "$OUT/eval/$name.json" "$@"
  }
  evaluation phase1_os16 "$OUT/phase1" 16
  evaluation phase1_os8 "$OUT/phase1" 8
  evaluation phase1_os8_msflip "$OUT/phase1" 8 --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip 1
  evaluation phase2_os8 "$OUT/phase2" 8
  echo "== $OUT against the DeepLabV3 paper (ResNet-101, Multi-Grid 1,2,4, VOC 2012 val)"
  run_python scripts/paper_table.py "$OUT/eval"
fi

if [ "$DEMO" = 1 ]; then
  echo "== predictions as colour PNGs in $OUT/predictions"
  run_python -m deeplab_gluon.predict --checkpoint "$OUT/phase2" --output_dir "$OUT/predictions" \
    --input "$DATA_DIR/VOC2012/ImageSets/Segmentation/$VAL_SPLIT.txt" --gpus "$GPUS" --limit 8
  # the HTML report scores the split once more (seconds at toy scale): its panels need the predictions
  echo "== evaluation report of phase 2 in $OUT/report"
  run_python -m deeplab_gluon.evaluate --checkpoint "$OUT/phase2" --data_dir "$DATA_DIR" --dataset "$DATASET" \
    --split "$VAL_SPLIT" --output_stride 8 --gpus "$GPUS" --progress 0 --report "$OUT/report" >/dev/null
  echo "report: $OUT/report/index.html"
fi
