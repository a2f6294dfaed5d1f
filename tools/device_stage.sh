#!/usr/bin/env bash
# One training stage of the Doom world model on the GPU box, inside one device call (<= 10 minutes).
#
#   bash tools/device_stage.sh vae|teacher|light [MINUTES]
#
# Installs the game wheels from .whl (carry it: tools/device_wheels.sh makes them), trains for MINUTES starting
# from the weights committed under checkpoints/ (a new session resumes there), scores the result with the
# evaluation harness on held-out maps, and leaves in $OUT what to commit back: the exported weights as they are
# (<= 15 MiB shards) plus one logs.tar of logs, reports and plots (the device tool returns at most 8 files).
set -euo pipefail
STAGE="${1:?usage: tools/device_stage.sh vae|teacher|light [MINUTES]}"
MINUTES="${2:-8}"
OUT="${OUT:?set OUT to the folder whose files come back}"
WORKERS="${WORKERS:-14}"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
export GIT_COMMIT="${GIT_COMMIT:-unknown}"
mkdir -p runs
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true

evaluate() {  # evaluate <model spec> <out folder> [more args]
    local spec="$1" dir="$2"
    shift 2
    python3 -m distillation.evaluate --model "$spec" --out "$dir" --device cuda --no-progress --stability-steps 0 "$@"
}

case "$STAGE" in
vae)
    init=()
    [ -f checkpoints/doom_vae/result.json ] && init=(--init-from checkpoints/doom_vae)
    python3 -m distillation.train_vae --device cuda --out runs/doom_vae --workers "$WORKERS" \
        --max-minutes "$MINUTES" --checkpoint-every 100000 "${init[@]}"
    evaluate vae:runs/doom_vae/export runs/eval_vae --clips 100 --horizon 4 --batch-size 16 --videos 2
    cp runs/doom_vae/export/vae* runs/doom_vae/export/result.json "$OUT"/
    tar -cf "$OUT/logs.tar" runs/doom_vae/log.jsonl runs/eval_vae
    ;;
teacher)
    init=()
    [ -f checkpoints/doom_teacher/result.json ] && init=(--init-from checkpoints/doom_teacher)
    python3 -m distillation.train_teacher --device cuda --vae checkpoints/doom_vae --out runs/doom_teacher \
        --workers "$WORKERS" --max-minutes "$MINUTES" --checkpoint-every 100000 --compile "${init[@]}"
    evaluate teacher:runs/doom_teacher/export:checkpoints/doom_vae runs/eval_teacher \
        --clips 100 --horizon 4 --batch-size 50 --videos 4 --train-probe --probe runs/eval_teacher/probe.pt
    cp runs/doom_teacher/export/*.safetensors runs/doom_teacher/export/*.json "$OUT"/
    tar -cf "$OUT/logs.tar" runs/doom_teacher/log.jsonl runs/eval_teacher
    ;;
light)
    python3 -m distillation.train_light_decoder --device cuda --data onthefly --workers "$WORKERS" \
        --vae-export checkpoints/doom_vae --out runs/light --widths 96,48,32,16 --blocks-per-stage 2 --frames 17 \
        --max-minutes "$MINUTES" --no-progress
    evaluate vae:checkpoints/doom_vae runs/eval_vae --clips 100 --horizon 4 --batch-size 25 --videos 1
    evaluate vae:checkpoints/doom_vae:runs/light/light_decoder.pt runs/eval_light \
        --clips 100 --horizon 4 --batch-size 25 --videos 1
    cp runs/light/light_decoder.pt "$OUT"/
    tar -cf "$OUT/logs.tar" runs/eval_vae runs/eval_light
    ;;
*)
    echo "unknown stage $STAGE (vae | teacher | light)" >&2
    exit 2
    ;;
esac
ls -la "$OUT"
