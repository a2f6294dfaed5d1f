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

from dataclasses import dataclass, field

from world_model.config import WanDiTConfig
from world_model.control import ActionControlConfig
from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig

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


def vae_config(latent_mean: tuple[float, ...] = (), latent_std: tuple[float, ...] = ()):
    from world_model.vae import VAEConfig

    return VAEConfig(dim=32, z_dim=16, latent_mean=latent_mean, latent_std=latent_std)


def light_decoder_config():
    from world_model.vae import LightDecoderConfig

    return LightDecoderConfig(z_dim=16, widths=(128, 64, 48, 24), blocks_per_stage=2)


def text_encoder_config():
    from world_model.checkpoints.text_encoders import SmallTextEncoderConfig

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


@dataclass(frozen=True)
class DoomModel:
    """Everything that defines the Doom world model family (defaults: the shipped configuration)."""

    dit: WanDiTConfig = field(default_factory=dit_config)
    action: ActionControlConfig = field(default_factory=action_config)
    teacher: DoomTeacherConfig = field(default_factory=DoomTeacherConfig)
    height: int = HEIGHT
    width: int = WIDTH
    fps: float = FPS


UNTRAINED_NAME = "doom-untrained"


def presets():
    """``doom-teacher`` (bidirectional, UniPC + CFG) and ``doom`` (the causal student the env streams)."""
    from world_model.checkpoints.presets import ExpertSpec, Preset, SamplingDefaults

    t = DoomTeacherConfig()
    common = dict(sizes=((HEIGHT, WIDTH),), fps=FPS, vae="doom", text_encoder="small")
    teacher = Preset(
        name="doom-teacher",
        experts=(ExpertSpec("model", dit_config()),),
        sampling=SamplingDefaults("unipc", t.sample_steps, shift=t.shift, guidance_scale=t.guidance_scale),
        num_frames=4 * t.clip_steps + 1,
        description="the project's bidirectional ViZDoom teacher (act control, 128x96)",
        **common,
    )
    stream = student_stream()
    student = Preset(
        name="doom",
        experts=(ExpertSpec("model", dit_config()),),
        sampling=SamplingDefaults(
            "few_step", len(stream.schedule.timesteps), shift=t.shift, schedule=stream.schedule, stream=stream
        ),
        num_frames=4 * t.clip_steps + 1,
        causal=True,
        description="the project's causal ViZDoom student, the embedded default world (once trained)",
        **common,
    )
    return teacher, student


def build_world(
    batch_size: int = 1, seed: int = 0, device="cpu", dtype=None, vae=None, light=None, dit=None, text=None
):
    """An :class:`~world_model.world.InteractiveWorld` of the Doom architecture from the parts given; parts left
    out are freshly initialised (random weights: it runs at full speed but shows noise, and says so)."""
    import torch

    from world_model.checkpoints.text_encoders import SmallTextEncoder
    from world_model.dit import WanDiT
    from world_model.vae import LightDecoder, WanVAE
    from world_model.world import InteractiveWorld, WorldSpec

    torch.manual_seed(seed)
    dtype = dtype or torch.float32
    dit = dit or WanDiT(dit_config())
    vae = vae or WanVAE(vae_config())
    light = light or LightDecoder(light_decoder_config())
    text = text or SmallTextEncoder(text_encoder_config())
    spec = WorldSpec(HEIGHT, WIDTH, FPS, action_config(), student_stream(), default_prompt="a dark corridor")
    parts = [m.to(device).eval() for m in (dit.to(dtype), vae, light, text)]
    world = InteractiveWorld(*parts, spec, batch_size=batch_size, seed=seed)
    world.start_image = real_start_frame()
    return world


def real_start_frame(map_name: str = "MAP01", seed: int = 0):
    """The real game's first frame at the model size (``uint8 [96, 128, 3]``), rendered by ViZDoom."""
    from lingbot_env.doom.env import ViZDoomWASDEnv

    env = ViZDoomWASDEnv(map=map_name, frame_size=(WIDTH, HEIGHT), labels=False, monsters=False)
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    return obs
