"""An adversarial term for the decoder trainers: a PatchGAN discriminator on frames and its losses.

Pixel losses (L1, MSE, SSIM) are minimised by the average of the plausible frames, which is a blur: the decoders
smooth Doom's textures away. Image and video VAEs (taming-transformers' VQGAN, Stable Diffusion's and Wan's VAEs)
add a patch discriminator that scores local texture, real frames against decoded ones, and a generator term that
pushes the decoder towards frames it scores as real. This module holds those pieces; the trainers
(``distillation.train_light_decoder``, ``distillation.train_vae``) only call :class:`Adversary`:

- :class:`PatchDiscriminator`: frames ``[N, 3, H, W]`` in [-1, 1] -> a map of logits ``[N, 1, H/2^L, W/2^L]``,
  one per overlapping patch (L strided 4x4 convolutions with GroupNorm and LeakyReLU, then two 3x3 ones; at
  ``layers=3`` a logit sees a 54-pixel window). Video clips are scored frame by frame (:func:`video_frames`).
- hinge (default) and non-saturating discriminator / generator losses (:data:`LOSSES`).
- :func:`adaptive_weight`: taming-transformers' balance, the ratio of the reconstruction loss's and the generator
  loss's gradient norms at the decoder's last layer, so the adversarial gradient starts at the reconstruction's
  scale whatever the loss scales are.
- :class:`Adversary`: discriminator + its fused AdamW (betas 0.5, 0.9, as in taming), the ramp from its start
  (the discriminator's rate and the generator term's weight rise linearly over ``warmup`` steps, so the
  discriminator learns before its gradients reach the decoder in full), the generator term and the
  discriminator's update. Its parts (:data:`PARTS`: ``disc``, ``disc_optimizer`` and ``adversary``, the step it
  was added at) go into the trainer's checkpoint.

The term starts at the later of ``start`` and the step the discriminator was added to the run at: 0 for a new
run, the checkpoint's step for a run trained without the term and resumed with it, the export's step for the VAE
trainer's ``--init-from``. Either way a new discriminator warms up before it weighs in fully.

The discriminator is initialised from its own seed under a forked RNG: building it draws nothing from the
trainer's random streams, so a run with the term on is the run without it up to ``start``. With the term off the
trainers never import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation.training.budget import TimeBudget, learning_rate
from distillation.training.optim import clipped_step, fused_adamw

DISC_SEED = 0x5EED_D15C  # added to the trainer's seed: the discriminator's init has a stream of its own
PARTS = ("disc", "disc_optimizer", "adversary")  # the names of its state in a trainer's checkpoint


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


class PatchDiscriminator(nn.Module):
    """PatchGAN on frames (pix2pix / taming's ``NLayerDiscriminator``, GroupNorm instead of BatchNorm so a
    frame's score does not depend on the rest of the batch, and 3x3 convs at the end so frames as small as
    ``2^layers`` pixels still give a logit): ``[N, 3, H, W]`` in [-1, 1] -> logits ``[N, 1, H/2^L, W/2^L]``."""

    def __init__(self, width: int = 64, layers: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ValueError(f"discriminator width and layers must be >= 1, got {width} and {layers}")
        mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers):
            nxt = width * min(2**i, 8)
            mods += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=False), nn.GroupNorm(_groups(nxt), nxt), nn.LeakyReLU(0.2)]
            ch = nxt
        nxt = width * min(2**layers, 8)
        mods += [nn.Conv2d(ch, nxt, 3, 1, 1, bias=False), nn.GroupNorm(_groups(nxt), nxt), nn.LeakyReLU(0.2)]
        mods.append(nn.Conv2d(nxt, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)
        self.layers = layers

    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != self.net[0].in_channels:
            raise ValueError(f"expected frames [N, {self.net[0].in_channels}, H, W], got {tuple(frames.shape)}")
        if min(frames.shape[-2:]) < 2**self.layers:
            raise ValueError(f"frames {tuple(frames.shape[-2:])} are smaller than 2^{self.layers} pixels")
        return self.net(frames)


def video_frames(video: Tensor) -> Tensor:
    """Clips ``[B, 3, F, H, W]`` -> frames ``[B * F, 3, H, W]`` (frames pass through unchanged)."""
    if video.ndim == 4:
        return video
    b, c, f, h, w = video.shape
    return video.transpose(1, 2).reshape(b * f, c, h, w)


# ------------------------------------------------------------------------------------------------ losses


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator hinge loss (taming's, halved): 0 once real logits are >= 1 and fake ones <= -1."""
    return 0.5 * (F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean())


def hinge_g_loss(fake: Tensor) -> Tensor:
    """Generator loss of the hinge GAN: minus the mean logit on the decoded frames."""
    return -fake.float().mean()


def nonsaturating_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss of the non-saturating GAN (logistic, halved): softplus(-real) + softplus(fake)."""
    return 0.5 * (F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean())


def nonsaturating_g_loss(fake: Tensor) -> Tensor:
    """Generator loss of the non-saturating GAN: softplus(-fake), i.e. -log sigmoid(fake)."""
    return F.softplus(-fake.float()).mean()


LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "nonsaturating": (nonsaturating_d_loss, nonsaturating_g_loss),
}


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """taming-transformers' ``calculate_adaptive_weight``: ``|d rec / d W| / (|d g / d W| + 1e-4)`` at the decoder's
    last layer weight ``W``, clamped to [0, ``max_weight``] and detached (a device tensor: nothing waits for it).
    Both graphs are kept for the backward pass that follows."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


# ---------------------------------------------------------------------------------------------- adversary


@dataclass
class AdversarialConfig:
    weight: float = 0.1  # weight of the generator's adversarial term (times the adaptive weight when adaptive)
    start: int = 0  # step at which the discriminator starts learning and the term starts (or when it is added)
    warmup: int = 200  # steps from ``start`` over which the discriminator's rate and the term's weight rise
    disc_lr: float = 1e-4  # peak AdamW learning rate of the discriminator
    loss: str = "hinge"  # "hinge" or "nonsaturating"
    adaptive: bool = True  # scale the term by the gradient-norm ratio at the decoder's last layer
    width: int = 64  # the discriminator's first width (doubling per layer, at most 8x)
    layers: int = 3  # strided layers of the discriminator (its logits are 2^layers times smaller than the frames)
    grad_clip: float = 0.0  # the discriminator's gradient norm clip (0: none; non-finite updates are always skipped)
    seed: int = 0  # the trainer's seed (the discriminator's init draws from seed + DISC_SEED, apart)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"adversarial loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.weight <= 0:
            raise ValueError(f"an adversarial weight must be > 0 to build the term (got {self.weight}); 0 means off")
        if self.start < 0 or self.warmup < 0 or self.disc_lr <= 0:
            raise ValueError(
                f"adversarial start / warmup must be >= 0 and disc_lr > 0, got {self.start}, {self.warmup}, "
                f"{self.disc_lr}"
            )


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class Adversary:
    """The discriminator, its optimizer and the two halves of a GAN step for a decoder trainer.

    Call :meth:`begin` with the run's step once the checkpoint is restored (it records where a new discriminator
    was added). Per training step ``step`` (counted before the update, as the trainers' learning rates are), when
    :meth:`active`: :meth:`schedule` sets the discriminator's rate, :meth:`generator_loss` gives the term to add to
    the decoder's loss before its backward pass, and :meth:`discriminator_step` updates the discriminator on the
    real frames against the (detached) decoded ones. The returned terms are detached device tensors, read only
    when logging: ``adv_loss`` (the generator's loss), ``adv_weight`` (its effective weight: ramp x weight x
    adaptive), ``disc_loss``, ``logits_real`` / ``logits_fake`` (mean discriminator logits), ``disc_grad_norm``.
    """

    def __init__(self, cfg: AdversarialConfig, device: torch.device | str) -> None:
        self.cfg, self.device = cfg, torch.device(device)
        self.d_loss_fn, self.g_loss_fn = LOSSES[cfg.loss]
        with torch.random.fork_rng(devices=[]):  # the trainer's CPU stream is left as it was
            torch.manual_seed(cfg.seed + DISC_SEED)
            disc = PatchDiscriminator(cfg.width, cfg.layers)
        self.disc = disc.to(self.device).train()
        self.optimizer = fused_adamw(self.disc.parameters(), cfg.disc_lr, betas=(0.5, 0.9))
        self.lr = 0.0
        self.added_at, self._restored = 0, False

    def parts(self) -> dict[str, object]:
        """What goes into the trainer's checkpoint (names: :data:`PARTS`)."""
        return {"disc": self.disc, "disc_optimizer": self.optimizer, "adversary": self}

    def state_dict(self) -> dict[str, int]:
        return {"added_at": self.added_at}

    def load_state_dict(self, state: dict) -> None:
        self.added_at, self._restored = int(state["added_at"]), True

    def begin(self, step: int) -> None:
        """After the checkpoint's restore: a discriminator that was not in it is added to the run at ``step``."""
        if not self._restored:
            self.added_at = step

    @property
    def start(self) -> int:
        """The first step of the term: ``cfg.start`` or, if later, the step the discriminator was added at."""
        return max(self.cfg.start, self.added_at)

    def active(self, step: int) -> bool:
        return step >= self.start

    def ramp(self, step: int) -> float:
        """0 before :attr:`start`, then a linear rise to 1 over ``warmup`` steps (the trainers' warm-up formula)."""
        if not self.active(step):
            return 0.0
        return min(1.0, (step + 1 - self.start) / max(self.cfg.warmup, 1))

    def schedule(self, step: int, budget: TimeBudget, cooldown: float) -> float:
        """Set (and return) the discriminator's rate for ``step``: warm-up from :attr:`start`, the trainer's
        cool-down."""
        self.lr = 0.0
        if self.active(step):
            self.lr = learning_rate(
                self.cfg.disc_lr, step, warmup=self.cfg.warmup, budget=budget, cooldown=cooldown, start=self.start
            )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        return self.lr

    def generator_loss(
        self, fake: Tensor, rec_loss: Tensor, last_layer: Tensor | None, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted adversarial term for decoded frames ``fake`` (``[B, 3, F, H, W]`` or ``[N, 3, H, W]``, with
        their graph) and the detached terms. ``last_layer`` (the decoder's output weight) is needed when adaptive.
        The discriminator's weights get no gradient from it."""
        self.disc.requires_grad_(False)
        with _autocast(self.device):
            logits = self.disc(video_frames(fake))
        g_loss = self.g_loss_fn(logits)
        weight = torch.full((), self.cfg.weight * self.ramp(step), device=g_loss.device)
        if self.cfg.adaptive:
            if last_layer is None:
                raise ValueError("the adaptive adversarial weight needs the decoder's last layer weight")
            weight = weight * adaptive_weight(rec_loss, g_loss, last_layer)
        return weight * g_loss, {"adv_loss": g_loss.detach(), "adv_weight": weight.detach()}

    def discriminator_step(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """One update of the discriminator: real frames against decoded ones (detached here); returns its terms."""
        self.disc.requires_grad_(True)
        frames = torch.cat([video_frames(real.detach()), video_frames(fake.detach()).to(real.dtype)])
        with _autocast(self.device):
            logits = self.disc(frames)
        real_logits, fake_logits = logits.float().chunk(2)
        d_loss = self.d_loss_fn(real_logits, fake_logits)
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        gnorm = clipped_step(self.optimizer, clip)
        return {
            "disc_loss": d_loss.detach(),
            "logits_real": real_logits.detach().mean(),
            "logits_fake": fake_logits.detach().mean(),
            "disc_grad_norm": gnorm.detach(),
        }


def build_adversary(cfg, device: torch.device | str) -> Adversary:
    """The :class:`Adversary` of a trainer config with the shared fields ``adv_weight``, ``adv_start``,
    ``adv_warmup``, ``disc_lr``, ``adv_loss``, ``adv_adaptive``, ``disc_width``, ``disc_layers`` and ``seed``."""
    return Adversary(
        AdversarialConfig(
            weight=cfg.adv_weight,
            start=cfg.adv_start,
            warmup=cfg.adv_warmup,
            disc_lr=cfg.disc_lr,
            loss=cfg.adv_loss,
            adaptive=cfg.adv_adaptive,
            width=cfg.disc_width,
            layers=cfg.disc_layers,
            seed=cfg.seed,
        ),
        device,
    )
