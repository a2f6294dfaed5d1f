"""Grow a trained :class:`~world_model.dit.WanDiT` deeper or wider without changing what it computes.

A teacher that has stopped improving at its size gets more capacity this way for the price of continued training,
not a fresh start (the GPU time of a session is short).

* :func:`deepen_dit`: the new blocks are identity maps at first: their three residual outputs (self-attention
  ``o``, cross-attention ``o``, the FFN's second linear) and their camera scale/shift are zero, so each adds
  nothing to the residual stream; their inputs are initialised as Wan's are, so gradients reach the zeroed outputs
  from the first step and the blocks start to contribute as training goes on. The old blocks keep their order and
  are spread evenly among the new ones.
* :func:`widen_dit` (Net2WiderNet): width, heads and FFN times an integer ``k``, every hidden vector tiled ``k``
  times (``[x, x, ...]``). A tiled vector has the same mean, variance and RMS, so every norm gives the tiled
  result of the old one; heads keep their width, so the new heads are copies of the old and attend alike; a linear
  that reads a tiled vector has its weights tiled and divided by ``k``, so it sums to the old output. Copies that
  start equal get equal gradients and would stay copies for ever: ``noise`` (relative to each weight's scale) on
  the weights that read the tiled stream breaks the tie, at the price of outputs a little off the old ones.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from world_model.dit import RMSNorm, WanBlock, WanDiT


def identity_block(block: WanBlock) -> WanBlock:
    """In place: zero what ``block`` writes into the residual stream, so that it maps ``x`` to ``x``. Returns it."""
    with torch.no_grad():
        outputs = [block.self_attn.o, block.cross_attn.o, block.ffn[2]]
        if hasattr(block, "cam_scale_layer"):  # (1 + 0) * x + 0: the camera modulation is the identity too
            outputs += [block.cam_scale_layer, block.cam_shift_layer]
        for layer in outputs:
            layer.weight.zero_()
            layer.bias.zero_()
    return block


def old_block_slots(old_layers: int, new_layers: int) -> list[int]:
    """Where the ``old_layers`` trained blocks go among ``new_layers``: evenly spread, first at 0, in order."""
    return [i * new_layers // old_layers for i in range(old_layers)]


def deepen_dit(model: WanDiT, num_layers: int) -> WanDiT:
    """A ``WanDiT`` of ``num_layers`` blocks (>= the model's) whose output equals ``model``'s for every input.

    Everything but the blocks is copied; the old blocks go to :func:`old_block_slots`, fresh identity blocks
    (:func:`identity_block`) fill the rest. The result is on the model's device and in its dtype."""
    old = model.cfg.num_layers
    if num_layers < old:
        raise ValueError(f"can only deepen a DiT of {old} layers to {old} or more, got {num_layers}")
    cfg = dataclasses.replace(model.cfg, num_layers=num_layers)
    deep = WanDiT(cfg).to(model.device, model.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.")}
    deep.load_state_dict(state, strict=False)
    slots = old_block_slots(old, num_layers)
    for i in range(num_layers):
        if i in slots:
            deep.blocks[i] = copy.deepcopy(model.blocks[slots.index(i)])
        else:
            identity_block(deep.blocks[i])
    return deep


# -- wider ------------------------------------------------------------------------------------------------------
# The linears whose input is not the model's hidden width (caption features, sinusoids, camera maps): their
# inputs stay as they are; every other linear reads a tiled vector. Only the head's output is not tiled.
READS_INPUTS = ("text_embedding.0", "time_embedding.0", "patch_embedding_wancamctrl")
CHUNKED_OUTPUTS = {"time_projection.1": 6}  # writes 6 modulation vectors of width d: each is tiled on its own


def _tile(w: torch.Tensor, k: int, groups: int = 1) -> torch.Tensor:
    """Tile dim 0 ``k`` times, within each of ``groups`` equal chunks."""
    return w.unflatten(0, (groups, -1)).repeat(1, k, *[1] * (w.ndim - 1)).flatten(0, 1)


def widen_dit(model: WanDiT, factor: int, noise: float = 0.0, seed: int = 0) -> WanDiT:
    """A ``WanDiT`` ``factor`` times as wide (``dim``, ``num_heads``, ``ffn_dim``; the head width kept) that computes
    what ``model`` does: exactly with ``noise`` 0, nearly with a little (see the module doc). On the model's device,
    in its dtype."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"a DiT can be widened by a whole factor >= 1, got {factor}")
    k, c = int(factor), model.cfg
    wide = WanDiT(dataclasses.replace(c, dim=c.dim * k, num_heads=c.num_heads * k, ffn_dim=c.ffn_dim * k))
    wide = wide.to(model.device, model.dtype)
    gen = torch.Generator().manual_seed(seed)
    old = dict(model.named_modules())
    with torch.no_grad():
        for name, new in wide.named_modules():
            if isinstance(new, nn.Linear):
                w, b = old[name].weight.float(), old[name].bias
                if name != "head.head":
                    groups = CHUNKED_OUTPUTS.get(name, 1)
                    w, b = _tile(w, k, groups), _tile(b, k, groups)
                if name not in READS_INPUTS:
                    w = w.repeat(1, k) / k
                    if noise > 0:
                        w = w + noise * w.std() * torch.randn(w.shape, generator=gen).to(w.device)
                new.weight.copy_(w)
                new.bias.copy_(b)
            elif isinstance(new, nn.Conv3d):  # the patch embedding: its outputs tiled
                new.weight.copy_(_tile(old[name].weight, k))
                new.bias.copy_(_tile(old[name].bias, k))
            elif isinstance(new, nn.LayerNorm | RMSNorm) and new.weight is not None:
                new.weight.copy_(old[name].weight.repeat(k))
                if getattr(new, "bias", None) is not None:
                    new.bias.copy_(old[name].bias.repeat(k))
        for new_blk, old_blk in zip((*wide.blocks, wide.head), (*model.blocks, model.head), strict=True):
            new_blk.modulation.copy_(old_blk.modulation.repeat(1, 1, k))
    return wide
