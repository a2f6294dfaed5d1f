#!/usr/bin/env bash
# What a device call would send: tracked and untracked-not-ignored files present in the working tree, plus the
# carried paths given as arguments. The limit is 64 MiB in all.
#
#   bash tools/tree_size.sh .whl          # e.g. before a training stage that carries the game wheels
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'if test -f "{}"; then stat -c %s "{}"; fi' |
    awk '{s += $1} END {print s + 0}')
carry=0
for p in "$@"; do carry=$((carry + $(du -sb "$p" | cut -f1))); done
total=$((tree + carry))
printf 'tree %.1f MiB + carry %.1f MiB = %.1f MiB of 64 MiB\n' \
    "$(echo "$tree / 1048576" | bc -l)" "$(echo "$carry / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
[ "$total" -le $((64 * 1048576)) ]
