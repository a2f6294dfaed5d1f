"""Grow a trained :class:`~world_model.dit.WanDiT` deeper without changing what it computes.

A teacher that has stopped improving at its size gets more capacity this way for the price of continued training,
not a fresh start (the GPU time of a session is short). The new blocks are identity maps at first: their three
residual outputs (self-attention ``o``, cross-attention ``o``, the FFN's second linear) and their camera
scale/shift are zero, so each adds nothing to the residual stream; their inputs are initialised as Wan's are, so
gradients reach the zeroed outputs from the first step and the blocks start to contribute as training goes on.
The old blocks keep their order and are spread evenly among the new ones (a block and the one after it in the
old model stay neighbours up to the inserted identities).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from world_model.dit import WanBlock, WanDiT


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
