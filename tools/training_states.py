"""Training states that live in the git history, not in the tree: list, restore, record.

The weights a user needs ship in the world bundle (``world_model/assets/doom``). What only training needs (the
teacher, the whole VAE, the light decoder's fp32 state) would make every checkout, and every GPU call's tree, tens
of MiB larger; every commit of them stays in every clone anyway. So they are kept at a recorded commit and
restored on demand, byte for byte (each file's SHA-256 is checked)::

    python -m tools.training_states list              # what is recorded, and whether it is here
    python -m tools.training_states restore           # write every missing state from the history
    python -m tools.training_states restore checkpoints/doom_teacher
    python -m tools.training_states record checkpoints/doom_teacher   # (maintainers) after committing a new best

The manifest is ``checkpoints/states.json``. A shallow clone lacks the history: ``git fetch --unshallow`` first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from world_model.safe_files import sha256_file

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "checkpoints" / "states.json"


def _git(*args: str, binary: bool = False) -> bytes | str:
    out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout if binary else out.stdout.decode()


def load_manifest(path: Path | None = None) -> dict:
    path = path or MANIFEST
    if not path.is_file():
        return {"states": {}}
    return json.loads(path.read_text())


def missing_files(folder: str, entry: dict) -> list[str]:
    """The files of a recorded state that are absent here or differ from the recorded bytes."""
    out = []
    for rel, digest in entry["files"].items():
        p = REPO / folder / rel
        if not p.is_file() or sha256_file(p) != digest:
            out.append(rel)
    return out


def restore(folder: str, entry: dict) -> list[str]:
    """Write the state's missing files from its commit (atomically, checked); returns the files written."""
    commit = entry["commit"]
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}")
    except RuntimeError:
        raise RuntimeError(
            f"{folder}: commit {commit[:12]} is not in this clone (a shallow clone?): run `git fetch --unshallow`"
        ) from None
    written = []
    for rel in missing_files(folder, entry):
        data = _git("show", f"{commit}:{folder}/{rel}", binary=True)
        if hashlib.sha256(data).hexdigest() != entry["files"][rel]:
            raise RuntimeError(f"{folder}/{rel} at {commit[:12]} does not match its recorded SHA-256")
        target = REPO / folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append(rel)
    return written


def record(folder: str, commit: str | None = None) -> dict:
    """The manifest entry of ``folder`` as committed at ``commit`` (default: the last commit that touched it)."""
    commit = commit or _git("log", "-1", "--format=%H", "--", folder).strip()
    if not commit:
        raise RuntimeError(f"{folder} was never committed: commit it first, then record it")
    names = _git("ls-tree", "-r", "--name-only", commit, "--", folder).split()
    if not names:
        raise RuntimeError(f"{folder} has no files at {commit[:12]}")
    files = {}
    for name in names:
        files[name[len(folder) + 1 :]] = hashlib.sha256(_git("show", f"{commit}:{name}", binary=True)).hexdigest()
    return {"commit": commit, "files": files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="recorded states and whether they are here")
    r = sub.add_parser("restore", help="write missing states from the git history")
    r.add_argument("folders", nargs="*", help="state folders (default: all recorded)")
    rec = sub.add_parser("record", help="record committed folders in the manifest")
    rec.add_argument("folders", nargs="+")
    rec.add_argument("--commit", default=None, help="the commit that holds them (default: the last to touch each)")
    args = ap.parse_args(argv)
    manifest = load_manifest()
    states = manifest["states"]
    try:
        if args.cmd == "list":
            for folder, entry in states.items():
                missing = missing_files(folder, entry)
                here = "here" if not missing else f"{len(missing)} of {len(entry['files'])} files missing"
                print(f"{folder}: commit {entry['commit'][:12]}, {len(entry['files'])} files, {here}")
        elif args.cmd == "restore":
            unknown = [f for f in args.folders if f.rstrip("/") not in states]
            if unknown:
                ap.error(f"not recorded in {MANIFEST.relative_to(REPO)}: {unknown}; recorded: {sorted(states)}")
            for folder in [f.rstrip("/") for f in args.folders] or list(states):
                written = restore(folder, states[folder])
                print(f"{folder}: " + (f"restored {len(written)} files" if written else "already here"))
        else:
            for folder in args.folders:
                states[folder.rstrip("/")] = record(folder.rstrip("/"), args.commit)
                print(f"recorded {folder} at {states[folder.rstrip('/')]['commit'][:12]}")
            MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
