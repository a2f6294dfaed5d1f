#!/usr/bin/env bash
# Leave the big folders that a DMD device call does not need (the shipped bundle among them) out of the tree it sends (the limit is 64 MiB):
#
#   bash tools/device_tree.sh off    # untrack checkpoints/doom_vae, checkpoints/probe, benchmarks/results (index only)
#   ... device call (tools/dmd_device.sh, carrying .dmd) ...
#   bash tools/device_tree.sh on     # track them again (git reset of those paths; the files never left the disk)
#
# Only the index and .git/info/exclude change: the files stay where they are for everything running here.
set -euo pipefail
cd "$(dirname "$0")/.."
PATHS=(checkpoints/doom_vae checkpoints/probe benchmarks/results world_model/assets/doom)
EXCLUDE=.git/info/exclude
mkdir -p .git/info
case "${1:-}" in
off)
    git rm -r -q --cached --ignore-unmatch "${PATHS[@]}"
    for p in "${PATHS[@]}"; do grep -qx "/$p/" "$EXCLUDE" 2>/dev/null || echo "/$p/" >>"$EXCLUDE"; done
    ;;
on)
    git reset -q -- "${PATHS[@]}"
    for p in "${PATHS[@]}"; do sed -i "\#^/$p/\$#d" "$EXCLUDE"; done
    ;;
*)
    echo "usage: tools/device_tree.sh off|on" >&2
    exit 2
    ;;
esac
bash tools/tree_size.sh .dmd 2>/dev/null || true
