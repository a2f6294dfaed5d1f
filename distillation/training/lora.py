"""LoRA adapters on a frozen base (no peft): small trainable low-rank updates of chosen ``nn.Linear`` layers.

Why: DMD trains a critic (and a student) that start as copies of a large frozen network. With adapters they share
the base's weights instead of copying them (at full size the only way student, critic and teacher fit one GPU),
and what must travel between machines is the adapters alone (the Doom-size critic: 0.8 MB at rank 4, not 23 MB).

A :class:`LoRALinear` computes ``base(x) + (alpha / r) * (x @ A.T) @ B.T`` with the base ``nn.Linear`` kept by
reference and frozen, ``A`` ``[r, in]`` random and ``B`` ``[out, r]`` zero, so a fresh adapter is the base exactly.
The gradient that reaches ``A`` and ``B`` is full fine-tuning's weight gradient ``G = dL/dW`` restricted to the
adapter's subspace: ``dL/dB = s G A^T`` and ``dL/dA = s B^T G`` (``s = alpha / r``).

Files are safe ones only: adapters are written as safetensors (``lora.safetensors``) with a JSON (``lora.json``:
rank, alpha, targets and a fingerprint of the base's weights); adapters trained on another base are refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from world_model.safe_files import check_sha256, read_sha256sums, sha256_file, write_sha256sums

# WanDiT's attention projections (self and cross) and its FFN linears (``ffn.1`` is the GELU): where the weights
# of a block are, and what LoRA usually adapts. The camera layers and embeddings keep their base weights.
DEFAULT_TARGETS: tuple[str, ...] = (
    *(f"{attn}.{p}" for attn in ("self_attn", "cross_attn") for p in "qkvo"),
    "ffn.0",
    "ffn.2",
)
# WanDiT reads these linears' weights directly (``F.linear`` in fp32), so an adapter there would be silently unused.
_READ_BY_WEIGHT = ("time_embedding.", "time_projection.")
ADAPTER_FILE, SPEC_FILE = "lora.safetensors", "lora.json"
FORMAT = "lora-adapters"


class LoRALinear(nn.Module):
    """``y = base(x) + scale * (x @ A.T) @ B.T`` for ``x`` ``[..., in]`` -> ``y`` ``[..., out]``.

    ``base`` is the wrapped ``nn.Linear`` itself (not a copy) with its parameters frozen; ``lora_A`` ``[r, in]``
    (Kaiming-uniform, as ``nn.Linear`` inits its weight) and ``lora_B`` ``[out, r]`` (zeros) are the trained
    parameters, in float32 whatever the base's dtype (they are the master weights; the product runs in the input's
    dtype under autocast)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=dev))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=dev))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    # The DiT casts its input to ``layer.weight.dtype`` before calling a linear (``world_model.dit._lin``).
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta(self) -> torch.Tensor:
        """The weight change ``scale * B @ A`` ``[out, in]``, in float32 at least (what :func:`merge_lora` adds)."""
        dtype = torch.promote_types(self.lora_A.dtype, torch.float32)
        return self.scale * (self.lora_B.to(dtype) @ self.lora_A.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        z = F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B)
        return y + (self.scale * z).to(y.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def _matches(name: str, targets: tuple[str, ...]) -> str | None:
    return next((t for t in targets if name == t or name.endswith("." + t)), None)


def add_lora(
    model: nn.Module, rank: int, alpha: float | None = None, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> list[nn.Parameter]:
    """Wrap, in place, every ``nn.Linear`` of ``model`` whose name ends with one of ``targets`` (``"ffn.0"``
    matches ``blocks.3.ffn.0``) in a :class:`LoRALinear`; the adapter parameters, in module order.

    ``alpha`` None means ``rank`` (scale 1). Raises ``ValueError`` for a target that matches no linear (a typo
    would otherwise train nothing there) and for linears the DiT reads by weight."""
    targets = tuple(targets)
    found: dict[str, list[str]] = {t: [] for t in targets}
    for name, module in list(model.named_modules()):
        t = _matches(name, targets)
        if t is None or not isinstance(module, nn.Linear):
            continue
        if any(name.startswith(p) or f".{p}" in name for p in _READ_BY_WEIGHT):
            raise ValueError(f"cannot adapt {name!r}: the DiT reads its weight directly, an adapter would be unused")
        found[t].append(name)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, LoRALinear(module, rank, alpha))
    missing = [t for t, names in found.items() if not names]
    if missing:
        raise ValueError(f"LoRA targets {missing} match no nn.Linear of the model (targets are name suffixes)")
    return lora_parameters(model)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module path: adapter}`` of ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    out: dict[str, nn.Parameter] = {}
    for name, m in lora_modules(model).items():
        out[f"{name}.lora_A"], out[f"{name}.lora_B"] = m.lora_A, m.lora_B
    return out


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trained parameters of ``model``'s adapters: ``A``, ``B`` per adapter, in module order."""
    return list(_adapter_params(model).values())


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors: ``<module path>.lora_A`` ``[r, in]`` and ``<module path>.lora_B`` ``[out, r]``."""
    return {k: p.detach() for k, p in _adapter_params(model).items()}


def _few(keys: list[str]) -> str:
    return f"{keys[:6]}{' ...' if len(keys) > 6 else ''} ({len(keys)})"


def load_lora_(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy adapter tensors (keys as :func:`lora_state_dict` writes them) into ``model``'s adapters; ``model``.

    Raises ``ValueError`` naming the missing and unexpected keys and the shape mismatches (nothing is copied)."""
    mine = _adapter_params(model)
    problems = []
    if missing := sorted(set(mine) - set(state)):
        problems.append(f"missing {_few(missing)}")
    if unexpected := sorted(set(state) - set(mine)):
        problems.append(f"unexpected {_few(unexpected)}")
    shapes = {k: (tuple(state[k].shape), tuple(p.shape)) for k, p in mine.items() if k in state}
    if shapes := {k: s for k, s in shapes.items() if s[0] != s[1]}:
        problems.append(f"shape mismatches (given, model) {dict(list(shapes.items())[:6])}")
    if problems:
        raise ValueError("the LoRA adapters do not fit the model: " + "; ".join(problems))
    with torch.no_grad():
        for k, p in mine.items():
            p.copy_(state[k])
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace, in place, every adapter of ``model`` by a plain ``nn.Linear`` of weight ``W + scale * B @ A``
    ``[out, in]`` (in the base's dtype; the bias is the base's): ``model`` as an ordinary network (e.g. a
    ``WanDiT`` whose state dict has the official names). Returns ``model``.

    The merged weights are new tensors: a base shared with other modules (see :func:`shared_copy`) is untouched,
    so ``merge_lora(shared_copy(m))`` exports ``m`` merged while ``m`` keeps training."""
    for name, m in lora_modules(model).items():
        base = m.base
        # Built on "meta" (no init, no draw from the global RNG), then given its tensors.
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        with torch.no_grad():
            delta = m.delta()
            weight = (base.weight.to(delta.dtype) + delta).to(base.weight.dtype)
        merged.weight = nn.Parameter(weight, requires_grad=base.weight.requires_grad)
        merged.bias = base.bias
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, merged)
    return model


def shared_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers are ``model``'s own tensors (no weight is
    copied). Wrapping its linears (:func:`add_lora`) or switching its train/eval mode leaves ``model`` as it was;
    writing into its weights in place (``load_state_dict``, an optimizer) would change ``model`` too."""
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


# -- which base: a fingerprint of an export folder's weights ------------------------------------------------------
def base_fingerprint(folder: str | Path, prefix: str = "diffusion_pytorch_model") -> str:
    """SHA-256 of an export folder's ``config.json`` and its weight files' digests (read from ``SHA256SUMS``, which
    the export writes; hashed here only for a file it does not list): the same weights give the same fingerprint
    wherever the folder lies, other weights another one."""
    folder = Path(folder)
    index = folder / f"{prefix}.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else []
    files = files or [f"{prefix}.safetensors"]
    sums = read_sha256sums(folder) or {}
    h = hashlib.sha256((folder / "config.json").read_bytes() if (folder / "config.json").exists() else b"")
    for name in files:
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name} is missing: {folder} is not a complete DiT export")
        h.update(f"{name}:{sums.get(name) or sha256_file(folder / name)}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class LoRASpec:
    """What a set of adapters fits: its rank, alpha, targets and base (the :func:`base_fingerprint` of the weights
    it was trained on; ``base_name`` says where they were read, for messages only)."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    base: str
    base_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "targets": list(self.targets),
            "base": {"sha256": self.base, "name": self.base_name},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoRASpec:
        base = d["base"]
        return cls(int(d["rank"]), float(d["alpha"]), tuple(d["targets"]), base["sha256"], base.get("name", ""))

    def check_fits(self, wanted: LoRASpec, what: str) -> None:
        """Raise ``ValueError`` naming both sides when adapters of this spec (``what``: where they come from)
        cannot be loaded where ``wanted`` ones are expected: another base, rank, alpha or targets."""
        if self.base != wanted.base:
            raise ValueError(
                f"{what} were trained on the base {self.base_name or '?'} (weights {self.base[:16]}...), but this "
                f"run's base is {wanted.base_name or '?'} (weights {wanted.base[:16]}...): adapters only fit the "
                "weights they were trained on. Use that base (--teacher / --init-from), or start the adapters fresh"
            )
        mine = (self.rank, self.alpha, self.targets)
        theirs = (wanted.rank, wanted.alpha, wanted.targets)
        if mine != theirs:
            raise ValueError(
                f"{what} have rank, alpha, targets {mine}; this run wants {theirs}: pass the same LoRA settings"
            )


# -- adapter exports: lora.safetensors + lora.json ----------------------------------------------------------------
def is_lora_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds an adapter export (:func:`save_lora`) rather than full weights."""
    return (Path(folder) / SPEC_FILE).is_file()


def save_lora(model: nn.Module, folder: str | Path, spec: LoRASpec, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s adapters (float32) to ``folder`` as ``lora.safetensors`` + ``lora.json`` (``spec`` and
    ``meta``, e.g. the step) + ``SHA256SUMS``, replacing the folder as a whole (atomically: a kill leaves the old
    folder or the new one)."""
    from safetensors.torch import save_file

    from world_model.checkpoints.saving import _commit

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(model).items()}
        save_file(state, str(tmp / ADAPTER_FILE), metadata={"format": FORMAT})
        info = {"format": FORMAT, **spec.to_json(), **(meta or {})}
        (tmp / SPEC_FILE).write_text(json.dumps(info, indent=1))
        write_sha256sums(tmp, [ADAPTER_FILE, SPEC_FILE])
        _commit(tmp, folder, overwrite=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_lora_spec(folder: str | Path) -> tuple[LoRASpec, dict[str, Any]]:
    """``(spec, the whole lora.json)`` of an adapter export."""
    path = Path(folder) / SPEC_FILE
    info = json.loads(path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path} is not a LoRA adapter spec (format {info.get('format')!r}, expected {FORMAT!r})")
    return LoRASpec.from_json(info), info


def load_lora_export_(model: nn.Module, folder: str | Path, wanted: LoRASpec) -> dict[str, Any]:
    """Load the adapter export in ``folder`` into ``model`` (which has adapters of spec ``wanted``), after
    checking its digest and that it fits ``wanted`` (same base, rank, alpha, targets); its ``lora.json``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    spec, info = read_lora_spec(folder)
    spec.check_fits(wanted, f"the adapters in {folder}")
    sums = read_sha256sums(folder) or {}
    if ADAPTER_FILE in sums:
        check_sha256(folder / ADAPTER_FILE, sums[ADAPTER_FILE], "LoRA adapter file")
    load_lora_(model, load_file(folder / ADAPTER_FILE))
    return info


class LoRAState:
    """A checkpoint part (``state_dict`` / ``load_state_dict``) holding only ``model``'s adapters and their spec,
    so that a resume refuses adapters of another base, rank, alpha or targets (the base's weights are not in the
    checkpoint: the run rebuilds them from its export)."""

    def __init__(self, model: nn.Module, spec: LoRASpec) -> None:
        self.model, self.spec = model, spec

    def state_dict(self) -> dict[str, Any]:
        return {"lora": self.spec.to_json(), "adapters": lora_state_dict(self.model)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "adapters" not in state or "lora" not in state:
            raise ValueError(
                f"it holds full weights ({len(state)} tensors), not LoRA adapters: it was written by a run without "
                "LoRA; resume with the settings it was made with, or use another --out folder"
            )
        LoRASpec.from_json(state["lora"]).check_fits(self.spec, "the checkpoint's adapters")
        load_lora_(self.model, state["adapters"])
