"""Tensor naming of DiT checkpoints: detect it, rename to the official names, and read the model shape from it.

Three namings exist in the wild (docs/official_models.md §4): the official Wan / LingBot one (what
:class:`WanDiT` uses), diffusers' ``WanTransformer3DModel`` one, and either of them under a
``model.diffusion_model.`` prefix (single-file community checkpoints). The control type is read from the
tensors, never from folder names: ``patch_embedding_wancamctrl.weight`` has ``control_dim * 8 * 8 * 4``
in-features (1536 cam, 1792 act).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from world_model.config import CONTROL_CHANNELS, WanDiTConfig

Naming = Literal["official", "diffusers"]
KNOWN_PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# diffusers -> official, as (regex on the diffusers name, replacement). Order matters only in that the patterns are
# anchored and disjoint. The trap: diffusers' ``norm2`` is the affine LayerNorm before cross-attention, which the
# official code calls ``norm3`` (the official ``norm2`` and diffusers' ``norm3`` are non-affine: no tensors).
_DIFFUSERS_TO_OFFICIAL: tuple[tuple[str, str], ...] = (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
    (r"^blocks\.(\d+)\.attn1\.to_([qkv])\.", r"blocks.\1.self_attn.\2."),
    (r"^blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.self_attn.o."),
    (r"^blocks\.(\d+)\.attn1\.norm_([qk])\.", r"blocks.\1.self_attn.norm_\2."),
    (r"^blocks\.(\d+)\.attn2\.to_([qkv])\.", r"blocks.\1.cross_attn.\2."),
    (r"^blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.o."),
    (r"^blocks\.(\d+)\.attn2\.norm_([qk])\.", r"blocks.\1.cross_attn.norm_\2."),
    (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),
    (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
    (r"^blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
)
_D2O = tuple((re.compile(p), r) for p, r in _DIFFUSERS_TO_OFFICIAL)
# Names that only diffusers uses; a checkpoint holding any of them is diffusers-named.
_DIFFUSERS_MARKERS = re.compile(
    r"^(condition_embedder\.|proj_out\.|scale_shift_table$|blocks\.\d+\.(attn[12]\.|ffn\.net\.|scale_shift_table$))"
)
_OFFICIAL_MARKERS = re.compile(
    r"^(time_embedding\.|time_projection\.|text_embedding\.|head\.|blocks\.\d+\.(self_attn|cross_attn|norm3|modulation))"
)


class NamingError(ValueError):
    """The tensor names do not follow one known naming."""


@dataclass(frozen=True)
class NamingInfo:
    """How a checkpoint names its tensors: ``naming`` after stripping ``prefix`` (``""`` if none)."""

    naming: Naming
    prefix: str = ""


def detect_naming(names: Iterable[str]) -> NamingInfo:
    """Detect the prefix and naming of a DiT checkpoint's tensor names.

    Raises :class:`NamingError` when only some names carry a prefix, or official and diffusers names are mixed.
    """
    names = list(names)
    if not names:
        raise NamingError("the checkpoint holds no tensors")
    prefix = ""
    for p in KNOWN_PREFIXES:
        with_p = sum(n.startswith(p) for n in names)
        if with_p == len(names):
            prefix = p
            break
        if with_p:
            raise NamingError(f"{with_p} of {len(names)} tensor names start with {p!r}, the rest do not")
    stripped = [n[len(prefix) :] for n in names]
    diffusers = [n for n in stripped if _DIFFUSERS_MARKERS.match(n)]
    official = [n for n in stripped if _OFFICIAL_MARKERS.match(n)]
    if diffusers and official:
        raise NamingError(
            f"the checkpoint mixes diffusers names ({diffusers[0]!r}, {len(diffusers)} in all) and official names "
            f"({official[0]!r}, {len(official)} in all)"
        )
    return NamingInfo("diffusers" if diffusers else "official", prefix)


def diffusers_to_official(name: str) -> str:
    """One diffusers ``WanTransformer3DModel`` name -> the official name (names it does not know pass through:
    ``patch_embedding.*`` and LingBot's camera layers are named alike in both)."""
    for pattern, repl in _D2O:
        new, n = pattern.subn(repl, name)
        if n:
            return new
    return name


def to_official_names(names: Iterable[str], info: NamingInfo | None = None) -> dict[str, str]:
    """Map every checkpoint name to its official name: ``{official: name_in_file}``.

    Raises :class:`NamingError` if two names collide after renaming.
    """
    names = list(names)
    info = info or detect_naming(names)
    out: dict[str, str] = {}
    for name in names:
        off = name[len(info.prefix) :]
        if info.naming == "diffusers":
            off = diffusers_to_official(off)
        if off in out:
            raise NamingError(f"tensors {out[off]!r} and {name!r} both map to the official name {off!r}")
        out[off] = name
    return out


# -- reading the model shape from tensor shapes --------------------------------------------------------------------
def infer_control_dim(shapes: Mapping[str, Sequence[int]], control_patch: int = 8, patch_tokens: int = 4) -> int | None:
    """Control channels per pixel from ``patch_embedding_wancamctrl.weight`` ``[d, C * patch^2 * tokens]``.

    Returns 6 (cam: 1536 in-features at full size), 7 (act: 1792) or None (no control layers)."""
    shape = shapes.get("patch_embedding_wancamctrl.weight")
    if shape is None:
        return None
    per_channel = control_patch**2 * patch_tokens
    in_features = int(shape[1])
    for c in CONTROL_CHANNELS.values():
        if in_features == c * per_channel:
            return c
    raise NamingError(
        f"patch_embedding_wancamctrl.weight has {in_features} in-features; expected "
        + " or ".join(f"{c * per_channel} ({kind})" for kind, c in CONTROL_CHANNELS.items())
    )


def control_type_of(control_dim: int | None) -> str | None:
    return {v: k for k, v in CONTROL_CHANNELS.items()}.get(control_dim)


def infer_config(shapes: Mapping[str, Sequence[int]], config_json: Mapping[str, Any] | None = None) -> WanDiTConfig:
    """A :class:`WanDiTConfig` from official-named tensor shapes, completed by a ``config.json`` dict.

    Shapes decide every size they determine (width, FFN, layers, in/out/text/freq dims, patch, control type).
    ``config.json`` supplies what shapes cannot (``num_heads``, ``eps``, ``text_len``, ...); without it the head
    count assumes Wan's head_dim of 128. A ``config.json`` that disagrees with the tensors is an error.
    """
    cj = dict(config_json or {})
    try:
        pe = shapes["patch_embedding.weight"]  # [d, in_dim, pt, ph, pw]
        head = shapes["head.head.weight"]  # [out_dim * pt*ph*pw, d]
        ffn = shapes["blocks.0.ffn.0.weight"]  # [f, d]
        text = shapes["text_embedding.0.weight"]  # [d, text_dim]
        time = shapes["time_embedding.0.weight"]  # [d, freq_dim]
    except KeyError as exc:
        raise NamingError(f"cannot read the model shape: the checkpoint has no tensor {exc.args[0]!r}") from None
    layers = {int(m.group(1)) for n in shapes if (m := re.match(r"^blocks\.(\d+)\.", n))}
    patch = tuple(int(s) for s in pe[2:])
    ntok = patch[0] * patch[1] * patch[2]
    dim = int(pe[0])
    from_shapes: dict[str, Any] = {
        "dim": dim,
        "in_dim": int(pe[1]),
        "patch_size": patch,
        "out_dim": int(head[0]) // ntok,
        "ffn_dim": int(ffn[0]),
        "text_dim": int(text[1]),
        "freq_dim": int(time[1]),
        "num_layers": max(layers) + 1 if layers else 0,
    }
    control_patch = int(cj.get("control_patch", 8))
    from_shapes["control_dim"] = infer_control_dim(shapes, control_patch, ntok)
    valid = {f.name for f in fields(WanDiTConfig)} - {"extra"}
    for key, val in from_shapes.items():
        if key in cj and key != "control_dim" and _norm(cj[key]) != _norm(val):
            raise NamingError(f"config.json says {key}={cj[key]!r} but the tensors have {key}={val!r}")
    kwargs = {k: (tuple(v) if k == "patch_size" else v) for k, v in cj.items() if k in valid}
    kwargs.update(from_shapes)
    kwargs.setdefault("num_heads", dim // 128 if dim % 128 == 0 else 1)
    extra = {k: v for k, v in cj.items() if k not in valid}
    return WanDiTConfig(extra=extra, **kwargs)


def _norm(v: Any) -> Any:
    return tuple(v) if isinstance(v, list | tuple) else v


def config_from_json(config_json: Mapping[str, Any], control_dim: int | None = None) -> WanDiTConfig:
    """Every :class:`WanDiTConfig` field present in ``config_json`` (official keys and ours), the rest in ``extra``.

    ``WanDiTConfig.from_official`` keeps only the official keys, so ``text_dim`` / ``control_patch`` written by
    :func:`WanDiTConfig.to_official` would not round-trip through it; this reads them all."""
    valid = {f.name for f in fields(WanDiTConfig)} - {"extra"}
    kwargs = {k: (tuple(v) if k == "patch_size" else v) for k, v in config_json.items() if k in valid}
    kwargs["control_dim"] = control_dim if control_dim is not None else kwargs.get("control_dim")
    extra = {k: v for k, v in config_json.items() if k not in valid}
    return WanDiTConfig(extra=extra, **kwargs)
