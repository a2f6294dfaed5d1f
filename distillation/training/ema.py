"""Exponential moving average of weights, the usual generator trick (and DMD's, from step 200)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * weights`` after every update, with ``d = min(decay, (1 + n) / (10 + n))`` for
    the n-th update since ``start_step`` (a plain copy before it).

    The warm-up matters for short runs: with a fixed 0.999 the average still weighs the first thousand
    (untrained) updates heavily, which cost a measured 3.9 dB of VAE PSNR after 1,300 steps."""

    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0) -> None:
        self.decay, self.start_step = decay, start_step
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        n = step - self.start_step
        decay = min(self.decay, (1 + n) / (10 + n)) if n >= 0 else 0.0
        # One fused call for all tensors: a lerp_ per parameter was ~300 kernel launches per step.
        mine = list(self.model.parameters())
        theirs = [p.detach().to(e.dtype) for e, p in zip(mine, model.parameters())]
        torch._foreach_lerp_(mine, theirs, 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
