"""Build the DiT (or the expert pair) of a preset, on any device, without allocating on ``meta``.

Modules are always constructed on ``meta`` first and then materialised straight on the target device in the target
dtype, so a full-size expert never exists in fp32 anywhere. After ``to_empty`` the memory is garbage:
:func:`init_weights_` gives every parameter Wan's initial value through ``WanDiT.reset_parameters``, which sets every
parameter (Linears, patch embedding, norms, modulations, the zeroed head and camera scale/shift).
"""

from __future__ import annotations

import torch
from torch import nn

from world_model.checkpoints.presets import Preset, get_preset
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT


class ExpertPair(nn.Module):
    """Wan2.2 / LingBot Base's two experts: ``high`` runs while ``t >= boundary_t``, ``low`` below.

    State-dict names are ``high.<official name>`` and ``low.<official name>``."""

    def __init__(self, high: WanDiT, low: WanDiT, boundary_t: float) -> None:
        super().__init__()
        if high.cfg != low.cfg:
            raise ValueError("the two experts of a pair must have the same config")
        self.high = high
        self.low = low
        self.boundary_t = float(boundary_t)

    @property
    def cfg(self) -> WanDiTConfig:
        return self.high.cfg

    def expert_for(self, t: torch.Tensor | float) -> WanDiT:
        """The expert for timestep(s) ``t`` in [0, 1000] (the max over a batch decides, as in ``switch_experts``)."""
        tmax = float(t.max()) if torch.is_tensor(t) else float(t)
        return self.high if tmax >= self.boundary_t else self.low

    def forward(self, x: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``WanDiT.forward`` of the expert chosen by ``t``; see :meth:`WanDiT.forward` for shapes."""
        return self.expert_for(t)(x, t, *args, **kwargs)


def build_dit(
    config: WanDiTConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    init: bool = True,
) -> WanDiT:
    """One DiT of ``config`` on ``device`` in ``dtype``.

    ``device="meta"`` allocates nothing. Elsewhere the parameters are allocated on ``device`` directly; with
    ``init=False`` they are left uninitialised (for a loader that overwrites all of them)."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    with torch.device("meta"):
        model = WanDiT(config)
    model = model.to(dtype=dtype)
    if torch.device(device).type != "meta":
        model = model.to_empty(device=device)
        if init:
            init_weights_(model)
    return model.eval()


@torch.no_grad()
def init_weights_(model: WanDiT, seed: int | None = None) -> WanDiT:
    """Give every parameter of a materialised model (e.g. after ``to_empty``) Wan's initial value, in place.

    ``WanDiT.reset_parameters`` sets every parameter, exactly as ``WanDiT``'s constructor does; ``seed`` makes the
    random parts (Xavier Linears, embeddings, modulations) reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    model.reset_parameters()
    return model


def build_model(
    preset: str | Preset,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    init: bool = True,
) -> WanDiT | ExpertPair:
    """The model of a preset: a :class:`WanDiT`, or an :class:`ExpertPair` for two-expert presets.

    Args:
        preset: a registered name (``"lingbot-world-base-cam"``, ...) or a :class:`Preset`.
        device: where to allocate; ``"meta"`` allocates nothing (inspect a full-size model on any machine).
        dtype: parameter dtype (default: the preset's, bf16 for the released models).
        init: initialise the weights (False leaves them uninitialised for a loader to overwrite).
    """
    p = get_preset(preset)
    dtype = dtype or p.dtype
    if p.is_pair:
        high = build_dit(p.expert("high").config, device, dtype, init)
        low = build_dit(p.expert("low").config, device, dtype, init)
        return ExpertPair(high, low, p.sampling.boundary_t).eval()
    return build_dit(p.config, device, dtype, init)
