"""Load DiT checkpoints as they are on disk: official, diffusers and prefixed names, sharded or single-file.

Layouts (docs/official_models.md §1):

* an expert folder: ``diffusion_pytorch_model-0000k-of-0000n.safetensors`` + ``diffusion_pytorch_model.safetensors.
  index.json`` (+ ``config.json``);
* LingBot Fast's folder: ``model-000kk-of-00016.safetensors`` + ``diffusion_pytorch_model.safetensors.index.json``;
* one ``.safetensors`` file (official, diffusers or ``model.diffusion_model.``-prefixed names);
* a release root holding ``high_noise_model/`` + ``low_noise_model/`` (a pair) or ``lingbot_world_fast/``.

Memory: the model is built on ``meta`` and materialised on the target device in the target dtype (bf16) before any
tensor is read. Shards are then opened one at a time with safetensors' lazy ``safe_open`` (memory-mapped), and each
fp32 tensor is copied straight into its bf16 parameter, so the host holds at most the bf16 model (when loading to
CPU) plus the pages of one shard; the fp32 model never exists.

Safety: every shard header is read and every name and shape checked against the model *before* the first tensor
is copied, so a missing shard, a truncated or corrupt file, a wrong shape or an unknown tensor fails with the file
named and the model untouched. Loading is strict by default.

Integrity (``integrity=``): a checkpoint this project wrote has a ``SHA256SUMS`` file beside its shards
(:func:`~world_model.checkpoints.saving.save_checkpoint`); by default (``"auto"``) every listed file is hashed and
compared before the first tensor is copied, so flipped bytes anywhere are refused with the file named. Official
releases record no digests, and full-size shards (tens of GB) are too large to hash at every load: there (or with
``integrity="finite"``) every tensor is checked to be finite as it is copied (its sum on the target device, no
temporary, confirmed element-wise only when not finite; one host sync per shard), and the first NaN / inf names
its tensor and shard.
``"sha256"`` requires the digests; ``"none"`` skips both checks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from world_model.checkpoints.build import ExpertPair, build_dit, init_weights_
from world_model.checkpoints.keys import (
    NamingError,
    NamingInfo,
    control_type_of,
    detect_naming,
    infer_config,
    infer_control_dim,
    to_official_names,
)
from world_model.checkpoints.presets import Preset, get_preset, list_presets
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT
from world_model.safe_files import SHA256SUMS, IntegrityError, check_sha256, read_sha256sums

logger = logging.getLogger(__name__)

INDEX_SUFFIX = ".safetensors.index.json"
PREFERRED_INDEX = "diffusion_pytorch_model.safetensors.index.json"
SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.safetensors$")
RELEASE_FOLDERS = ("high_noise_model", "low_noise_model", "lingbot_world_fast")
INTEGRITY_MODES = ("auto", "sha256", "finite", "none")
_SHOW = 5  # names listed per category in error messages

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
    "F8_E5M2": getattr(torch, "float8_e5m2", None),
}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read (missing or corrupt file, bad index, unknown layout)."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint does not fit the model (missing / unexpected / wrong-shape tensors, control type)."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its name in the file, the file, and its header shape and dtype."""

    name_in_file: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype code, e.g. "F32"

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class CheckpointFiles:
    """The weight files of one model on disk.

    ``files`` in load order; ``index`` and ``weight_map`` (``{name: file name}``) when the checkpoint is sharded
    with an index json; ``config_json`` when a ``config.json`` sits next to the weights."""

    path: Path
    files: tuple[Path, ...]
    index: Path | None = None
    weight_map: dict[str, str] | None = None
    config_json: dict | None = None

    @property
    def layout(self) -> str:
        if len(self.files) == 1 and self.index is None:
            return "single-file"
        return "sharded+index" if self.index is not None else "sharded"


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's headers, read without loading any tensor data.

    ``tensors`` is keyed by the *official* name; ``control_dim`` is read from ``patch_embedding_wancamctrl``'s
    shape; ``config`` is the model shape read from the tensors (completed by ``config.json``), or None with the
    reason in ``config_error`` when the tensors do not determine it (a partial checkpoint, say)."""

    files: CheckpointFiles
    naming: NamingInfo
    tensors: dict[str, TensorEntry]
    control_dim: int | None
    config: WanDiTConfig | None
    config_error: str | None = None

    @property
    def control_type(self) -> str | None:
        return control_type_of(self.control_dim)

    @property
    def num_tensors(self) -> int:
        return len(self.tensors)

    @property
    def num_params(self) -> int:
        return sum(e.numel for e in self.tensors.values())

    @property
    def dtypes(self) -> set[str]:
        return {e.dtype for e in self.tensors.values()}

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.files.files)


@dataclass
class LoadReport:
    """What a load did: files read, naming found, tensors loaded, and (non-strict only) what was left out."""

    path: Path
    files: tuple[Path, ...]
    naming: NamingInfo
    control_type: str | None
    loaded: int
    bytes_read: int
    seconds: float
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    integrity: str = "none"  # the check that ran: "sha256", "finite" or "none"


# -- finding the files -------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the {what} ({exc}); the file is truncated or corrupt") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the {what} is not a JSON object")
    return data


def is_release_root(path: str | Path) -> bool:
    """True for a folder holding LingBot / Wan2.2 expert subfolders (``high_noise_model/`` ...)."""
    p = Path(path)
    return p.is_dir() and any((p / name).is_dir() for name in RELEASE_FOLDERS)


def find_weights(path: str | Path) -> CheckpointFiles:
    """Locate the weight files of one model: a ``.safetensors`` file, an index json, or a folder holding either.

    Raises :class:`CheckpointError` naming every shard the index lists that is not on disk."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or folder")
    folder = p if p.is_dir() else p.parent
    cfg_path = folder / "config.json"
    config_json = _read_json(cfg_path, "config.json") if cfg_path.is_file() else None

    if p.is_file() and p.name.endswith(INDEX_SUFFIX):
        return _from_index(p, config_json)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise CheckpointError(f"{p}: not a .safetensors file or index json (DiT weights must be safetensors)")
        return CheckpointFiles(p, (p,), config_json=config_json)

    indexes = sorted(p.glob("*" + INDEX_SUFFIX))
    if len(indexes) > 1:
        preferred = [i for i in indexes if i.name == PREFERRED_INDEX]
        if not preferred:
            raise CheckpointError(f"{p}: several index files {[i.name for i in indexes]}; pass the one to use")
        indexes = preferred
    if indexes:
        return _from_index(indexes[0], config_json)

    files = sorted(p.glob("*.safetensors"))
    if len(files) == 1:
        return CheckpointFiles(p, (files[0],), config_json=config_json)
    if not files:
        hint = (
            f" It is a release root: use load_model({str(p)!r}, preset=...) or point at one of its expert folders."
            if is_release_root(p)
            else ""
        )
        raise CheckpointError(f"{p}: no .safetensors weights found.{hint}")
    return _from_shard_names(p, files, config_json)


def _from_index(index: Path, config_json: dict | None) -> CheckpointFiles:
    data = _read_json(index, "index json")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: the index json has no 'weight_map' {{tensor name: shard file}}")
    names = sorted(set(weight_map.values()), key=_shard_sort_key)
    files = tuple(index.parent / n for n in names)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(
            f"{len(missing)} of the {len(files)} shards named in {index} are missing: "
            + ", ".join(str(f) for f in missing[:_SHOW])
            + (" ..." if len(missing) > _SHOW else "")
            + ". Download the missing files (the index lists every shard the checkpoint needs)."
        )
    return CheckpointFiles(index.parent, files, index, dict(weight_map), config_json)


def _shard_sort_key(name: str) -> tuple:
    m = SHARD_RE.match(name)
    return (m.group("prefix"), int(m.group("k"))) if m else (name, 0)


def _from_shard_names(folder: Path, files: list[Path], config_json: dict | None) -> CheckpointFiles:
    """Several ``.safetensors`` and no index: accept only one complete ``prefix-0000k-of-0000n`` series."""
    matches = [SHARD_RE.match(f.name) for f in files]
    series = {(m.group("prefix"), m.group("n")) for m in matches if m}
    if len(series) != 1 or not all(matches):
        raise CheckpointError(
            f"{folder}: {len(files)} .safetensors files and no index json, and they are not one "
            f"'name-0000k-of-0000n.safetensors' series: {[f.name for f in files[:_SHOW]]}. Add the index json or "
            "point at a single file."
        )
    prefix, n = series.pop()
    want = {f"{prefix}-{k:05d}-of-{n}.safetensors" for k in range(1, int(n) + 1)}
    missing = sorted(want - {f.name for f in files})
    if missing:
        raise CheckpointError(f"{folder}: shards missing from the {n}-shard series: {missing[:_SHOW]}")
    return CheckpointFiles(folder, tuple(sorted(files, key=lambda f: _shard_sort_key(f.name))), None, None, config_json)


# -- reading headers ---------------------------------------------------------------------------------------------
def _scan_file(path: Path) -> dict[str, TensorEntry]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            out = {}
            names = f.keys()
            for name in names:
                sl = f.get_slice(name)
                out[name] = TensorEntry(name, path, tuple(int(s) for s in sl.get_shape()), str(sl.get_dtype()))
            return out
    except Exception as exc:  # safetensors raises its own error type (and OSError) for unreadable files
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}; {size} bytes on disk). The file is truncated or "
            "corrupt: download it again."
        ) from exc


def inspect_checkpoint(path: str | Path | CheckpointFiles) -> CheckpointInfo:
    """Read every header of a checkpoint (no tensor data): names, shapes, dtypes, naming and model shape.

    Raises :class:`CheckpointError` for unreadable files, tensors in two shards, or an index naming a tensor its
    shard does not hold."""
    files = path if isinstance(path, CheckpointFiles) else find_weights(path)
    raw: dict[str, TensorEntry] = {}
    for f in files.files:
        for name, entry in _scan_file(f).items():
            if name in raw:
                raise CheckpointError(f"tensor {name!r} is in two shards: {raw[name].file} and {f}")
            raw[name] = entry
    if files.weight_map is not None:
        absent = [(n, fn) for n, fn in files.weight_map.items() if n not in raw or raw[n].file.name != fn]
        if absent:
            n, fn = absent[0]
            raise CheckpointError(
                f"{files.index}: the index places {len(absent)} tensors in shards that do not hold them, e.g. "
                f"{n!r} in {files.path / fn}. The shard is corrupt or from another checkpoint: download it again."
            )
    try:
        naming = detect_naming(raw)
        official = to_official_names(raw, naming)
        tensors = {off: raw[name] for off, name in official.items()}
        shapes = {k: e.shape for k, e in tensors.items()}
        pe = shapes.get("patch_embedding.weight")
        tokens = pe[2] * pe[3] * pe[4] if pe is not None and len(pe) == 5 else 4
        control_dim = infer_control_dim(shapes, int((files.config_json or {}).get("control_patch", 8)), tokens)
    except NamingError as exc:
        raise CheckpointError(f"{files.path}: {exc}") from exc
    try:
        config, config_error = infer_config(shapes, files.config_json), None
    except (NamingError, ValueError) as exc:
        config, config_error = None, f"cannot read the model shape of {files.path}: {exc}"
    return CheckpointInfo(files, naming, tensors, control_dim, config, config_error)


# -- loading -----------------------------------------------------------------------------------------------------
def _listing(title: str, items: list[str]) -> str:
    more = f" ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"\n  {title} ({len(items)}): " + ", ".join(items[:_SHOW]) + more


def _mismatch_message(
    info: CheckpointInfo, expected: str, missing: list[str], unexpected: list[str], wrong: list[str]
) -> str:
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} shape-mismatched"
    msg = f"checkpoint {info.files.path} does not match {expected}: {counts} tensors."
    if missing:
        msg += _listing("missing (model has, checkpoint lacks)", missing)
    if unexpected:
        msg += _listing("unexpected (checkpoint has, model lacks)", [_where(info, k) for k in unexpected])
    if wrong:
        msg += _listing("shape mismatch", wrong)
    msg += (
        f"\n  checkpoint: {info.num_tensors} tensors, {info.files.layout} ({len(info.files.files)} files), "
        f"{info.naming.naming} names{' with prefix ' + repr(info.naming.prefix) if info.naming.prefix else ''}, "
        f"control={info.control_type}, read as {_short_config(info.config) if info.config else info.config_error}"
        "\n  Fix: load with the preset/config the checkpoint was saved with"
    )
    return msg + (" (or strict=False to skip unexpected/missing tensors)." if wrong == [] else ".")


def _where(info: CheckpointInfo, name: str) -> str:
    """``name in <shard file>`` (plus the name as stored when the file uses other names)."""
    entry = info.tensors[name]
    stored = f" as {entry.name_in_file!r}" if entry.name_in_file != name else ""
    return f"{name} in {entry.file.name}{stored}"


def _short_config(c: WanDiTConfig) -> str:
    return (
        f"dim={c.dim}, ffn_dim={c.ffn_dim}, num_layers={c.num_layers}, in_dim={c.in_dim}, "
        f"text_dim={c.text_dim}, control={c.control_type}"
    )


def _check_against(model: torch.nn.Module, info: CheckpointInfo, strict: bool, expected: str):
    targets = model.state_dict(keep_vars=True)
    missing = sorted(set(targets) - set(info.tensors), key=_natural)
    unexpected = sorted(set(info.tensors) - set(targets), key=_natural)
    wrong = [
        f"{k}: checkpoint {list(info.tensors[k].shape)} in {info.tensors[k].file.name} "
        f"vs model {list(targets[k].shape)}"
        for k in sorted(set(targets) & set(info.tensors), key=_natural)
        if tuple(targets[k].shape) != info.tensors[k].shape
    ]
    if wrong or (strict and (missing or unexpected)):
        raise CheckpointMismatchError(_mismatch_message(info, expected, missing, unexpected, wrong))
    bad_dtype = [f"{k} ({e.dtype})" for k, e in info.tensors.items() if k in targets and not _is_float(e.dtype)]
    if bad_dtype:
        raise CheckpointMismatchError(
            f"checkpoint {info.files.path}: {len(bad_dtype)} tensors are not floating point: {bad_dtype[:_SHOW]}"
        )
    return targets, missing, unexpected


def _is_float(code: str) -> bool:
    dt = _SAFETENSORS_DTYPES.get(code)
    return dt is not None and dt.is_floating_point


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _advise_willneed(path: Path) -> None:
    """Ask the kernel to start reading the whole shard now, so disk reads overlap the copies."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    except OSError:
        pass


def _read_error(path: Path, loaded: int, total: int, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: reading failed after {loaded} of {total} tensors ({exc}). The file changed since its header was "
        "checked, or is corrupt: download it again. The model is partially loaded: discard it."
    )


def check_integrity(files: CheckpointFiles, integrity: str = "auto") -> str:
    """Hash the checkpoint's files against its ``SHA256SUMS`` when it has one (``"auto"``, ``"sha256"``); returns
    the check left for the load: ``"sha256"`` (done here), ``"finite"`` or ``"none"``.

    Raises :class:`CheckpointError` naming the file whose bytes differ from their digest (or, for ``"sha256"``,
    when no digest is recorded)."""
    if integrity not in INTEGRITY_MODES:
        raise ValueError(f"integrity must be one of {INTEGRITY_MODES}, got {integrity!r}")
    if integrity in ("finite", "none"):
        return integrity
    folder = files.files[0].parent
    try:
        sums = read_sha256sums(folder)
    except IntegrityError as exc:
        raise CheckpointError(str(exc)) from None
    listed = {f.name for f in files.files} | ({files.index.name} if files.index is not None else set())
    if sums is None or not listed <= set(sums):
        if integrity == "sha256":
            absent = sorted(listed - set(sums or {}))
            raise CheckpointError(
                f"{folder}: integrity='sha256' but {SHA256SUMS} records no digest for {absent[:_SHOW]} (official "
                "releases record none: use integrity='finite' for them)"
            )
        return "finite"
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {folder / SHA256SUMS} but missing. Restore or download it.")
        try:
            check_sha256(path, digest, "checkpoint file")
        except IntegrityError as exc:
            raise CheckpointError(str(exc)) from None
    return "sha256"


def _check_finite(path: Path, names: list[str], sums: list[torch.Tensor], targets: dict, loaded: int, total: int):
    """One host sync per shard. A tensor is finite iff its sum is, barring an overflow of the sum itself, so a
    non-finite sum is confirmed element-wise (``isfinite().all()``, ~50x slower, only then) before the error names
    the first bad tensor."""
    if not sums:
        return
    ok = torch.isfinite(torch.stack([s.float() for s in sums])).cpu()
    if bool(ok.all()):
        return
    bad = [n for n, good in zip(names, ok.tolist()) if not good and not bool(torch.isfinite(targets[n]).all())]
    if not bad:
        return  # huge but finite values whose sum overflowed
    raise CheckpointError(
        f"{path}: tensor {bad[0]!r}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''} holds NaN or inf "
        f"(after {loaded} of {total} tensors). The file's data is corrupt: download it again. The model is "
        "partially loaded: discard it."
    )


@torch.no_grad()
def load_weights_(
    model: torch.nn.Module,
    source: str | Path | CheckpointInfo,
    *,
    strict: bool = True,
    expected: str | None = None,
    device: torch.device | str | None = None,
    integrity: str = "auto",
) -> LoadReport:
    """Copy a checkpoint into ``model`` in place, shard by shard, converting to the model's dtype on the way.

    Args:
        model: a :class:`WanDiT` (or any module with official-named parameters), possibly on ``meta``: it is then
            materialised on ``device`` (default CPU) with ``to_empty`` before anything is read.
        source: a file, folder or index json (see :func:`find_weights`), or an already inspected checkpoint.
        strict: missing or unexpected tensors are errors. With ``strict=False`` they are reported in the returned
            :class:`LoadReport` (and logged); parameters the checkpoint lacks keep their values (freshly
            initialised ones for a model that was on ``meta``). Wrong shapes are always errors.
        expected: what the model is, for error messages (e.g. ``"preset 'lingbot-world-base-cam', expert 'high'"``).
        integrity: ``"auto"`` (default: SHA-256 of every file when the checkpoint has a ``SHA256SUMS``, else every
            tensor checked finite), ``"sha256"``, ``"finite"`` or ``"none"`` (see the module docstring).
    Raises:
        CheckpointError: unreadable, missing or corrupt files (a digest mismatch: nothing has been copied yet; a
            non-finite tensor: found while copying, the model is partially loaded).
        CheckpointMismatchError: names / shapes / dtypes do not fit (nothing has been copied yet).
    """
    t0 = time.perf_counter()
    info = source if isinstance(source, CheckpointInfo) else inspect_checkpoint(source)
    if expected is None:
        expected = f"the model ({_short_config(model.cfg)})" if isinstance(model, WanDiT) else "the model"
    targets, missing, unexpected = _check_against(model, info, strict, expected)
    integrity = check_integrity(info.files, integrity)  # "sha256" is done by now; "finite" runs while copying

    if any(t.is_meta for t in targets.values()):
        model.to_empty(device=device or "cpu")
        targets = model.state_dict(keep_vars=True)
        if missing and isinstance(model, WanDiT):
            init_weights_(model)

    by_file: dict[Path, list[tuple[str, TensorEntry]]] = {}
    for name, entry in info.tensors.items():
        if name in targets:
            by_file.setdefault(entry.file, []).append((name, entry))
    loaded, nbytes = 0, 0
    for path in info.files.files:
        entries = by_file.get(path, [])
        if not entries:
            continue
        _advise_willneed(path)
        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
        except Exception as exc:
            raise _read_error(path, loaded, len(targets), exc) from exc
        names, sums = [], []
        with handle as f:
            for name, entry in entries:
                try:  # memory-mapped: the pages are read from disk as they are copied below
                    src = f.get_tensor(entry.name_in_file)
                except Exception as exc:
                    raise _read_error(path, loaded, len(targets), exc) from exc
                dst = targets[name]
                # Move first (fp32, one tensor at a time) so a GPU target converts on the GPU.
                dst.copy_(src if src.device == dst.device else src.to(dst.device))
                if integrity == "finite":  # on the target: also catches values that overflow its dtype
                    names.append(name)
                    sums.append(dst.sum())  # no temporary; as fast as reading the tensor once
                nbytes += src.numel() * src.element_size()
                loaded += 1
                del src
        _check_finite(path, names, sums, targets, loaded, len(targets))
    if torch.cuda.is_available() and any(t.is_cuda for t in targets.values()):
        torch.cuda.synchronize()
    report = LoadReport(
        info.files.path,
        info.files.files,
        info.naming,
        info.control_type,
        loaded,
        nbytes,
        time.perf_counter() - t0,
        missing,
        unexpected,
        integrity,
    )
    if missing or unexpected:
        logger.warning(
            "non-strict load of %s: %d missing tensors kept their values, %d unexpected tensors skipped",
            info.files.path,
            len(missing),
            len(unexpected),
        )
    logger.info("loaded %d tensors (%.2f GB) from %s in %.1f s", loaded, nbytes / 1e9, info.files.path, report.seconds)
    return report


def _check_control(info: CheckpointInfo, config: WanDiTConfig, expected: str, preset: Preset | None) -> None:
    if info.control_dim == config.control_dim:
        return
    found = info.control_type or "none (no patch_embedding_wancamctrl)"
    shape = info.tensors.get("patch_embedding_wancamctrl.weight")
    detail = f" (patch_embedding_wancamctrl in-features {shape.shape[1]})" if shape else ""
    hint = ""
    if preset is not None:
        # Suggest the presets of the same shape and structure whose control type is the checkpoint's.
        want = dataclasses.replace(config, control_dim=info.control_dim)
        alts = [n for n in list_presets() if get_preset(n).config == want and get_preset(n).is_pair == preset.is_pair]
        hint = f" Use preset {' or '.join(repr(a) for a in alts)}." if alts else ""
    raise CheckpointMismatchError(
        f"checkpoint {info.files.path} has control type {found}{detail}, but {expected} expects "
        f"{config.control_type or 'no control layers'}.{hint}"
    )


def load_dit(
    path: str | Path,
    config: WanDiTConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    strict: bool = True,
    expected: str | None = None,
    preset: Preset | None = None,
    integrity: str = "auto",
) -> WanDiT:
    """One DiT from a file or expert folder, in ``dtype`` on ``device``.

    ``config`` defaults to the shape read from the checkpoint (tensor shapes + ``config.json``); when given, the
    checkpoint's control type (read from its tensors) must match it. ``integrity``: see :func:`load_weights_`."""
    info = inspect_checkpoint(path)
    cfg = config or info.config
    if cfg is None:
        raise CheckpointError(f"{info.config_error}. Pass the config (or a preset) the checkpoint was saved with.")
    expected = expected or (f"config {_short_config(cfg)}" if config else f"the shape read from {info.files.path}")
    _check_control(info, cfg, expected, preset)
    model = build_dit(cfg, "meta", dtype)
    load_weights_(model, info, strict=strict, expected=expected, device=device, integrity=integrity)
    return model.eval()


def _expert_dir(root: Path, subfolder: str) -> Path:
    return root / subfolder if subfolder else root


def match_preset(info: CheckpointInfo, pair: bool) -> Preset | None:
    """The registered preset whose expert config equals the checkpoint's shape (and structure), if exactly one."""
    hits = [
        get_preset(n)
        for n in list_presets()
        if info.config is not None and get_preset(n).is_pair == pair and get_preset(n).config == info.config
    ]
    return hits[0] if len(hits) == 1 else None


def load_model(
    path: str | Path,
    preset: str | Preset | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
    integrity: str = "auto",
) -> WanDiT | ExpertPair:
    """Load a released model as downloaded: a release root, an expert folder, or a single file.

    Args:
        path: a release root (``high_noise_model/`` + ``low_noise_model/``, or ``lingbot_world_fast/``), an expert
            folder, an index json or a ``.safetensors`` file.
        preset: the expected model (name or :class:`Preset`). Without it the shape is read from the tensors, and a
            pair's expert switch comes from the one registered pair preset of that shape.
        device: where the weights go (materialised there directly; the host keeps at most one shard).
        dtype: parameter dtype (default: the preset's, else bf16).
        strict, integrity: see :func:`load_weights_` (official releases record no digests: with ``"auto"`` every
            tensor is checked finite as it loads).
    Returns:
        a :class:`WanDiT`, or an :class:`ExpertPair` for two-expert models.
    """
    root = Path(path)
    p = get_preset(preset) if preset is not None else None
    dtype = dtype or (p.dtype if p else torch.bfloat16)

    if p is not None:
        if p.is_pair:
            experts = {}
            for e in p.experts:
                folder = _expert_dir(root, e.subfolder)
                if not folder.exists():
                    raise CheckpointError(
                        f"{root}: no {e.subfolder}/ folder; preset {p.name!r} expects the expert folders "
                        f"{[x.subfolder for x in p.experts]}"
                    )
                experts[e.name] = load_dit(
                    folder,
                    e.config,
                    device=device,
                    dtype=dtype,
                    strict=strict,
                    expected=f"preset {p.name!r}, expert {e.name!r}",
                    preset=p,
                    integrity=integrity,
                )
            return ExpertPair(experts["high"], experts["low"], p.sampling.boundary_t).eval()
        e = p.experts[0]
        folder = _expert_dir(root, e.subfolder)
        folder = folder if folder.exists() and root.is_dir() else root  # also accept the expert folder itself
        return load_dit(
            folder,
            e.config,
            device=device,
            dtype=dtype,
            strict=strict,
            expected=f"preset {p.name!r}",
            preset=p,
            integrity=integrity,
        )

    if root.is_dir() and (root / "high_noise_model").is_dir() and (root / "low_noise_model").is_dir():
        info = inspect_checkpoint(root / "high_noise_model")
        match = match_preset(info, pair=True)
        if match is None:
            raise CheckpointError(
                f"{root}: an expert pair of shape "
                f"{_short_config(info.config) if info.config else '(unreadable)'} that no registered pair preset has; "
                "pass preset=... (it gives the expert switch timestep)"
            )
        logger.info("%s: read as preset %r from its tensors", root, match.name)
        return load_model(root, match, device=device, dtype=dtype, strict=strict, integrity=integrity)
    if root.is_dir() and (root / "lingbot_world_fast").is_dir():
        root = root / "lingbot_world_fast"
    return load_dit(root, device=device, dtype=dtype, strict=strict, integrity=integrity)
