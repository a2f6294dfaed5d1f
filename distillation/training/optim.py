"""Optimizer construction and the update step shared by the trainers."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def fused_adamw(params: Iterable[torch.nn.Parameter], lr: float, betas=(0.9, 0.99), weight_decay: float = 0.0):
    """AdamW with the fused kernel (CPU and CUDA): one launch per step, and :func:`clipped_step` relies on it to
    skip a non-finite update on the device."""
    return torch.optim.AdamW(list(params), lr=lr, betas=betas, weight_decay=weight_decay, fused=True)


def clipped_step(opt: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """Clip the gradients of ``opt``'s parameters to ``max_norm`` and step, unless their norm is not finite.

    Returns the norm before clipping (a device tensor). One non-finite gradient made every weight of the teacher
    (and then its EMA) NaN for good on the H100; the fused optimizer skips such an update on the device through
    GradScaler's ``found_inf`` contract, so the host never waits for the GPU to decide."""
    # step() reads "fused" per parameter group, and loading an optimizer state saved without it resets it there.
    if not all(group.get("fused") for group in opt.param_groups):
        raise ValueError(
            "clipped_step needs a fused optimizer (fused_adamw) to skip non-finite updates; a checkpoint.pt saved "
            "by a trainer before that (non-fused AdamW) cannot be resumed: start from its export with --init-from"
        )
    params = [p for group in opt.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # FSDP2 shards: the norm of the whole gradient
    if hasattr(grad_norm, "full_tensor"):  # a DTensor (sharded parameters): a plain tensor for the host to read
        grad_norm = grad_norm.full_tensor()
    opt.found_inf = (~torch.isfinite(grad_norm)).float()
    opt.step()
    opt.found_inf = None
    return grad_norm
