#!/usr/bin/env bash
# Try multi-machine training on this one machine: a scheduler, S parameter servers and N workers on
# 127.0.0.1, each worker running train.py with --kvstore dist_sync (MXNet's parameter-server kvstore).
#
#   scripts/launch_local.sh [-n WORKERS] [-s SERVERS] [-p PORT] [-k KVSTORE] -- <train.py flags>
#   scripts/launch_local.sh -n 2 -- --dataset toy --data_dir data/toy --train_split train \
#       --base_architecture resnet_v2_18 --crop_size 96 --batch_size 4 --max_iter 50 --output_dir runs/dist
#
# Each worker reads its own shard of the data, only worker 0 writes checkpoints and logs, and the
# batch size is per worker (global batch = N x --batch_size). Everything started here is stopped
# when the workers finish, fail, or this script is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

NUM_WORKERS=2; NUM_SERVERS=1; PORT=${PORT:-9091}; KVSTORE=dist_sync; PYTHON=${PYTHON:-python}
while [ $# -gt 0 ]; do
  case "$1" in
    -n) NUM_WORKERS=$2; shift 2 ;;
    -s) NUM_SERVERS=$2; shift 2 ;;
    -p) PORT=$2; shift 2 ;;
    -k) KVSTORE=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "launch_local.sh: unknown argument '$1' (train.py flags go after --)" >&2; exit 2 ;;
  esac
done

export DMLC_PS_ROOT_URI=127.0.0.1 DMLC_PS_ROOT_PORT=$PORT DMLC_NODE_HOST=127.0.0.1
export DMLC_NUM_SERVER=$NUM_SERVERS DMLC_NUM_WORKER=$NUM_WORKERS

helpers=(); workers=()
cleanup() {
  trap - EXIT INT TERM
  kill "${workers[@]}" "${helpers[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A process started with DMLC_ROLE=scheduler or server runs its role as soon as it imports mxnet.
DMLC_ROLE=scheduler "$PYTHON" -c "import mxnet" & helpers+=($!)
for ((i = 0; i < NUM_SERVERS; i++)); do
  DMLC_ROLE=server "$PYTHON" -c "import mxnet" & helpers+=($!)
done
for ((i = 0; i < NUM_WORKERS; i++)); do
  DMLC_ROLE=worker "$PYTHON" train.py "$@" --kvstore "$KVSTORE" & workers+=($!)
done

status=0
for pid in "${workers[@]}"; do
  wait "$pid" || status=$?
done
exit $status
