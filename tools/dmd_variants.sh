#!/usr/bin/env bash
# Several DMD runs side by side on one GPU box, each its own process and resumable under $ROOT/<name>.
#
#   VARIANTS="base=|r16=--rollout-frames 16|g2=--guidance 2" COMMON="--batch-size 128 --critic-rollouts 1" \
#   STUDENT=runs/dmd/dmd/export CRITIC=runs/dmd/dmd/critic MINUTES=8 bash tools/dmd_variants.sh
#
# Why side by side: the Doom student's DMD step is bound by kernel launches, not by the GPU (48 tokens per latent
# frame; one process leaves the H100 mostly idle), so a few runs in parallel cost little more time than one, and
# an A/B that changes one thing at a time fits one device call. A second call with the same VARIANTS resumes every
# run from its checkpoint (--init-from / --critic-from are then ignored), so runs can span calls on a warm machine.
#
# VARIANTS: "name=extra flags|name=extra flags|..." (names of letters, digits, '_' and '-'); COMMON: flags of
# every run; STUDENT / CRITIC: the exports a new run starts from; MINUTES: each run's time budget (it checkpoints,
# validates and exports before it ends). Each run logs to $ROOT/<name>.log and $ROOT/<name>/dmd/log.jsonl and
# exports to $ROOT/<name>/dmd/export (student) and .../critic. Exits non-zero if any run failed.
# Dry run here (CPU, tiny): DEVICE=cpu MINUTES=0.1 COMMON="--batch-size 2 --max-steps 1" ... bash tools/dmd_variants.sh
set -uo pipefail
VARIANTS="${VARIANTS:?set VARIANTS, e.g. base=|r16=--rollout-frames 16}"
ROOT="${ROOT:-runs/variants}"
DEVICE="${DEVICE:-cuda}"
MINUTES="${MINUTES:-8}"
TEACHER="${TEACHER:-checkpoints/doom_teacher}"
COND="${COND:-.dmd/conditions}"
VAL="${VAL:-.dmd/val}"
LIGHT="${LIGHT:-.dmd/light.pt}"
VAL_EVERY="${VAL_EVERY:-25}"
read -r -a COMMON_ARGS <<<"${COMMON:-}"
init=()
[ -n "${STUDENT:-}" ] && init+=(--init-from "$STUDENT")
[ -n "${CRITIC:-}" ] && init+=(--critic-from "$CRITIC")
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
mkdir -p "$ROOT"
pids=() names=()
IFS='|' read -r -a specs <<<"$VARIANTS"
for spec in "${specs[@]}"; do
    name="${spec%%=*}" extra="${spec#*=}"
    [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "bad variant name '$name' in VARIANTS" >&2; exit 2; }
    read -r -a extra_args <<<"$extra"
    python3 -m distillation.dmd dmd --device "$DEVICE" --out "$ROOT/$name" --teacher "$TEACHER" --conditions "$COND" \
        --val-conditions "$VAL" --light-decoder "$LIGHT" --max-minutes "$MINUTES" --val-every "$VAL_EVERY" \
        --checkpoint-every 100000 "${init[@]}" "${COMMON_ARGS[@]}" "${extra_args[@]}" >"$ROOT/$name.log" 2>&1 &
    pids+=($!) names+=("$name")
done
status=0
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        echo "${names[$i]}: done"
    else
        echo "${names[$i]}: FAILED (exit $?), see $ROOT/${names[$i]}.log" >&2
        tail -5 "$ROOT/${names[$i]}.log" >&2
        status=1
    fi
done
exit $status
