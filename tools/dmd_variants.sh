#!/usr/bin/env bash
# Several DMD runs side by side on one GPU box, each its own process and resumable under $ROOT/<name>.
#
#   VARIANTS="base=|r16=--rollout-frames 16|g2=--guidance 2" COMMON="--batch-size 128 --critic-rollouts 1" \
#   STUDENT=runs/dmd/dmd/export CRITIC=runs/dmd/dmd/critic MINUTES=8 bash tools/dmd_variants.sh
#
# Why side by side: the Doom student's DMD step is many small passes (48 tokens per latent frame; a CPU profile
# counts ~240 DiT passes and ~19k linear calls per update), so its time goes to launching kernels rather than to
# the GPU's arithmetic: three runs shared an H200 at 0.22-0.24 updates/s each (Dec 7), where one alone ran 0.33 on
# an H100 (another card, so only roughly comparable). An A/B that changes one thing at a time fits one device call.
# A second call with the same VARIANTS resumes every run from its checkpoint (--init-from / --critic-from are then
# ignored), so runs can span calls on a warm machine.
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
