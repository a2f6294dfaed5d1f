"""The bidirectional Doom teacher as a library: build it, condition a clip, sample it, load and write its export.

The teacher is a :class:`~world_model.dit.WanDiT` (bidirectional attention) with LingBot's act control and a small
text encoder trained with it. Everything that runs a trained teacher lives here and is shared by its trainer
(``distillation.train_teacher``), the evaluation harness and the DMD stages (``distillation.dmd``):

* :func:`image_condition` and :class:`ClipConditioner`: the I2V condition ``y`` and the act control maps;
* :func:`encode_text`, :func:`flow_loss`: the caption features and the flow-matching loss;
* :func:`sample_clip`: UniPC (or another solver) with classifier-free guidance on caption and actions;
* :func:`latent_decoder`: normalised latents -> video through the VAE or a light decoder;
* :func:`export` / :func:`load_export` / :func:`guides_actions` / :func:`trained_on`: the export folder (official
  sharded layout + ``text_encoder.safetensors`` + ``result.json``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from distillation.training.checkpoint import export_step
from distillation.vae_export import read_safetensors_folder, same_latents
from world_model import doom
from world_model.checkpoints.keys import config_from_json
from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
from world_model.config import WanDiTConfig
from world_model.control import ActionControlConfig, act_control_from_actions, default_intrinsics, pixel_rays
from world_model.dit import WanDiT
from world_model.sampling import guided, sample_unipc, shift_sigma, sigma_schedule
from world_model.streaming import MASK_CHANNELS
from world_model.transfer import to_device_async


# -- conditioning of a clip --------------------------------------------------------------------------------------
def image_condition(x0: torch.Tensor, noise_sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``y`` ``[B, 20, T, h, w]``: mask ones on latent frame 0 + that frame's latent (optionally noised), zeros
    for later frames (the convention the streaming generator uses with ``tail_latent=None``)."""
    b, c, t, h, w = x0.shape
    mask = torch.zeros(b, MASK_CHANNELS, t, h, w, device=x0.device, dtype=x0.dtype)
    mask[:, :, 0] = 1
    lat = torch.zeros_like(x0)
    first = x0[:, :, 0]
    if torch.is_tensor(noise_sigma) or noise_sigma > 0:
        s = torch.as_tensor(noise_sigma, device=x0.device, dtype=x0.dtype).reshape(-1, 1, 1, 1)
        first = (1 - s) * first + s * torch.randn_like(first)
    lat[:, :, 0] = first
    return torch.cat([mask, lat], dim=1)


class ClipConditioner:
    """Actions ``[B, n, 6]`` -> act control maps ``[B, 7*64, n + 1, h, w]`` at the model resolution (rays computed
    once; frame 0, the image, gets the identity). ``config`` defaults to the Doom world's action control."""

    def __init__(self, device: torch.device | str, config: ActionControlConfig | None = None) -> None:
        cfg = config or doom.action_config()
        self.cfg = cfg
        self.rays = pixel_rays(
            default_intrinsics(cfg.height, cfg.width, cfg.fov_deg), cfg.height, cfg.width, (cfg.height, cfg.width)
        ).to(device)

    def control(self, actions: torch.Tensor) -> torch.Tensor:
        return act_control_from_actions(actions, self.rays, self.cfg)


# -- model pieces ------------------------------------------------------------------------------------------------
def build_models(
    device: torch.device, dit_config: WanDiTConfig | None = None, text_config: SmallTextEncoderConfig | None = None
) -> tuple[WanDiT, SmallTextEncoder]:
    """A fresh teacher DiT and small text encoder on ``device`` (configs default to the Doom teacher's)."""
    dit = WanDiT(dit_config or doom.dit_config()).to(device)
    text = SmallTextEncoder(text_config or doom.text_encoder_config()).to(device)
    return dit, text


def export_text_config(folder: str | Path) -> SmallTextEncoderConfig:
    """The text encoder config of an export (``text_encoder.json``; exports from before it hold the Doom one)."""
    path = Path(folder) / "text_encoder.json"
    if not path.is_file():
        return doom.text_encoder_config()
    return SmallTextEncoderConfig(**json.loads(path.read_text()))


def export_config(folder: str | Path) -> WanDiTConfig:
    """The DiT config of a teacher (or student) export, read from its ``config.json``: a teacher of another size
    than the Doom default loads through the same code."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a teacher export (see distillation.teacher)")
    return config_from_json(json.loads(path.read_text()))


def load_teacher_export(folder: str | Path, device: torch.device | str = "cpu") -> tuple[WanDiT, SmallTextEncoder, int]:
    """``(dit, text, step)`` of an export folder, built at the size its ``config.json`` records, in eval mode."""
    device = torch.device(device)
    dit, text = build_models(device, export_config(folder), export_text_config(folder))
    step = load_export(folder, dit, text)
    return dit.eval(), text.eval(), step


def encode_text(text: SmallTextEncoder, captions: list[str]) -> torch.Tensor:
    """Captions -> ``[B, max_length, text_dim]``, zero after each caption (differentiable; the encoder trains with
    the DiT). Always the full length, as the DiT pads it anyway: a length that followed the longest caption of the
    batch changed the compiled DiT's input shape, and each new shape recompiled it."""
    feats, _ = text(captions)
    return F.pad(feats, (0, 0, 0, text.max_length - feats.shape[1]))


def flow_loss(
    dit: WanDiT, text: SmallTextEncoder, cond: ClipConditioner, x0, actions, captions, cfg, gen, keep_actions=None
):
    """Flow-matching loss of one batch: ``x0`` ``[B, 16, T, h, w]`` latents, ``actions`` ``[B, T - 1, 6]``,
    captions as given; ``keep_actions`` ``[B]`` bool (None: all kept) zeroes the control of the others, the null
    action of guidance (dropout is the caller's, :func:`draw_dropout`)."""
    b = x0.shape[0]
    dev = x0.device
    sigma = shift_sigma(torch.rand(b, device=dev, generator=gen), cfg.shift)
    noise = torch.randn(x0.shape, device=dev, generator=gen)
    xt = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
    y = image_condition(x0, torch.rand(b, device=dev, generator=gen) * cfg.cond_noise)
    control = cond.control(actions)
    if keep_actions is not None:
        control = control * to_device_async(keep_actions, dev).view(-1, *[1] * (control.ndim - 1))
    v = dit(xt, sigma * 1000, encode_text(text, captions), y, control)
    return F.mse_loss(v.float(), (noise - x0).float())


@torch.no_grad()
def sample_clip(
    dit,
    text,
    cond,
    first_latent_clip,
    actions,
    captions,
    steps: int,
    guidance: float,
    shift: float,
    seed: int = 0,
    guide_actions: bool = False,
    solver: Callable = sample_unipc,
    guidance_interval: tuple[float, float] | None = None,
    sigmas: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher sampling of a whole clip given the real first frame and the actions: latents ``[B, 16, T, h, w]``.

    Guidance contrasts the caption with "" and, with ``guide_actions`` (for a teacher trained with action
    dropout, :func:`guides_actions`), the actions with none: it then strengthens the motion the actions ask for.
    ``solver``: :func:`~world_model.sampling.sample_unipc` or another of that module's samplers;
    ``guidance_interval``: the noise levels ``(lo, hi)`` that are guided (see :func:`~world_model.sampling.guided`);
    ``sigmas``: an explicit list of noise levels from 1 to 0 (then ``steps`` and ``shift`` are not used)."""
    x0_shape = first_latent_clip.shape
    y = image_condition(first_latent_clip)
    control = cond.control(actions)
    ctx_c = dit.prepare_context(encode_text(text, captions))
    ctx_u = dit.prepare_context(encode_text(text, [""] * len(captions)))
    ctrl = dit.prepare_control(control)
    ctrl_u = dit.prepare_control(torch.zeros_like(control)) if guide_actions else ctrl

    def v_cond(x, t):
        return dit(x, t, ctx_c, y, ctrl)

    def v_uncond(x, t):
        return dit(x, t, ctx_u, y, ctrl_u)

    g = torch.Generator(device=first_latent_clip.device).manual_seed(seed)
    noise = torch.randn(x0_shape, generator=g, device=first_latent_clip.device)
    sigmas = sigma_schedule(steps, shift) if sigmas is None else sigmas
    return solver(guided(v_cond, v_uncond, guidance, guidance_interval), noise, sigmas)


def latent_decoder(vae, light_decoder: str | Path = "", device: torch.device | str = "cpu"):
    """Normalised latents ``[B, 16, T, h, w]`` -> video ``[B, 3, 1 + 4(T-1), H, W]``: the light decoder in
    ``light_decoder`` if given, else the VAE's own decoder."""
    if light_decoder:
        from world_model.vae import load_light_decoder

        light = load_light_decoder(light_decoder, device).to(device).eval()
        return light.decode
    return lambda z: vae.decode(z.to(vae.dtype), chunked=False)


def export(dit: WanDiT, text: SmallTextEncoder, out: Path, step: int, metrics: dict) -> None:
    """bf16 teacher in the official sharded layout (shards <= 15 MiB) + text encoder + result.json."""
    from safetensors.torch import save_file

    from world_model.checkpoints.saving import save_checkpoint

    save_checkpoint(dit, out, max_shard_size="15MiB", dtype=torch.bfloat16, overwrite=True)
    save_file(
        {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in text.state_dict().items()},
        out / "text_encoder.safetensors",
    )
    (out / "text_encoder.json").write_text(json.dumps(dataclasses.asdict(text.config), indent=1))
    (out / "result.json").write_text(json.dumps({"step": step, **metrics}, indent=1))


def guides_actions(folder: str | Path) -> bool:
    """Whether the teacher exported in ``folder`` learnt the no-action branch (trained with action dropout):
    only then may guidance contrast its actions with none."""
    result = Path(folder) / "result.json"
    return result.exists() and json.loads(result.read_text()).get("action_dropout", 0) > 0


def trained_on(folder: str | Path, vae_export: str | Path) -> bool:
    """Whether the teacher exported in ``folder`` was trained on ``vae_export``'s latents (its result.json records
    the VAE's :func:`latent_fingerprint`); True when it records none (exports before the record existed)."""
    result = Path(folder) / "result.json"
    return same_latents(json.loads(result.read_text()).get("vae_fingerprint") if result.exists() else None, vae_export)


def load_export_dit(folder: str | Path, dit: WanDiT) -> int:
    """Load the DiT of an export folder (official sharded layout) into ``dit``; the export's step."""
    folder = Path(folder)
    dit.load_state_dict({k: v.float() for k, v in read_safetensors_folder(folder, "diffusion_pytorch_model").items()})
    return export_step(folder)


def load_export(folder: str | Path, dit: WanDiT, text: SmallTextEncoder) -> int:
    """Load a teacher export (DiT + text encoder) into ``dit`` and ``text``; the export's step."""
    from safetensors.torch import load_file

    step = load_export_dit(folder, dit)
    text.load_state_dict({k: v.float() for k, v in load_file(Path(folder) / "text_encoder.safetensors").items()})
    return step
