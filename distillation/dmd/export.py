"""Stage 4, ``export``: the distilled student as a world bundle (``world_model.bundle``) that the env plays.

The bundle holds the student (bf16, official sharded layout, shards <= 15 MiB), the VAE's encoder, the light
decoder, the teacher's text encoder, a default start frame and prompt, and the streaming layout the student was
trained for; its notes record where each part came from. The default folder is the embedded default world
(``world_model/assets/doom``, at most 40 MiB in all), which ``gym.make("LingBotWorld-v0")`` loads with no model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distillation.dmd.common import StageConfig, check_stream_settings, stream_config
from distillation.dmd.models import check_latents, load_teacher, recorded_fingerprint
from distillation.teacher import export_config, load_export_dit
from distillation.vae_export import latent_fingerprint, load_exported_vae
from world_model.bundle import DEFAULT_BUNDLE, save_world
from world_model.control import ActionControlConfig
from world_model.dit import WanDiT
from world_model.doom import DEFAULT_START
from world_model.vae import light_decoder_fingerprint, load_light_decoder
from world_model.world import InteractiveWorld, WorldSpec

BUDGET_MIB = 40.0  # what the embedded default may weigh (it ships in every wheel and clone)


@dataclasses.dataclass
class ExportConfig(StageConfig):
    student: str = ""  # the student export (default: <out>/dmd/export)
    vae: str = "checkpoints/doom_vae"  # the VAE export (its encoder ships)
    light_decoder: str = "checkpoints/doom_light/light_decoder.pt"  # the light decoder (ships)
    bundle: str = str(DEFAULT_BUNDLE)  # the bundle folder to write (default: the embedded default world)
    start_image: str = str(DEFAULT_START)  # the bundle's start frame (default: the real game's MAP01, shipped)
    prompt: str = "a dark corridor"  # the bundle's default prompt
    fps: float = 17.5  # video frames per second of the world
    height: int = 96  # frame size
    width: int = 128
    turn_deg_per_frame: float = 2.0  # the action's yaw/pitch rate
    fov_deg: float = 90.0  # the camera's field of view (act control rays)
    device: str = "cpu"


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def start_frame(cfg: ExportConfig) -> np.ndarray:
    return np.asarray(Image.open(cfg.start_image).convert("RGB"))


def export_bundle(cfg: ExportConfig) -> Path:
    """Write the bundle; refuses parts trained on other latents and a default bundle over its budget."""
    device = torch.device(cfg.device)
    student_dir = Path(cfg.student or Path(cfg.out) / "dmd" / "export")
    teacher = load_teacher(cfg.teacher, device)
    vae_fp = latent_fingerprint(cfg.vae)
    check_latents(f"the teacher {cfg.teacher}", teacher.fingerprint, vae_fp, cfg.vae)
    check_latents(f"the student {student_dir}", recorded_fingerprint(student_dir), vae_fp, cfg.vae)
    check_latents(
        f"the light decoder {cfg.light_decoder}", light_decoder_fingerprint(cfg.light_decoder), vae_fp, cfg.vae
    )
    result = json.loads((student_dir / "result.json").read_text())
    check_stream_settings(cfg, result, f"the student {student_dir}")
    student = WanDiT(export_config(student_dir))
    step = load_export_dit(student_dir, student)
    vae = load_exported_vae(cfg.vae, device, decoder=False)
    light = load_light_decoder(cfg.light_decoder, device)
    control = ActionControlConfig(
        "act",
        cfg.height,
        cfg.width,
        turn_deg_per_frame=cfg.turn_deg_per_frame,
        frames_per_latent=4,
        fov_deg=cfg.fov_deg,
    )
    spec = WorldSpec(cfg.height, cfg.width, cfg.fps, control, stream_config(cfg), default_prompt=cfg.prompt)
    world = InteractiveWorld(student.eval(), vae, light.eval(), teacher.text, spec)
    notes = {
        "trained": True,
        "student_step": step,
        "stage": result.get("stage"),
        "teacher_step": teacher.step,
        "vae_fingerprint": vae_fp,
        "validation": {k: v for k, v in result.items() if k.startswith("val_")},
    }
    folder = save_world(cfg.bundle, world, start_frame(cfg), notes)
    size = folder_mib(folder)
    if Path(cfg.bundle).resolve() == DEFAULT_BUNDLE.resolve() and size > BUDGET_MIB:
        raise ValueError(f"the default bundle is {size:.1f} MiB, over its {BUDGET_MIB} MiB budget")
    print(f"wrote {folder} ({size:.1f} MiB)")
    return folder
