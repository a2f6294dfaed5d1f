"""Exponential moving average of weights, the usual generator trick (and DMD's, from step 200)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * weights`` after every update, with ``d = min(decay, (1 + n) / (10 + n))`` for
    the n-th update since ``start_step`` (a plain copy before it).

    The warm-up matters for short runs: with a fixed 0.999 the average still weighs the first thousand
    (untrained) updates heavily, which cost a measured 3.9 dB of VAE PSNR after 1,300 steps.

    ``share_frozen``: the average holds ``model``'s frozen parameters (``requires_grad`` off: e.g. the base under
    LoRA adapters) by reference instead of copying them, and averages only the others."""

    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0, share_frozen: bool = False) -> None:
        self.decay, self.start_step = decay, start_step
        memo = {id(p): p for p in model.parameters() if not p.requires_grad} if share_frozen else {}
        self.model = copy.deepcopy(model, memo).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        n = step - self.start_step
        decay = min(self.decay, (1 + n) / (10 + n)) if n >= 0 else 0.0
        # One fused call for all tensors: a lerp_ per parameter was ~300 kernel launches per step.
        pairs = [(e, p) for e, p in zip(self.model.parameters(), model.parameters()) if e is not p]  # not shared
        if pairs:
            torch._foreach_lerp_([e for e, _ in pairs], [p.detach().to(e.dtype) for e, p in pairs], 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
