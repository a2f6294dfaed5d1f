"""The project's own small world model of ViZDoom: LingBot-World's classes at a laptop-sized config.

It mirrors the full-size case: a Wan-style causal VAE (reduced width, z = 16, 4x8x8), a light streaming decoder,
a :class:`~world_model.dit.WanDiT` with LingBot's **act** control (7 channels: ray directions of the yaw/pitch
delta + WASD multi-hot), image-to-video conditioning on the first frame (``y`` = 4 mask + 16 latent channels),
and a small trainable text encoder over game-state captions.

Sizing (the README has the measurements): frames are 128x96 (4:3, the smallest allowed), so one latent frame is
16x12 latents = 8x6 = 48 DiT tokens; the DiT is 8 layers of width 256 (11.8M parameters). Shipped in bf16: DiT
23.7 MB + VAE encoder 12.1 MB + light decoder 3.6 MB + text encoder 2.0 MB = 39.5 MiB, under the 40 MiB budget
(``tests/test_world.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
from world_model.config import WanDiTConfig
from world_model.control import ActionControlConfig
from world_model.dit import WanDiT
from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig
from world_model.vae.light_decoder import LightDecoder, LightDecoderConfig
from world_model.vae.wan_vae import VAEConfig, WanVAE
from world_model.world import InteractiveWorld, WorldSpec

HEIGHT, WIDTH = 96, 128
FPS = 35 / 2  # ViZDoom records every 2nd tic of 35 Hz
FRAMES_PER_STEP = 4  # video frames per latent frame = per env step
TURN_DEG_PER_FRAME = 2.0  # lingbot_env.actions.ActionSpec default, the official keyboard turn rate
TEXT_LEN = 128  # byte tokens of a caption (+ EOS)
TEXT_DIM = 256


def dit_config() -> WanDiTConfig:
    return WanDiTConfig(
        dim=256,
        ffn_dim=1024,
        num_heads=4,
        num_layers=8,
        in_dim=36,
        out_dim=16,
        text_dim=TEXT_DIM,
        text_len=TEXT_LEN,
        control_dim=7,
    )


def vae_config(latent_mean: tuple[float, ...] = (), latent_std: tuple[float, ...] = ()) -> VAEConfig:
    return VAEConfig(dim=32, z_dim=16, latent_mean=latent_mean, latent_std=latent_std)


def light_decoder_config() -> LightDecoderConfig:
    return LightDecoderConfig(z_dim=16, widths=(128, 64, 48, 24), blocks_per_stage=2)


def text_encoder_config() -> SmallTextEncoderConfig:
    return SmallTextEncoderConfig(
        out_dim=TEXT_DIM, dim=192, num_layers=2, num_heads=4, ffn_dim=768, max_length=TEXT_LEN
    )


def action_config() -> ActionControlConfig:
    return ActionControlConfig(
        "act", HEIGHT, WIDTH, turn_deg_per_frame=TURN_DEG_PER_FRAME, frames_per_latent=FRAMES_PER_STEP, fov_deg=90.0
    )


@dataclass(frozen=True)
class DoomTeacherConfig:
    """The bidirectional teacher's training clip and sampler."""

    clip_steps: int = 8  # 8 actions -> 9 latent frames = 33 video frames (about 1.9 s)
    shift: float = 3.0  # fewer tokens than 480p need less shift towards high noise than LingBot's 10
    sample_steps: int = 50
    guidance_scale: float = 3.0
    caption_dropout: float = 0.1
    # Share of training clips with no action control (and no caption): the unconditional branch that lets
    # guidance push along the actions, not only the caption.
    action_dropout: float = 0.1


def student_stream() -> StreamConfig:
    """Frame-wise streaming: one latent frame (4 video frames) per env step, 4 steps + a cache pass."""
    return StreamConfig(
        block_frames=1,
        first_block_frames=1,
        schedule=FewStepSchedule.warped([1000, 750, 500, 250], shift=DoomTeacherConfig().shift),
        cache=CacheConfig("rolling", window_frames=8, sink_frames=1),
    )


UNTRAINED_NAME = "doom-untrained"


def build_world(
    batch_size: int = 1, seed: int = 0, device="cpu", dtype=None, vae=None, light=None, dit=None, text=None
) -> InteractiveWorld:
    """An :class:`~world_model.world.InteractiveWorld` of the Doom architecture from the parts given; parts left
    out are freshly initialised (random weights: it runs at full speed but shows noise, and says so). It starts
    from the shipped default world's start frame (a real game frame) when no image is given."""
    torch.manual_seed(seed)
    dtype = dtype or torch.float32
    dit = dit or WanDiT(dit_config())
    vae = vae or WanVAE(vae_config())
    light = light or LightDecoder(light_decoder_config())
    text = text or SmallTextEncoder(text_encoder_config())
    spec = WorldSpec(HEIGHT, WIDTH, FPS, action_config(), student_stream(), default_prompt="a dark corridor")
    parts = [m.to(device).eval() for m in (dit.to(dtype), vae, light, text)]
    world = InteractiveWorld(*parts, spec, batch_size=batch_size, seed=seed)
    world.start_image = default_start_frame()
    return world


# The real game's first frame of MAP01 at the model size, rendered once by ViZDoom and shipped as data, so that
# the core never launches the game (the default world's bundle holds the same frame as its start.png).
DEFAULT_START = Path(__file__).resolve().parent / "assets" / "doom_start.png"


def default_start_frame() -> np.ndarray | None:
    """The shipped start frame ``uint8 [96, 128, 3]`` (None if the package data is missing)."""
    if not DEFAULT_START.exists():
        return None
    from PIL import Image  # pillow comes with imageio; imported only where an image is read

    return np.asarray(Image.open(DEFAULT_START).convert("RGB"))
