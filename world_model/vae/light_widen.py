"""Widen a trained light decoder without changing what it computes (Net2Net-style, zero fan-out).

A wider student started from scratch spends most of its training relearning what the narrower one knows. Here
every conv of the wider model keeps the old weights on the old channels, and the old outputs read the new
channels through zero weights, so the widened decoder emits the same frames; the new channels start from the
default init and begin to matter once training moves their (zero) outgoing weights.

Channel maps follow ``LightDecoder``'s layout: a MemBlock's first conv reads ``cat[x, x_prev]`` (old channel
``c + j`` sits at ``C + j`` in the wider model) and a time upsample writes ``f`` sub-frames of ``C`` channels
each (old ``g c + k`` sits at ``g C + k``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from .light_decoder import LightDecoder, LightDecoderConfig


def _copy_into(new: nn.Conv2d, old: nn.Conv2d, out_map: Tensor, in_map: Tensor) -> None:
    """new[out_map, in_map] = old; old outputs get zero weights from every input that has no old counterpart."""
    w = new.weight.detach().clone()
    w[out_map] = 0.0
    w[out_map[:, None], in_map[None, :]] = old.weight.detach().to(w.dtype)
    new.weight.data.copy_(w)
    if old.bias is not None:
        new.bias.data[out_map] = old.bias.detach().to(new.bias.dtype)


def _grouped(old: int, new: int, groups: int) -> Tensor:
    """Indices of ``groups`` consecutive groups of ``old`` channels inside groups of ``new`` channels."""
    return torch.cat([torch.arange(old) + g * new for g in range(groups)])


def widths_widen(old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """Whether ``new`` has as many stages as ``old``, each at least as wide: what ``widen_light_decoder`` takes."""
    return len(new) == len(old) and all(n >= o for n, o in zip(new, old, strict=True))


def widen_light_decoder(model: LightDecoder, widths: tuple[int, ...]) -> LightDecoder:
    """A ``LightDecoder`` with ``widths`` (each >= the old one) that decodes exactly as ``model`` does."""
    old_cfg = model.config
    widths = tuple(widths)
    if not widths_widen(old_cfg.widths, widths):
        raise ValueError(f"can only widen {old_cfg.widths} to as many stages, each at least as wide; got {widths}")
    cfg: LightDecoderConfig = replace(old_cfg, widths=widths)
    wide = LightDecoder(cfg).to(model.conv_in.weight.device, model.conv_in.weight.dtype)
    ow, nw = old_cfg.widths, widths
    with torch.no_grad():
        _copy_into(wide.conv_in, model.conv_in, torch.arange(ow[0]), torch.arange(old_cfg.z_dim))
        for i, (old_stage, new_stage) in enumerate(zip(model.stages, wide.stages, strict=True)):
            c, big = torch.arange(ow[i]), torch.arange(ow[i + 1])
            for old_block, new_block in zip(old_stage.blocks, new_stage.blocks, strict=True):
                _copy_into(new_block.conv[0], old_block.conv[0], c, _grouped(ow[i], nw[i], 2))
                _copy_into(new_block.conv[2], old_block.conv[2], c, c)
                _copy_into(new_block.conv[4], old_block.conv[4], c, c)
            f = old_stage.time_up.factor
            _copy_into(new_stage.time_up.conv, old_stage.time_up.conv, _grouped(ow[i], nw[i], f), c)
            _copy_into(new_stage.conv, old_stage.conv, big, c)
        _copy_into(wide.conv_out, model.conv_out, torch.arange(3), torch.arange(ow[-1]))
    return wide
