"""Named model presets: which DiT(s), VAE, text encoder, sampler defaults, sizes and fps make up a released model.

A preset is plain data (frozen dataclasses). Full-size presets mirror the public releases
(docs/official_models.md §1, §2, §8):

* ``lingbot-world-base-cam`` / ``lingbot-world-base-act``: two bidirectional experts (high noise while
  ``t >= 947``, else low noise), UniPC 70 steps, shift 10, CFG 5, 16 fps.
* ``lingbot-world-fast``: one block-causal model, chunks of 3 latent frames, 4 steps on the shift-10 grid, no CFG.
* ``wan2.2-i2v-a14b``: the Wan2.2 experts LingBot starts from (no camera layers).
* ``wan2.1-t2v-1.3b``: the small Wan that published real-time results are measured on.

The project's own small presets are added with one :func:`register_preset` call.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from world_model.config import WanDiTConfig
from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule, sigma_schedule
from world_model.streaming import StreamConfig

# Output width of each text encoder kind; a preset's DiT ``text_dim`` must match it.
TEXT_ENCODER_DIMS: dict[str, int | None] = {"umt5-xxl": 4096, "small": None}  # small: sized per preset

Solver = Literal["unipc", "euler", "few_step"]


@dataclass(frozen=True)
class ExpertSpec:
    """One DiT of a preset: its name (``model``, or ``high`` / ``low`` for a pair), shape and release folder.

    ``subfolder`` is relative to the release root (``""``: the weights sit in the root itself).
    """

    name: str
    config: WanDiTConfig
    subfolder: str = ""


@dataclass(frozen=True)
class SamplingDefaults:
    """How the released model samples by default.

    ``guidance_scale`` 1.0 means no classifier-free guidance. ``boundary_t`` is the expert switch of a pair
    (high-noise expert while ``t >= boundary_t``). Few-step (causal) presets carry the student ``schedule`` and the
    ``stream`` layout instead of a solver step count.
    """

    solver: Solver
    num_steps: int
    shift: float
    guidance_scale: float = 1.0
    boundary_t: float | None = None
    schedule: FewStepSchedule | None = None
    stream: StreamConfig | None = None

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.solver == "few_step" and (self.schedule is None or len(self.schedule.timesteps) != self.num_steps):
            raise ValueError("a few-step preset needs a FewStepSchedule with num_steps timesteps")
        if self.guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 = no CFG), got {self.guidance_scale}")

    def sigmas(self) -> torch.Tensor:
        """The solver's ``num_steps + 1`` sigmas (float64, 1 -> 0); few-step presets use ``schedule`` instead."""
        if self.solver == "few_step":
            raise ValueError("few-step presets sample at schedule.timesteps, not on a solver grid")
        return sigma_schedule(self.num_steps, self.shift)


@dataclass(frozen=True)
class Preset:
    """A released (or project-trained) model: everything needed to build, load and sample it.

    Attributes:
        name: registry key, e.g. ``"lingbot-world-base-cam"``.
        experts: one :class:`ExpertSpec` (``model``) or a pair (``high``, ``low``).
        sampling: default sampler settings.
        sizes: supported output sizes as ``(height, width)`` pixels (multiples of 16).
        fps: frames per second of the output video.
        num_frames: default clip length in video frames (``4n + 1``) for bidirectional presets.
        vae: name of the VAE config, resolved lazily in ``world_model.vae`` (see :meth:`vae_config`).
        text_encoder: ``"umt5-xxl"`` or ``"small"`` (see ``world_model.checkpoints.text_encoders``).
        causal: True for block-causal streaming students.
        dtype: dtype the weights are used in.
        files: other release files relative to the root (``vae``, ``text_encoder``, ``tokenizer``).
    """

    name: str
    experts: tuple[ExpertSpec, ...]
    sampling: SamplingDefaults
    sizes: tuple[tuple[int, int], ...]
    fps: float
    num_frames: int = 81
    vae: str = "wan2.1"
    text_encoder: str = "umt5-xxl"
    causal: bool = False
    dtype: torch.dtype = torch.bfloat16
    files: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        names = [e.name for e in self.experts]
        if len(names) == 1:
            if names != ["model"]:
                raise ValueError(f"preset {self.name!r}: a single expert must be named 'model', got {names}")
        elif sorted(names) != ["high", "low"]:
            raise ValueError(f"preset {self.name!r}: experts must be ['model'] or ['high', 'low'], got {names}")
        elif self.sampling.boundary_t is None:
            raise ValueError(f"preset {self.name!r}: an expert pair needs sampling.boundary_t (the switch timestep)")
        for h, w in self.sizes:
            if h % 16 or w % 16:
                raise ValueError(f"preset {self.name!r}: size {h}x{w} is not a multiple of 16 (VAE 8 x patch 2)")
        if self.fps < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"preset {self.name!r}: need fps >= 1 and num_frames = 4n + 1, got {self.num_frames}")
        if self.text_encoder not in TEXT_ENCODER_DIMS:
            raise ValueError(f"preset {self.name!r}: unknown text encoder {self.text_encoder!r}")
        want = TEXT_ENCODER_DIMS[self.text_encoder]
        for e in self.experts:
            if want is not None and e.config.text_dim != want:
                raise ValueError(
                    f"preset {self.name!r}: expert {e.name!r} has text_dim {e.config.text_dim}, "
                    f"but the {self.text_encoder} text encoder outputs {want}"
                )

    @property
    def is_pair(self) -> bool:
        return len(self.experts) == 2

    @property
    def config(self) -> WanDiTConfig:
        """The DiT config (both experts of a pair share one shape)."""
        return self.experts[0].config

    def expert(self, name: str) -> ExpertSpec:
        for e in self.experts:
            if e.name == name:
                return e
        raise KeyError(f"preset {self.name!r} has no expert {name!r}; it has {[e.name for e in self.experts]}")

    def vae_config(self) -> Any:
        """Resolve :attr:`vae` in ``world_model.vae`` (imported only now, so presets work without it).

        Looks for ``world_model.vae.get_config(name)``, then a ``VAE_CONFIGS`` / ``VAE_PRESETS`` dict, then the
        ``VAEConfig`` defaults for ``"wan2.1"``.
        """
        if self.vae == "doom":
            from world_model import doom  # see doom_presets for why not at the top

            return doom.vae_config()
        try:
            vae = importlib.import_module("world_model.vae")
        except ImportError as exc:
            raise ImportError(
                f"preset {self.name!r} uses VAE {self.vae!r}, but world_model.vae cannot be imported ({exc})"
            ) from exc
        if hasattr(vae, "get_config"):
            return vae.get_config(self.vae)
        for table in ("VAE_CONFIGS", "VAE_PRESETS"):
            if self.vae in getattr(vae, table, {}):
                return getattr(vae, table)[self.vae]
        if self.vae == "wan2.1" and hasattr(vae, "VAEConfig"):
            return vae.VAEConfig()
        raise KeyError(f"world_model.vae has no config named {self.vae!r} (preset {self.name!r})")


# -- registry ----------------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset, *, replace: bool = False) -> Preset:
    """Add ``preset`` to the registry (``replace=True`` to overwrite an existing name). Returns it."""
    if preset.name in _REGISTRY and not replace:
        raise ValueError(f"a preset named {preset.name!r} is already registered (pass replace=True to overwrite)")
    _REGISTRY[preset.name] = preset
    return preset


def unregister_preset(name: str) -> None:
    _REGISTRY.pop(name, None)


def get_preset(preset: str | Preset) -> Preset:
    """A registered preset by name (a :class:`Preset` passes through)."""
    if isinstance(preset, Preset):
        return preset
    _register_doom()
    try:
        return _REGISTRY[preset]
    except KeyError:
        raise KeyError(f"unknown preset {preset!r}; registered presets: {sorted(_REGISTRY)}") from None


def list_presets() -> list[str]:
    _register_doom()
    return sorted(_REGISTRY)


# -- the released models -----------------------------------------------------------------------------------------
WAN_FILES = {
    "vae": "Wan2.1_VAE.pth",
    "text_encoder": "models_t5_umt5-xxl-enc-bf16.pth",
    "tokenizer": "google/umt5-xxl",
}
LINGBOT_SIZES = ((480, 832), (832, 480), (720, 1280), (1280, 720))
LINGBOT_BOUNDARY_T = 947.0
WAN22_BOUNDARY_T = 900.0  # Wan2.2 I2V-A14B: boundary 0.9 of the 1000-step range


def _pair(config: WanDiTConfig) -> tuple[ExpertSpec, ExpertSpec]:
    return ExpertSpec("high", config, "high_noise_model"), ExpertSpec("low", config, "low_noise_model")


def _lingbot_base(name: str, control: str) -> Preset:
    cfg = WanDiTConfig(control_dim=6 if control == "cam" else 7)
    return Preset(
        name=name,
        experts=_pair(cfg),
        sampling=SamplingDefaults("unipc", 70, shift=10.0, guidance_scale=5.0, boundary_t=LINGBOT_BOUNDARY_T),
        sizes=LINGBOT_SIZES,
        fps=16,
        num_frames=81,
        files=dict(WAN_FILES),
        description=f"LingBot-World Base ({control.capitalize()}): Wan2.2 I2V-A14B experts + {control} layers",
    )


def _lingbot_fast() -> Preset:
    schedule = FewStepSchedule.lingbot_fast()
    # Fast's first chunk is 3 latent frames (9 video frames) with the image as frame 0; the cache is global.
    stream = StreamConfig(block_frames=3, first_block_frames=3, schedule=schedule, cache=CacheConfig("global"))
    return Preset(
        name="lingbot-world-fast",
        experts=(ExpertSpec("model", WanDiTConfig(control_dim=6), "lingbot_world_fast"),),
        sampling=SamplingDefaults("few_step", 4, shift=10.0, schedule=schedule, stream=stream),
        sizes=LINGBOT_SIZES,
        fps=16,
        num_frames=81,
        causal=True,
        files=dict(WAN_FILES),
        description="LingBot-World Fast: one block-causal Cam model, 4 steps, no CFG, KV-cached streaming",
    )


def _wan22_i2v() -> Preset:
    return Preset(
        name="wan2.2-i2v-a14b",
        experts=_pair(WanDiTConfig()),
        sampling=SamplingDefaults("unipc", 40, shift=5.0, guidance_scale=3.5, boundary_t=WAN22_BOUNDARY_T),
        sizes=LINGBOT_SIZES,
        fps=16,
        num_frames=81,
        files=dict(WAN_FILES),
        description="Wan2.2 I2V-A14B (no camera layers): the experts LingBot-World is fine-tuned from",
    )


def _wan21_t2v_1_3b() -> Preset:
    return Preset(
        name="wan2.1-t2v-1.3b",
        experts=(ExpertSpec("model", WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, in_dim=16)),),
        sampling=SamplingDefaults("unipc", 50, shift=5.0, guidance_scale=5.0),
        sizes=((480, 832), (832, 480)),
        fps=16,
        num_frames=81,
        files=dict(WAN_FILES),
        description="Wan2.1 T2V-1.3B: the base of Self-Forcing / CausVid, for speed comparisons",
    )


for _p in (
    _lingbot_base("lingbot-world-base-cam", "cam"),
    _lingbot_base("lingbot-world-base-act", "act"),
    _lingbot_fast(),
    _wan22_i2v(),
    _wan21_t2v_1_3b(),
):
    register_preset(_p)
FULL_SIZE_PRESETS = tuple(sorted(_REGISTRY))


def doom_presets() -> tuple[Preset, Preset]:
    """``doom-teacher`` (bidirectional, UniPC + CFG) and ``doom`` (the causal student the env streams): the
    project's small ViZDoom world model, LingBot's classes at the config of ``world_model.doom``."""
    # Imported here, not at the top: world_model.doom imports world_model.checkpoints (its text encoder), whose
    # package imports this module first.
    from world_model import doom

    t = doom.DoomTeacherConfig()
    common = dict(sizes=((doom.HEIGHT, doom.WIDTH),), fps=doom.FPS, vae="doom", text_encoder="small")
    teacher = Preset(
        name="doom-teacher",
        experts=(ExpertSpec("model", doom.dit_config()),),
        sampling=SamplingDefaults("unipc", t.sample_steps, shift=t.shift, guidance_scale=t.guidance_scale),
        num_frames=4 * t.clip_steps + 1,
        description="the project's bidirectional ViZDoom teacher (act control, 128x96)",
        **common,
    )
    stream = doom.student_stream()
    student = Preset(
        name="doom",
        experts=(ExpertSpec("model", doom.dit_config()),),
        sampling=SamplingDefaults(
            "few_step", len(stream.schedule.timesteps), shift=t.shift, schedule=stream.schedule, stream=stream
        ),
        num_frames=4 * t.clip_steps + 1,
        causal=True,
        description="the project's causal ViZDoom student, the embedded default world",
        **common,
    )
    return teacher, student


_DOOM_REGISTERED = False


def _register_doom() -> None:
    """Register the Doom presets on the first look-up, not at import (see :func:`doom_presets`)."""
    global _DOOM_REGISTERED
    if not _DOOM_REGISTERED:
        _DOOM_REGISTERED = True
        for p in doom_presets():
            register_preset(p, replace=True)
