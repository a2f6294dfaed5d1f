#!/usr/bin/env bash
# One training stage of the Doom world model on the GPU box, inside one device call (<= 10 minutes).
#
#   bash tools/device_stage.sh vae|teacher|light [MINUTES]
#
# MINUTES is the training time; scoring adds about 2-3 minutes (the teacher's includes training the probe), so
# keep MINUTES <= 6.5 inside a 10-minute device call.
# Installs the game wheels from .whl (carry it: tools/device_wheels.sh makes them), trains for MINUTES starting
# from the weights committed under checkpoints/ (a new session resumes there), scores the result with the
# evaluation harness on held-out maps, and leaves in $OUT what to commit back: the exported weights as they are
# (<= 15 MiB shards) plus one logs.tar of logs, reports and plots (the device tool returns at most 8 files: the
# teacher's export is 6 of them, so a caller's own results go in runs/extra/, which is packed too).
# Commit them back as: vae -> checkpoints/doom_vae/, light -> checkpoints/doom_light/, teacher -> checkpoints/doom_teacher/.
# Run it with output to a file, not a pipe: game worker processes inherit stdout and keep a pipe open after a kill.
# Order in a session: vae, light, teacher (the teacher validates through the light decoder when there is one).
# The teacher stage needs only the VAE's encoder: move checkpoints/doom_vae/vae_decoder.safetensors out of the tree
# for its calls (the tree a call sends is limited to 64 MiB; tools/tree_size.sh .whl: 62.0 MiB without it on
# Nov 23; benchmarks/results/ can be left out too if needed).
# A run over several calls of one warm machine: SCORE=0 TRAIN_ARGS="--cooldown 0" for all but the last call,
# which resumes from runs/ (kept while the machine stays warm) and cools down (--cooldown 1.0) and scores.
# VAE: TRAIN_ARGS="--freeze-encoder --crop 64x64 --batch-size 32" fine-tunes the decoder alone (14.2 steps/s on
# the H100, Nov 23) and keeps the latents, so the committed teacher stays valid; without --freeze-encoder the
# teacher must be trained again on the new latents. The light stage continues the committed light decoder; its
# trainer cools down too (Nov 24), so chain it the same way.
# Two stages at once on one box (Nov 24): WORKERS=7 and OUT=$OUT/<stage> for each, one in the background, then
# `wait`; none of the stages fills the H100 alone, so a pair gets 1.2x (vae + teacher), 1.3x (vae + light) or 1.5x
# (light + teacher) the work of one stage per call (steps/s of each against the same stage alone). Pack the two
# exports so that at most 8 files come back. A light run paired with the VAE's follows an older VAE decoder.
# Dry run here (CPU, tiny): DEVICE=cpu WORKERS=1 EVAL_CLIPS=2 SKIP_WHEELS=1 TRAIN_ARGS=... OUT=/tmp/o bash ... vae 0.2
set -euo pipefail
STAGE="${1:?usage: tools/device_stage.sh vae|teacher|light [MINUTES]}"
MINUTES="${2:-8}"
OUT="${OUT:?set OUT to the folder whose files come back}"
WORKERS="${WORKERS:-14}"
DEVICE="${DEVICE:-cuda}"      # DEVICE=cpu EVAL_CLIPS=4 SKIP_WHEELS=1 ... : a dry run of the whole stage here
EVAL_CLIPS="${EVAL_CLIPS:-100}"
SCORE="${SCORE:-1}"           # SCORE=0: train and export only (a first call of a run that a later call scores)
read -r -a TRAIN_ARGS <<<"${TRAIN_ARGS:-}"  # extra trainer flags, e.g. TRAIN_ARGS="--batch-size 2" for a dry run
read -r -a EVAL_ARGS <<<"${EVAL_ARGS:-}"    # extra harness flags, e.g. a short probe for a dry run
LIGHT=checkpoints/doom_light/light_decoder.pt

source tools/device_prelude.sh
mkdir -p runs

evaluate() {  # evaluate <model spec> <out folder> [more args]; a failure is reported, the weights are already in $OUT
    local spec="$1" dir="$2"
    shift 2
    [ "$SCORE" = 0 ] && return 0
    python3 -m distillation.evaluate --model "$spec" --out "$dir" --device "$DEVICE" --no-progress --stability-steps 0 \
        --clips "$EVAL_CLIPS" --horizon 4 "$@" "${EVAL_ARGS[@]}" || echo "evaluation of $spec failed (exit $?); the weights are in $OUT" >&2
}

pack() {  # pack <paths...>: logs, reports and plots into one file (the tool returns at most 8); missing ones skipped
    local have=()
    for p in "$@"; do [ -e "$p" ] && have+=("$p"); done
    tar -cf "$OUT/logs.tar" "${have[@]}"
}

case "$STAGE" in
vae)
    init=()
    [ -f checkpoints/doom_vae/result.json ] && init=(--init-from checkpoints/doom_vae)
    run="${RUN:-runs/doom_vae}"  # RUN=runs/doom_vae_b: a second VAE run beside the first (an A/B on one box)
    python3 -m distillation.train_vae --device "$DEVICE" --out "$run" --workers "$WORKERS" \
        --max-minutes "$MINUTES" --checkpoint-every 100000 --compile "${init[@]}" "${TRAIN_ARGS[@]}"
    cp "$run"/export/vae* "$run"/export/result.json "$OUT"/
    evaluate "vae:$run/export" "$run/eval" --batch-size 16 --videos 2
    pack "$run"/log.jsonl "$run"/eval runs/extra
    ;;
teacher)
    init=() decode=() spec_light=""
    [ -f checkpoints/doom_teacher/result.json ] && init=(--init-from checkpoints/doom_teacher)
    # With a light decoder only the VAE's encoder is needed here (the tree sent to the box is size-limited).
    [ -f "$LIGHT" ] && decode=(--light-decoder "$LIGHT") spec_light=":$LIGHT"
    python3 -m distillation.train_teacher --device "$DEVICE" --vae checkpoints/doom_vae --out runs/doom_teacher \
        --workers "$WORKERS" --max-minutes "$MINUTES" --checkpoint-every 100000 --compile "${init[@]}" "${decode[@]}" \
        "${TRAIN_ARGS[@]}"
    # The committed probe keeps controllability comparable across sessions and models; train one if missing.
    probe=(--probe checkpoints/probe/probe.pt)
    [ -f checkpoints/probe/probe.pt ] || probe=(--train-probe --probe runs/eval_teacher/probe.pt)
    cp runs/doom_teacher/export/*.safetensors runs/doom_teacher/export/*.json "$OUT"/
    evaluate "teacher:runs/doom_teacher/export:checkpoints/doom_vae$spec_light" runs/eval_teacher \
        --batch-size 50 --videos 4 "${probe[@]}"
    pack runs/doom_teacher/log.jsonl runs/eval_teacher runs/extra
    ;;
light)
    # --steps: a timed run ends on --max-minutes (the trainer's 20,000-step default once ended a call early).
    # Continue the committed student (distilled from this or an earlier VAE decoder); LIGHT_INIT= (empty) starts a
    # new one, e.g. with TRAIN_ARGS="--widths 128,64,48,24" (the later --widths wins).
    init=() light_init="${LIGHT_INIT-$LIGHT}"
    [ -n "$light_init" ] && [ -f "$light_init" ] && init=(--init-from "$light_init")
    run="${RUN:-runs/light}"
    python3 -m distillation.train_light_decoder --device "$DEVICE" --data onthefly --workers "$WORKERS" \
        --vae-export checkpoints/doom_vae --out "$run" --widths 128,64,48,24 --blocks-per-stage 2 --frames 17 \
        --steps 10000000 --max-minutes "$MINUTES" --no-progress "${init[@]}" "${TRAIN_ARGS[@]}"
    cp "$run"/light_decoder.pt "$run"/result.json "$OUT"/
    evaluate vae:checkpoints/doom_vae "$run"/eval_vae --batch-size 25 --videos 1
    evaluate vae:checkpoints/doom_vae:"$run"/light_decoder.pt "$run"/eval --batch-size 25 --videos 1
    pack "$run"/log.jsonl "$run"/eval_vae "$run"/eval runs/extra
    ;;
*)
    echo "unknown stage $STAGE (vae | teacher | light)" >&2
    exit 2
    ;;
esac
ls -la "$OUT"
