#!/usr/bin/env bash
# Download into .whl/ (repo root, git-ignored) the wheels the GPU box needs to run the real game and the
# on-the-fly collector: that box has Python 3.12, torch, numpy, pillow, tqdm and typing_extensions, but
# no vizdoom, gymnasium, farama-notifications or cloudpickle, and no network. The tree sent there must
# stay under 64 MiB, so the vizdoom wheel is slimmed: the WAD we do not play (freedoom1 by default) is
# removed and its RECORD line dropped.
#
# pygame-ce is NOT downloaded: vizdoom lists it as a dependency, but only vizdoom.gymnasium_wrapper
# imports pygame (for human rendering); `import vizdoom` and lingbot_env do not.
#
# On the GPU box: python3 -m pip install --no-deps --no-index .whl/*.whl
#
# Env overrides: PY_VERSION (3.12), KEEP_WAD (freedoom2; freedoom1 | freedoom2 | both), DEST (.whl).
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION="${PY_VERSION:-3.12}"
KEEP_WAD="${KEEP_WAD:-freedoom2}"
DEST="${DEST:-.whl}"
mkdir -p "$DEST"

WHEELS=(
    "vizdoom==1.3.2"
    "gymnasium==1.4.0"
    "farama-notifications==0.0.6"
    "cloudpickle==3.1.1"
)
for req in "${WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DEST" "$req"
done

# Rebuild the vizdoom wheel without the unused WAD (same file name, so pip still accepts it).
python3 - "$DEST" "$KEEP_WAD" <<'PY'
import glob, os, sys, zipfile

dest, keep = sys.argv[1], sys.argv[2]
drop = {"freedoom1": ["freedoom2.wad"], "freedoom2": ["freedoom1.wad"], "both": []}[keep]
drop = ["vizdoom/" + d for d in drop]
for path in glob.glob(os.path.join(dest, "vizdoom-*.whl")):
    with zipfile.ZipFile(path) as src:
        names = src.namelist()
        if not any(n in drop for n in names):
            print(f"{os.path.basename(path)}: already slim")
            continue
        tmp = path + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for info in src.infolist():
                if info.filename in drop:
                    continue
                data = src.read(info.filename)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    data = "".join(l for l in lines if l.split(",", 1)[0] not in drop).encode()
                out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, path)
    print(f"{os.path.basename(path)}: removed {', '.join(drop)}")
PY

# Replace vizdoom's bundled ICU data library (27 MB, 10.7 MB compressed) by a stub that only defines the
# symbol the ICU loader links against. Only the Python module's boost_regex links ICU, and nothing this project
# calls touches ICU data: the real-game env and the on-the-fly collector were checked to run with the stub,
# here and on the GPU box. This keeps the wheels (~18 MB) plus a carried checkpoint under the 64 MiB a call
# may send. STUB_ICU=0 keeps the real library.
if [ "${STUB_ICU:-1}" = "1" ]; then
    STUB_DIR=$(mktemp -d)
    printf 'const char icudt60_dat[64] __attribute__((aligned(16))) = {0};\n' > "$STUB_DIR/stub.c"
    gcc -shared -fPIC -O2 -o "$STUB_DIR/libicudata-05640f77.so.60.3" "$STUB_DIR/stub.c" \
        -Wl,-soname,libicudata-05640f77.so.60.3
    python3 - "$DEST" "$STUB_DIR/libicudata-05640f77.so.60.3" <<'PY'
import glob, os, sys, zipfile

dest, stub_path = sys.argv[1], sys.argv[2]
stub = open(stub_path, "rb").read()
for path in glob.glob(os.path.join(dest, "vizdoom-*.whl")):
    with zipfile.ZipFile(path) as src:
        target = [n for n in src.namelist() if n.endswith("libicudata-05640f77.so.60.3")]
        if not target or src.getinfo(target[0]).file_size == len(stub):
            print(f"{os.path.basename(path)}: ICU data already stubbed or absent")
            continue
        tmp = path + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for info in src.infolist():
                data = stub if info.filename == target[0] else src.read(info.filename)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    data = "".join(l for l in lines if l.split(",", 1)[0] != target[0]).encode()
                out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, path)
    print(f"{os.path.basename(path)}: ICU data library replaced by a {len(stub)}-byte stub")
PY
    rm -rf "$STUB_DIR"
fi

echo "wheels in $DEST:"
ls -l "$DEST"/*.whl | awk '{printf "  %8.1f MB  %s\n", $5 / 1e6, $9}'
du -cb "$DEST"/*.whl | tail -1 | awk '{printf "total: %.1f MB (%.1f MiB)\n", $1 / 1e6, $1 / 1048576}'
