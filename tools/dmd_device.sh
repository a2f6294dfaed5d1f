#!/usr/bin/env bash
# The DMD distillation of the Doom teacher on the GPU box, inside one device call (<= 10 minutes).
#
#   PAIRS_CLIPS=3072 ODE_MIN=2.5 DMD_MIN=4 bash tools/dmd_device.sh
#
# The tree a call sends must stay under 64 MiB: `bash tools/device_tree.sh off` before the call (carry .dmd),
# `bash tools/device_tree.sh on` after. The teacher and the light decoder are training states kept in the git history:
# `python -m tools.training_states restore`, then carry .dmd, checkpoints/doom_teacher and checkpoints/doom_light.
#
# Needs in the tree: checkpoints/doom_teacher, checkpoints/doom_light (validation decodes with it) and, carried,
# .dmd/conditions and .dmd/val (python -m distillation.dmd conditions ... here on the CPU: the box then needs
# neither the game nor the VAE). Stages, each skipped when its budget is 0:
#   1. ode-pairs  (PAIRS_CLIPS > 0, at most PAIRS_MIN)   teacher trajectories of the conditions (runs/dmd/pairs, stays on the box)
#   2. ode-init   (ODE_MIN > 0)       from the teacher's weights
#   3. dmd        (DMD_MIN > 0)       from ode-init's export, or $STUDENT (+ $CRITIC) when resuming elsewhere
# Leaves in $OUT: dmd.tar split in 15 MiB parts (student and critic exports, logs; the tool returns <= 8 files of
# <= 16 MiB): `cat dmd.tar.part* | tar -x` puts them under runs/dmd/ here.
# Dry run here (CPU, tiny): DEVICE=cpu PAIRS_CLIPS=4 PAIRS_STEPS=4 ODE_MIN=0.1 DMD_MIN=0.1 BATCH=2 OUT=/tmp/o bash ...
set -euo pipefail
OUT="${OUT:?set OUT to the folder whose files come back}"
DEVICE="${DEVICE:-cuda}"
PAIRS_CLIPS="${PAIRS_CLIPS:-1536}"
PAIRS_STEPS="${PAIRS_STEPS:-50}"
PAIRS_MIN="${PAIRS_MIN:-2.5}"  # no new pair shard starts after this (the set is resumable)
ODE_MIN="${ODE_MIN:-2.5}"
DMD_MIN="${DMD_MIN:-4}"
BATCH="${BATCH:-64}"
DMD_BATCH="${DMD_BATCH:-32}"
read -r -a ODE_ARGS <<<"${ODE_ARGS:-}"
read -r -a DMD_ARGS <<<"${DMD_ARGS:-}"
LIGHT="${LIGHT:-checkpoints/doom_light/light_decoder.pt}"  # validation decodes with it (any light decoder state file)
COND="${COND:-.dmd/conditions}"  # the training conditions set (a subset of its shards keeps a call under 64 MiB)
source tools/device_prelude.sh
LIMIT_S="${LIMIT_S:-570}"  # the call's limit less a margin: later stages shrink to what is left of it
T0=$(date +%s)
fit() {  # fit MINUTES RESERVE_S: MINUTES, or less so that RESERVE_S seconds stay for what follows
    python3 -c "import sys; m, r, used = map(float, sys.argv[1:]); print(max(0.2, min(m, ($LIMIT_S - used - r) / 60)))" \
        "$1" "$2" "$(( $(date +%s) - T0 ))"
}
pack() {  # on every exit, failed stages included: what exists comes back
    have=()
    ode_export=runs/dmd/ode_init/export  # 24 MB: only when no DMD student came after it (64 MiB come back at most)
    [ -e runs/dmd/dmd/export ] && ode_export=""
    for p in $ode_export runs/dmd/ode_init/log.jsonl runs/dmd/dmd/export runs/dmd/dmd/critic \
        runs/dmd/dmd/log.jsonl runs/dmd/pairs/index.json; do
        [ -e "$p" ] && have+=("$p")
    done
    [ ${#have[@]} -gt 0 ] && tar -cf - "${have[@]}" | split -b 15M - "$OUT/dmd.tar.part"
    ls -la "$OUT"
}
trap pack EXIT
common=(--device "$DEVICE" --out runs/dmd --val-conditions .dmd/val --light-decoder "$LIGHT")

if [ "$PAIRS_CLIPS" != 0 ]; then
    python3 -m distillation.dmd ode-pairs --device "$DEVICE" --conditions "$COND" --out runs/dmd/pairs \
        --clips "$PAIRS_CLIPS" --steps "$PAIRS_STEPS" --batch-size 256 --shard-clips 512 \
        --max-minutes "$(fit "$PAIRS_MIN" $((60 * ${ODE_MIN%.*} + 60 * ${DMD_MIN%.*} + 180)))"
fi
if [ "$ODE_MIN" != 0 ]; then
    python3 -m distillation.dmd ode-init "${common[@]}" --pairs runs/dmd/pairs --batch-size "$BATCH" \
        --max-minutes "$(fit "$ODE_MIN" $((60 * ${DMD_MIN%.*} + 150)))" --val-every 500 --checkpoint-every 100000 "${ODE_ARGS[@]}"
fi
if [ "$DMD_MIN" != 0 ]; then
    init=()
    [ -n "${STUDENT:-}" ] && init+=(--init-from "$STUDENT")
    [ -n "${CRITIC:-}" ] && init+=(--critic-from "$CRITIC")
    python3 -m distillation.dmd dmd "${common[@]}" --conditions "$COND" --batch-size "$DMD_BATCH" \
        --max-minutes "$(fit "$DMD_MIN" 75)" --val-every 100 --checkpoint-every 100000 "${init[@]}" "${DMD_ARGS[@]}"
fi
