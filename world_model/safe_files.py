"""Files that hold weights and state, read without running code from them, and checked for corruption.

No pickle from disk: a ``torch.save`` file is a pickle, and ``torch.load(weights_only=False)`` runs whatever a
``__reduce__`` in it asks for. So:

* The project's own state files (training checkpoints, the light decoder, the probe) are **state files**: one
  safetensors file whose tensors are the state's tensors and whose metadata holds the rest as JSON (config, step,
  the non-tensor parts of an optimizer state, Python's RNG state) plus the file's SHA-256, checked at every load
  (:func:`save_state_file`, :func:`load_state_file`). One file, written atomically (:func:`atomic_write`): a kill
  leaves the old file or the new one.
* Third-party ``.pth`` weights (``Wan2.1_VAE.pth``, the umT5 ``.pth``) can only be ``torch.save`` files: they are read
  by :func:`safe_torch_load`, ``torch.load(weights_only=True)`` after a scan that refuses any pickle global outside
  torch's tensor allow-list, with an error naming the file and the globals it wanted.
* Files of the project's earlier pickle format are refused with the command that converts them once
  (``python -m tools.convert_legacy_checkpoint``).

:func:`sha256_file` and :func:`check_sha256` serve the per-file digests that world bundles and sharded DiT
checkpoints record (``world.json``, ``SHA256SUMS``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

STATE_FORMAT = "lingbot-realtime-state"
STATE_VERSION = "1"
_PLACEHOLDER = "~" * 64  # where the digest goes: same length as a SHA-256 hex digest
_CHUNK = 1 << 22
CONVERT_HINT = "python -m tools.convert_legacy_checkpoint"
SHA256SUMS = "SHA256SUMS"


class UnsafeFileError(ValueError):
    """A file would need a pickle to be read (it could run code), or holds globals outside the allow-list."""


class StateFileError(ValueError):
    """A file is not the state file it should be: wrong format or kind, truncated, corrupt, or a key is missing."""


class IntegrityError(StateFileError):
    """A file's bytes differ from the SHA-256 recorded when it was written (it changed or is corrupt)."""


# -- atomic writes ----------------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one rename: a kill
    leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # some writers create 0600 files; a checkpoint is as readable as any file here
        with open(tmp, "rb") as f:  # make the bytes durable before the rename makes them visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# -- digests ------------------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str, what: str = "file") -> None:
    """Raise :class:`IntegrityError` naming ``path`` when its SHA-256 is not ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise IntegrityError(
            f"{path}: this {what} is corrupt or was changed after it was written: its SHA-256 is {got[:16]}..., "
            f"recorded {expected[:16]}... Restore or download it again."
        )


def write_sha256sums(folder: str | os.PathLike, names: Iterable[str]) -> Path:
    """``SHA256SUMS`` in ``folder`` for the files ``names`` (the ``sha256sum`` format: ``<hex>  <name>``)."""
    folder = Path(folder)
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)]
    (folder / SHA256SUMS).write_text("".join(lines))
    return folder / SHA256SUMS


def read_sha256sums(folder: str | os.PathLike) -> dict[str, str] | None:
    """``{file name: hex}`` from ``folder/SHA256SUMS``, or None when there is none."""
    path = Path(folder) / SHA256SUMS
    if not path.is_file():
        return None
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise IntegrityError(f"{path}:{n}: not a '<sha256>  <file>' line: {line[:80]!r}")
        out[name.strip()] = digest
    return out


# -- what a file is -----------------------------------------------------------------------------------------------
def sniff(path: str | os.PathLike) -> str:
    """``"safetensors"``, ``"torch-zip"`` (a ``torch.save`` archive), ``"pickle"``, ``"empty"`` or ``"unknown"``."""
    with open(path, "rb") as f:
        return sniff_bytes(f.read(10))


def sniff_bytes(head: bytes) -> str:
    """:func:`sniff` of a file's first bytes (10 are enough)."""
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 9 and head[8:9] == b"{":  # 8-byte header length, then the JSON header
        return "safetensors"
    if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:1] in (b"(", b"c"):
        return "pickle"  # protocol 2+ starts with PROTO; protocols 0/1 usually with MARK or GLOBAL
    return "unknown"


def _pickle_refusal(path: Path, kind: str, what: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path} is a {'torch.save (pickle)' if kind == 'torch-zip' else 'pickle'} file, not a {what} in this "
        "project's format. Pickles are not loaded: they can run code. If it is an older file of this project, "
        f"convert it once with `{CONVERT_HINT} {path}` (it reads tensors only, refusing anything else); otherwise "
        "delete it."
    )


# -- third-party torch.save weights ---------------------------------------------------------------------------------
def safe_torch_load(path: str | os.PathLike, what: str = "weights file", mmap: bool = False, extra_globals=()) -> Any:
    """``torch.load(path, weights_only=True)``, refusing first (naming the file and the globals) any pickle that
    imports something outside torch's tensor allow-list plus ``extra_globals``. Nothing in the file is run."""
    path = Path(path)
    kind = sniff(path)
    if kind == "safetensors":
        raise UnsafeFileError(f"{path} is a safetensors file: read it with safetensors, not as a {what}")
    if kind == "torch-zip":
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # a broken archive
            raise StateFileError(f"{path}: cannot read this {what} ({exc}); it is truncated or corrupt") from exc
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in extra_globals}
        unsafe = [g for g in unsafe if g not in allowed]
        if unsafe:
            raise UnsafeFileError(
                f"{path}: refused: this {what} is a pickle that imports {unsafe[:5]}, which a weights file does not "
                "need (only tensors and plain containers are allowed; loading it could run code)"
            )
    elif kind not in ("pickle",):
        raise StateFileError(f"{path}: not a {what} (not a torch.save file: {kind})")
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == "torch-zip")
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy files cannot be mapped
    except Exception as exc:
        name = type(exc).__name__
        if "Unpickling" in name or "weights_only" in str(exc) or "Weights only" in str(exc):
            raise UnsafeFileError(
                f"{path}: refused: this {what} is a pickle that needs more than tensors to load "
                f"({str(exc).splitlines()[-1][:200] if str(exc) else name}); loading it could run code"
            ) from None
        raise StateFileError(f"{path}: cannot read this {what} ({exc}); it is truncated or corrupt") from exc


# -- state files: nested state <-> tensors + JSON -----------------------------------------------------------------
def _flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str, seen: set[int]) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        storage = t.untyped_storage()
        whole = t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if not whole or (t.numel() and storage.data_ptr() in seen):
            t = t.clone()  # safetensors stores each tensor on its own storage
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        key = path or "tensor"
        while key in tensors:
            key += "'"
        tensors[key] = t
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"state entry {path!r}: numpy object arrays cannot be stored")
        arr = np.ascontiguousarray(obj)
        key = path or "array"
        while key in tensors:
            key += "'"
        tensors[key] = (
            torch.frombuffer(bytearray(arr.tobytes()), dtype=torch.uint8)
            if arr.nbytes
            else torch.empty(0, dtype=torch.uint8)
        )
        return {"__ndarray__": key, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}/{i}", seen) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{path}/{i}", seen) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _flatten(v, tensors, f"{path}/{k}" if path else k, seen) for k, v in obj.items()}
        return {
            "__items__": [
                [_flatten(k, tensors, f"{path}/key{i}", seen), _flatten(v, tensors, f"{path}/{k}", seen)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    if isinstance(obj, os.PathLike):
        return {"__path__": os.fspath(obj)}
    raise TypeError(f"state entry {path!r}: cannot store a {type(obj).__name__} (tensors, arrays and JSON values only)")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        raw = tensors[obj["__ndarray__"]].numpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
    if "__dtype__" in obj:
        return getattr(torch, obj["__dtype__"])
    if "__path__" in obj:
        return Path(obj["__path__"])
    return {k: _unflatten(v, tensors) for k, v in obj.items()}


def _digest(f, header: bytes) -> str:
    """SHA-256 of the whole file with the digest field read as the placeholder (``f`` positioned after the header)."""
    h = hashlib.sha256()
    h.update(struct.pack("<Q", len(header)))
    h.update(header)
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _write_state(tmp: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(tmp), metadata={**metadata, "sha256": _PLACEHOLDER})
    with open(tmp, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = f.read(n)
        placeholder = _PLACEHOLDER.encode()
        if header.count(placeholder) != 1:
            raise ValueError("a state entry contains the digest placeholder; cannot write this state")
        digest = _digest(f, header)
        f.seek(8 + header.index(placeholder))
        f.write(digest.encode())


def save_state_file(path: str | os.PathLike, state: Any, kind: str) -> Path:
    """Write ``state`` (nested dicts / lists / tuples of tensors, numpy arrays and JSON values) to ``path`` as one
    safetensors file with its structure as JSON and its SHA-256 in the metadata; atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, tensors, "", set())
    metadata = {"format": STATE_FORMAT, "version": STATE_VERSION, "kind": kind, "tree": json.dumps(tree)}
    return atomic_write(path, lambda tmp: _write_state(tmp, tensors, metadata))


def _read_state_header(f: BinaryIO, size: int, path: Path, what: str) -> tuple[dict[str, str], bytes]:
    """``(metadata, raw JSON header)`` of the state file open as ``f`` (at its start; left after the header)."""
    kind = sniff_bytes(f.read(10))
    if kind in ("torch-zip", "pickle"):
        raise _pickle_refusal(path, kind, what)
    f.seek(0)
    try:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise ValueError(f"header of {n} bytes in a file of {size}")
        raw = f.read(n)
        header = json.loads(raw)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StateFileError(
            f"{path}: not a {what} (not a safetensors file: {exc}; {size} bytes). It is truncated or corrupt, or "
            "another kind of file."
        ) from None
    meta = header.get("__metadata__") or {}
    if meta.get("format") != STATE_FORMAT:
        raise StateFileError(
            f"{path}: a safetensors file but not a {what} of this project (its metadata has format="
            f"{meta.get('format')!r}, expected {STATE_FORMAT!r})"
        )
    return meta, raw


def read_state_header(path: str | os.PathLike, what: str = "state file") -> dict[str, str]:
    """The metadata of a state file (``format``, ``kind``, ``tree``, ``sha256``), after checking it is one."""
    path = Path(path)
    with open(path, "rb") as f:
        return _read_state_header(f, os.fstat(f.fileno()).st_size, path, what)[0]


def load_state_file(
    path: str | os.PathLike,
    kind: str | Iterable[str] | None = None,
    what: str = "state file",
    map_location: str | torch.device | None = None,
) -> Any:
    """Read a file written by :func:`save_state_file`, after checking its format, ``kind`` (one or several) and
    SHA-256; tensors go to ``map_location`` (default CPU). Errors name the file and what is wrong with it."""
    from safetensors.torch import load

    path = Path(path)
    # One read of the whole file, and everything below from those bytes: a run that replaces its checkpoint while
    # it is being read (a resume, a watcher) would otherwise pair one file's digest with another file's tensors.
    data = path.read_bytes()
    f = io.BytesIO(data)
    meta, header = _read_state_header(f, len(data), path, what)
    kinds = (kind,) if isinstance(kind, str) else (None if kind is None else tuple(kind))
    if kinds is not None and meta.get("kind") not in kinds:
        raise StateFileError(f"{path}: a {meta.get('kind')!r} state file, not a {what} ({' or '.join(kinds)})")
    digest = meta.get("sha256", "")
    if len(digest) != 64 or header.count(digest.encode()) != 1:
        raise IntegrityError(f"{path}: the {what} records no usable SHA-256; it is corrupt")
    got = _digest(f, header.replace(digest.encode(), _PLACEHOLDER.encode()))
    if got != digest:
        raise IntegrityError(
            f"{path}: this {what} is corrupt or was changed after it was written: its SHA-256 is {got[:16]}..., "
            f"recorded {digest[:16]}... Restore it, or delete it to start over."
        )
    try:
        tree = json.loads(meta["tree"])
        state = _unflatten(tree, load(data))  # from the bytes read above: no mapping of a file that may change
    except Exception as exc:
        raise StateFileError(f"{path}: cannot read this {what} ({type(exc).__name__}: {exc})") from exc
    if map_location is not None and torch.device(map_location).type != "cpu":
        state = _to_device(state, torch.device(map_location))
    return state


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj


def state_file_kind(path: str | os.PathLike) -> str | None:
    """The ``kind`` of a state file, or None when ``path`` is not one (any other file, a pickle included)."""
    try:
        return read_state_header(path).get("kind")
    except (StateFileError, UnsafeFileError, OSError):
        return None


def require_keys(state: Any, keys: Iterable[str], path: str | os.PathLike, what: str) -> None:
    """Raise :class:`StateFileError` naming ``path`` and the missing keys when ``state`` lacks any of ``keys``."""
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: this {what} holds a {type(state).__name__}, not a dict of entries")
    missing = [k for k in keys if k not in state]
    if missing:
        raise StateFileError(f"{path}: this {what} has no {missing} (it holds {sorted(state)})")
