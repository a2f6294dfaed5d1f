"""The losses of distillation, as plain functions of tensors and denoisers (so the tests can hand them oracles).

Flow matching: ``x_sigma = (1 - sigma) x0 + sigma * noise``, the models predict ``v = noise - x0``, so a
denoiser's clean estimate is ``x0_hat = x_sigma - sigma * v``.

**Distribution matching** (DMD, Yin et al. 2024; DMD2; Self-Forcing): the student's samples ``x0`` are noised
to a random ``sigma``; the *real* score (the frozen teacher, with classifier-free guidance) and the *fake* score
(the critic, which tracks the student's own distribution) each denoise them. The KL gradient w.r.t. ``x0`` is
proportional to ``x0_fake - x0_real``; it is normalised per sample by ``mean |x0 - x0_real|`` (DMD's weighting)
and applied through the regression ``0.5 * ||x0 - sg(x0 - grad)||^2``, whose gradient is ``grad`` itself. When the
critic equals the teacher the gradient is zero; when the student's samples sit elsewhere than the teacher's, it
points from them towards the teacher's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from world_model.sampling import NUM_TRAIN_TIMESTEPS, shift_sigma

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_sigma [B, ...], sigma [B]) -> x0 estimate


def _b(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return s.view(-1, *[1] * (like.ndim - 1))


def draw_sigma(batch: int, lo: float, hi: float, shift: float, device, generator: torch.Generator) -> torch.Tensor:
    """``sigma`` ``[B]``: uniform in ``[lo, hi]``, then shifted like the teacher's training noise levels."""
    u = lo + (hi - lo) * torch.rand(batch, device=device, generator=generator)
    return shift_sigma(u, shift)


def velocity_denoiser(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Denoiser:
    """A denoiser from a velocity function ``v(x, t)`` (``t = 1000 sigma``)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x.float() - _b(sigma, x) * velocity(x, sigma * NUM_TRAIN_TIMESTEPS).float()

    return denoise


def dmd_loss(
    x0: torch.Tensor,
    real: Denoiser,
    fake: Denoiser,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's DMD loss of samples ``x0`` ``[B, C, F, H, W]`` (with gradients).

    ``sigma`` ``[B]`` and ``noise`` (like ``x0``) noise them; ``frame_mask`` ``[F]`` bool picks the frames that
    train (e.g. not the conditioning frame 0). Returns ``(loss, stats)``; ``stats["grad_norm"]`` is the norm of
    the normalised DMD gradient (0 when real == fake)."""
    with torch.no_grad():
        xt = (1 - _b(sigma, x0)) * x0.detach().float() + _b(sigma, x0) * noise.float()
        x_real = real(xt, sigma).float()
        x_fake = fake(xt, sigma).float()
        weight = (x0.detach().float() - x_real).abs().mean(dim=tuple(range(1, x0.ndim)), keepdim=True).clamp_min(1e-4)
        grad = (x_fake - x_real) / weight
        target = x0.detach().float() - grad
    pred = x0.float()
    if frame_mask is not None:
        pred, target, grad = pred[:, :, frame_mask], target[:, :, frame_mask], grad[:, :, frame_mask]
    loss = 0.5 * F.mse_loss(pred, target)
    return loss, {"grad_norm": grad.norm() / grad.numel() ** 0.5, "real_gap": weight.mean()}


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ODE init: the student's ``x0`` estimates against the teacher's final sample (MSE in latent space)."""
    return F.mse_loss(pred.float(), target.float())
