# Sourced first by the GPU-box drivers (tools/device_stage.sh, tools/device_teacher_size.sh, tools/dmd_device.sh):
# the game wheels from .whl into /tmp/site (unless SKIP_WHEELS=1 or there is no .whl: the DMD stages need none),
# the import path, unbuffered logs, the commit the results are stamped with, and which GPU this is.
if [ -z "${SKIP_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the wheels in .whl failed: make them with tools/device_wheels.sh" >&2; exit 1; }
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 GIT_COMMIT="${GIT_COMMIT:-unknown}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || true
