"""Host -> device copies that do not stall the GPU queue."""

from __future__ import annotations

import torch


def to_device_async(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` (on the host) copied to ``device`` without a synchronisation.

    A copy from ordinary (pageable) host memory waits for every kernel already queued on the GPU, so one such copy
    per training step serialises the host's work with the GPU's (measured: a 142 ms Doom teacher step for 54 ms of
    GPU work). From pinned memory with ``non_blocking`` the copy is queued like a kernel."""
    device = torch.device(device)
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)
