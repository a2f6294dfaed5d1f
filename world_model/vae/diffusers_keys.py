"""Rename between the official Wan2.1 VAE keys and diffusers ``AutoencoderKLWan`` keys (docs/official_models.md §10).

Both hold the same tensors with the same shapes; only names differ:

=============================================  ==============================================================
official                                       diffusers
=============================================  ==============================================================
``{encoder,decoder}.conv1``                    ``{encoder,decoder}.conv_in``
``conv1`` / ``conv2``                          ``quant_conv`` / ``post_quant_conv``
``*.middle.0`` / ``.1`` / ``.2``               ``*.mid_block.resnets.0`` / ``attentions.0`` / ``resnets.1``
``*.head.0`` / ``*.head.2``                    ``*.norm_out`` / ``*.conv_out``
``encoder.downsamples.N``                      ``encoder.down_blocks.N``
``decoder.upsamples.(S*i + j)``                ``decoder.up_blocks.i.resnets.j`` (S = num_res_blocks + 2)
``decoder.upsamples.(S*i + S-1)``              ``decoder.up_blocks.i.upsamplers.0``
residual ``residual.0/.2/.3/.6``, ``shortcut``  ``norm1``, ``conv1``, ``norm2``, ``conv2``, ``conv_shortcut``
=============================================  ==============================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from .wan_vae import VAEConfig

_DIFFUSERS_MARKERS = ("conv_in.", "conv_out.", "norm_out.", "mid_block.", "down_blocks.", "up_blocks.", "quant_conv.")
_RES_TO_OFFICIAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                    "conv_shortcut": "shortcut"}  # fmt: skip
_RES_TO_DIFFUSERS = {v: k for k, v in _RES_TO_OFFICIAL.items()}
_MID_TO_OFFICIAL = {"resnets.0": "0", "attentions.0": "1", "resnets.1": "2"}
_MID_TO_DIFFUSERS = {v: k for k, v in _MID_TO_OFFICIAL.items()}


def is_diffusers_naming(keys: object) -> bool:
    """True if any key uses a diffusers-only name (the two schemes share no block names)."""
    return any(any(m in k for m in _DIFFUSERS_MARKERS) for k in keys)  # type: ignore[union-attr]


def _res_inner(inner: str, table: Mapping[str, str]) -> str:
    head, _, rest = inner.partition(".")
    two = ".".join(inner.split(".")[:2])
    if two in table:  # official residual.N.*
        return table[two] + inner[len(two) :]
    if head in table:
        return table[head] + "." + rest
    return inner


def diffusers_key_to_official(key: str, num_res_blocks: int = 2) -> str:
    stage = num_res_blocks + 2
    if key.startswith("quant_conv."):
        return "conv1." + key[len("quant_conv.") :]
    if key.startswith("post_quant_conv."):
        return "conv2." + key[len("post_quant_conv.") :]
    m = re.match(r"^(encoder|decoder)\.(conv_in|norm_out|conv_out)\.(.+)$", key)
    if m:
        new = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}[m.group(2)]
        return f"{m.group(1)}.{new}.{m.group(3)}"
    m = re.match(r"^(encoder|decoder)\.mid_block\.(resnets\.\d+|attentions\.\d+)\.(.+)$", key)
    if m:
        inner = _res_inner(m.group(3), _RES_TO_OFFICIAL) if m.group(2).startswith("resnets") else m.group(3)
        return f"{m.group(1)}.middle.{_MID_TO_OFFICIAL[m.group(2)]}.{inner}"
    m = re.match(r"^encoder\.down_blocks\.(\d+)\.(.+)$", key)
    if m:
        return f"encoder.downsamples.{m.group(1)}.{_res_inner(m.group(2), _RES_TO_OFFICIAL)}"
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key)
    if m:
        idx = stage * int(m.group(1)) + int(m.group(2))
        return f"decoder.upsamples.{idx}.{_res_inner(m.group(3), _RES_TO_OFFICIAL)}"
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)$", key)
    if m:
        return f"decoder.upsamples.{stage * int(m.group(1)) + stage - 1}.{m.group(2)}"
    return key


def official_key_to_diffusers(key: str, num_res_blocks: int = 2) -> str:
    stage = num_res_blocks + 2
    if key.startswith("conv1."):
        return "quant_conv." + key[len("conv1.") :]
    if key.startswith("conv2."):
        return "post_quant_conv." + key[len("conv2.") :]
    m = re.match(r"^(encoder|decoder)\.(conv1|head\.0|head\.2)\.(.+)$", key)
    if m:
        new = {"conv1": "conv_in", "head.0": "norm_out", "head.2": "conv_out"}[m.group(2)]
        return f"{m.group(1)}.{new}.{m.group(3)}"
    m = re.match(r"^(encoder|decoder)\.middle\.(\d)\.(.+)$", key)
    if m:
        block = _MID_TO_DIFFUSERS[m.group(2)]
        inner = _res_inner(m.group(3), _RES_TO_DIFFUSERS) if block.startswith("resnets") else m.group(3)
        return f"{m.group(1)}.mid_block.{block}.{inner}"
    m = re.match(r"^encoder\.downsamples\.(\d+)\.(.+)$", key)
    if m:
        return f"encoder.down_blocks.{m.group(1)}.{_res_inner(m.group(2), _RES_TO_DIFFUSERS)}"
    m = re.match(r"^decoder\.upsamples\.(\d+)\.(.+)$", key)
    if m:
        block, j = divmod(int(m.group(1)), stage)
        if j == stage - 1:
            return f"decoder.up_blocks.{block}.upsamplers.0.{m.group(2)}"
        return f"decoder.up_blocks.{block}.resnets.{j}.{_res_inner(m.group(2), _RES_TO_DIFFUSERS)}"
    return key


def _strip_prefix(state_dict: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """Drop a wrapper prefix shared by every key (``vae.``, ``first_stage_model.``, ``model.``)."""
    for prefix in ("first_stage_model.", "vae.", "model."):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def to_official_names(state_dict: Mapping[str, Tensor], config: VAEConfig) -> dict[str, Tensor]:
    """Official names whatever the input naming (detected); already-official dicts pass through unchanged."""
    sd = _strip_prefix(state_dict)
    if not is_diffusers_naming(sd.keys()):
        return dict(sd)
    return {diffusers_key_to_official(k, config.num_res_blocks): v for k, v in sd.items()}


def to_diffusers_names(state_dict: Mapping[str, Tensor], config: VAEConfig) -> dict[str, Tensor]:
    """Export official names as diffusers ``AutoencoderKLWan`` names."""
    return {official_key_to_diffusers(k, config.num_res_blocks): v for k, v in state_dict.items()}
