#!/usr/bin/env bash
# Evaluate a checkpoint (or score a folder of predictions): every argument goes to
# `python -m deeplab_gluon.evaluate`; see `scripts/eval.sh --help` and docs/evaluation.md.
#
#   scripts/eval.sh --checkpoint runs/demo/phase2
#   scripts/eval.sh --checkpoint runs/voc/phase2 --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip --gpus 0,1
#
# PYTHON picks the interpreter (default: python), e.g. PYTHON=.venv/bin/python scripts/eval.sh ...
set -euo pipefail
exec "${PYTHON:-python}" -m deeplab_gluon.evaluate "$@"
