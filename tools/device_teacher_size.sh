#!/usr/bin/env bash
# A teacher of another size on the GPU box, trained and scored on one warm machine (its export, 92 MB at 512 wide,
# is too large to come back), and the full-size DMD iteration benchmark. One device call per PHASE:
#
#   PHASE=train MINUTES=7.6 TRAIN_ARGS="--dim 512" bash tools/device_teacher_size.sh   # grow + train (resumes in runs/)
#   PHASE=final bash tools/device_teacher_size.sh    # score grown vs committed teacher: 100 clips, 50 steps, CFG 3
#   PHASE=dmd LIMIT=560 bash tools/device_teacher_size.sh   # benchmarks.dmd_full_size + the overlap A/B (1.3B)
#
# Carry [".box_in/teach_in.tar.xz", ".whl", "tools"] with `bash tools/device_tree.sh off`; make the tarball here
# after `python -m tools.training_states restore`:
#   tar -cf - checkpoints/doom_teacher/{config.json,*.safetensors,*.index.json,result.json} \
#     checkpoints/doom_vae/{vae.json,vae_encoder.safetensors,vae_decoder.safetensors,result.json} checkpoints/probe \
#     | xz -6 -T2 > .box_in/teach_in.tar.xz        # ~40 MB; .whl from tools/device_wheels.sh (18 MB)
# The machine goes back after 30 s idle: issue the calls back to back. The harness writes contact sheets without
# ffmpeg (no MP4s there); logs.tar brings reports, sheets and per-clip metrics back.
# PHASE=train MINUTES=7.6 TRAIN_ARGS="--dim 512"   |   PHASE=final  (eval wide + base, paired; then full-size DMD)
set -uo pipefail
OUT="${OUT:?}"
T0=$(date +%s)
source tools/device_prelude.sh
[ -f checkpoints/doom_teacher/config.json ] && [ -f checkpoints/probe/probe.pt ] || xz -dc .box_in/teach_in.tar.xz | tar -x
read -r -a TRAIN_ARGS <<<"${TRAIN_ARGS:-}"
RUN="${RUN:-runs/wide}"
if [ "$PHASE" = train ]; then
    init=(--init-from checkpoints/doom_teacher)
    [ -f "$RUN/checkpoint.pt" ] && init=()
    python3 -m distillation.train_teacher --device cuda --vae checkpoints/doom_vae --out "$RUN" --workers 14 \
        --max-minutes "$MINUTES" --checkpoint-every 100000 --compile "${init[@]}" "${TRAIN_ARGS[@]}" >"$OUT/train.log" 2>&1
    echo "train rc=$?"
    tail -5 "$OUT/train.log"; cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null; cat "$RUN/export/config.json" "$RUN/export/result.json" 2>/dev/null
    ls -la "$RUN" "$RUN/export"
fi
if [ "$PHASE" = final ]; then
    ev() {  # ev SPEC DIR
        timeout 240 python3 -m distillation.evaluate --model "$1" --out "$2" --device cuda --no-progress --stability-steps 0 \
            --clips 100 --horizon 4 --batch-size 50 --videos 8 --probe checkpoints/probe/probe.pt --teacher-steps 50 \
            --guidance 3 >"$2.log" 2>&1; echo "eval $1 rc=$?"; tail -3 "$2.log"
    }
    mkdir -p runs/ev
    ev "teacher:$RUN/export:checkpoints/doom_vae" runs/ev/wide
    ev "teacher:checkpoints/doom_teacher:checkpoints/doom_vae" runs/ev/base
    python3 - <<'PY'
import numpy as np
a, b = (np.load(f"runs/ev/{n}/metrics.npz") for n in ("wide", "base"))
assert (a["seeds"] == b["seeds"]).all()
d = a["psnr"][:, 1:17].mean(1) - b["psnr"][:, 1:17].mean(1)
print(f"paired first16 PSNR wide - base: {d.mean():+.3f} +- {d.std(ddof=1) / len(d) ** 0.5:.3f} dB over {len(d)} clips")
for j in range(1, 5):
    s = slice(4 * j - 3, 4 * j + 1)
    print(f"step {j}: wide {a['psnr'][:, s].mean():.2f} base {b['psnr'][:, s].mean():.2f}")
PY
    tar -cf "$OUT/logs.tar" runs/ev/*/report.json runs/ev/*/contact_sheet.png runs/ev/*.log runs/ev/*/metrics.npz "$RUN/log.jsonl" 2>/dev/null
fi
if [ "$PHASE" = dmd ]; then  # issue 26: one DMD iteration at full size, then the overlap lever (1.3B, A/B)
    timeout "${DMD_S:-330}" python3 -m benchmarks.dmd_full_size --shape lingbot --frames 21 --window "${WINDOW:-1}" --iterations 2 \
        --out "$OUT/dmd_full_size_h100_lingbot_21f.json" >"$OUT/dmd_lingbot_21.log" 2>&1
    echo "dmd_full_size rc=$?"; tail -14 "$OUT/dmd_lingbot_21.log"
    for ov in "" "--overlap"; do
        left=$(( ${LIMIT:-570} - ($(date +%s) - T0) - 10 ))
        [ "$left" -lt 60 ] && { echo "no time for env_full_size $ov"; continue; }
        timeout "$left" python3 -m benchmarks.env_full_size --shape wan-1.3b --compile --vae-dtype bf16 $ov \
            --out "$OUT/env_full_size_wan-1.3b_compiled_bf16vae${ov:+_overlap}_h100.json" >"$OUT/efs${ov:+_ov}.log" 2>&1
        echo "env_full_size 1.3b $ov rc=$?"; tail -2 "$OUT/efs${ov:+_ov}.log"
    done
fi
ls -la "$OUT"
