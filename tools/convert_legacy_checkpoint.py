"""Convert the project's older ``torch.save`` files (pickles) to its state files, once, bit for bit.

    python -m tools.convert_legacy_checkpoint checkpoints/doom_light/light_decoder.pt checkpoints/probe/probe.pt
    python -m tools.convert_legacy_checkpoint runs/doom_vae/checkpoint.pt --out runs/doom_vae/converted.pt

Handles light-decoder exports (``light_decoder.pt``), inverse-dynamics probes (``probe.pt``) and training
checkpoints (``checkpoint.pt`` of ``train_vae`` / ``train_light_decoder`` / ``train_teacher``). The old file is read
with ``torch.load(weights_only=True)`` and an allow-list of exactly what numpy's RNG state needs (numpy arrays and
dtypes): a pickle that asks for anything else is refused and nothing in it runs. The new file (safetensors +
JSON + SHA-256, :mod:`world_model.safe_files`) is read back and compared with the old one, every tensor bit-exact,
before it replaces the old file (same name by default, so every path keeps working). Files already converted are
left alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_model.safe_files import (
    StateFileError,
    load_state_file,
    safe_torch_load,
    save_state_file,
    sniff,
    state_file_kind,
)

PROBE_FORMAT = "lingbot-inverse-dynamics-probe"  # distillation.evaluation.probe.FORMAT


def numpy_globals() -> list[Any]:
    """What unpickling a numpy array (``np.random.get_state()``'s key table) needs, and nothing else."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def kind_of(blob: Any, path: Path) -> str:
    if not isinstance(blob, dict):
        raise StateFileError(f"{path}: holds a {type(blob).__name__}, not one of this project's files")
    if blob.get("format") == PROBE_FORMAT:
        return PROBE_FORMAT
    if {"config", "state_dict"} <= set(blob):
        return "light-decoder"
    if {"step", "rng", "config"} <= set(blob):
        return "training-checkpoint"
    raise StateFileError(
        f"{path}: not a light decoder, probe or training checkpoint of this project (keys {sorted(blob)[:10]})"
    )


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().reshape(-1).contiguous().view(torch.uint8)


def same(a: Any, b: Any, where: str = "") -> None:
    """Raise AssertionError unless ``a`` and ``b`` are equal, tensors and arrays bit for bit with the same dtype."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(_bytes(a), _bytes(b)), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}/{i}")
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} != {b!r}"


def convert(path: str | Path, out: str | Path | None = None) -> str:
    """Convert one file; returns what was done (``"converted <kind>"`` or ``"already converted"``)."""
    path = Path(path)
    out = Path(out) if out is not None else path
    if state_file_kind(path) is not None:
        return "already converted"
    if sniff(path) not in ("torch-zip", "pickle"):
        raise StateFileError(f"{path}: neither a torch.save file nor a state file ({sniff(path)})")
    blob = safe_torch_load(path, "legacy checkpoint", extra_globals=numpy_globals())
    kind = kind_of(blob, path)
    tmp = out.with_name(f".{out.name}.converting")
    try:
        save_state_file(tmp, blob, kind)
        same(blob, load_state_file(tmp, kind), out.name)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return f"converted {kind}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.convert_legacy_checkpoint", description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="files to convert in place")
    p.add_argument("--out", default=None, help="write here instead of in place (one input file only)")
    args = p.parse_args(argv)
    if args.out and len(args.paths) != 1:
        p.error("--out takes one input file")
    status = 0
    for path in args.paths:
        try:
            print(f"{path}: {convert(path, args.out)}")
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
