"""World models under test: one small protocol and its adapters, plus building one from a command-line spec.

A model under test turns start frames, captions and actions into video::

    generate(start_frames uint8 [B, H, W, 3], captions (B strings), actions float32 [B, n, 6],
             starts=None, seeds=None) -> uint8 [B, 1 + 4n, H, W, 3]

Frame 0 of the result is the start frame *as the model sees it* (a world model's VAE reconstruction), frames
``4i+1 .. 4i+4`` are its answer to action ``i``. ``starts`` (:class:`~distillation.evaluation.game.EpisodeStart`
per row) lets the real game replay the exact episode; generative models ignore it. ``seeds`` (one per row) make
sampling reproducible per clip.

Adapters: :class:`CausalWorldModel` (a streaming :class:`~world_model.world.InteractiveWorld`, step by step; also
drives the long rollouts of the stability test), :class:`TeacherModel` (the bidirectional teacher, whole clips),
:class:`RealGameModel` (the game replayed: real vs real must score capped PSNR, which checks the harness),
:class:`NoiseModel` (uniform noise: the floor of every metric) and :class:`StaticModel` (the start frame held
still: the baseline a world model has to beat).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from distillation.evaluation.game import EpisodeStart, game_config, replay_clip
from distillation.teacher import (
    ClipConditioner,
    guides_actions,
    latent_decoder,
    load_teacher_export,
    sample_clip,
    trained_on,
)
from distillation.vae_export import load_exported_vae, same_latents
from lingbot_env.doom.game import DoomConfig
from world_model import doom
from world_model.bundle import DEFAULT_NAME, WorldNotAvailableError, load_world
from world_model.world import InteractiveWorld, images_to_tensor, to_uint8, video_to_tensor

FRAMES_PER_STEP = 4


@runtime_checkable
class WorldModelUnderTest(Protocol):
    """See the module docstring. ``frame_size`` is (W, H); ``causal`` models also offer ``start``/``step``."""

    name: str
    causal: bool
    frame_size: tuple[int, int]

    def generate(
        self,
        start_frames: np.ndarray,
        captions: Sequence[str],
        actions: np.ndarray,
        starts: Sequence[EpisodeStart] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def check_inputs(model: WorldModelUnderTest, start_frames: np.ndarray, captions: Sequence[str], actions: np.ndarray):
    """Validate the common ``generate`` arguments; returns ``(start_frames, actions float32)``."""
    w, h = model.frame_size
    frames = np.asarray(start_frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
        raise ValueError(f"start_frames must be uint8 [B, {h}, {w}, 3], got {frames.dtype} {frames.shape}")
    acts = np.asarray(actions, np.float32)
    if acts.ndim != 3 or acts.shape[0] != frames.shape[0] or acts.shape[2] != 6 or acts.shape[1] < 1:
        raise ValueError(f"actions must be [B={frames.shape[0]}, n >= 1, 6], got {acts.shape}")
    if len(captions) != frames.shape[0]:
        raise ValueError(f"got {len(captions)} captions for {frames.shape[0]} start frames")
    return frames, acts


# -- causal streaming worlds ----------------------------------------------------------------------------------------
def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` [b, ...] -> [rows, ...] with copies of its last row (a world of more rows than the batch asks)."""
    pad = rows - len(x)
    return np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad > 0 else x


class CausalWorldModel:
    """A streaming :class:`InteractiveWorld` under test: reset on the start frame, then one ``step`` per action.

    Args:
        world: the world (its ``batch_size`` rows are used at once).
        name: label in the report.
        factory: ``factory(batch_size) -> InteractiveWorld`` to make worlds of other batch sizes (a bundle loaded
            again); without it, smaller batches are padded with copies of their last row.

    Only frame-wise worlds (``block_frames == 1``) are accepted: the harness, like the game, changes the action
    every latent frame, and a chunk of several latent frames would hold one action for all of them.
    """

    causal = True

    def __init__(
        self,
        world: InteractiveWorld,
        name: str = "causal world",
        factory: Callable[[int], InteractiveWorld] | None = None,
    ) -> None:
        if world.spec.stream.block_frames != 1:
            raise ValueError(
                f"the harness drives one action per latent frame; this world generates "
                f"{world.spec.stream.block_frames} latent frames per action (block_frames must be 1)"
            )
        self.name = name
        self.frame_size = (world.spec.width, world.spec.height)
        self._worlds: dict[int, InteractiveWorld] = {world.batch_size: world}
        self._factory = factory
        self._active: InteractiveWorld | None = None
        self._rows = 0

    @property
    def world(self) -> InteractiveWorld:
        return next(iter(self._worlds.values()))

    def describe(self) -> dict[str, Any]:
        s = self.world.spec
        return {
            "name": self.name,
            "kind": "causal",
            "frame_size": list(self.frame_size),
            "stream": {"timesteps": list(s.stream.schedule.timesteps), "cache": dataclasses.asdict(s.stream.cache)},
        }

    def _world_for(self, rows: int) -> InteractiveWorld:
        if rows in self._worlds:
            return self._worlds[rows]
        if self._factory is not None:
            self._worlds[rows] = self._factory(rows)
            return self._worlds[rows]
        fits = [b for b in self._worlds if b >= rows]
        if not fits:
            raise ValueError(f"{rows} rows do not fit this world's batch size {max(self._worlds)} (no factory)")
        return self._worlds[min(fits)]

    def start(self, start_frames: np.ndarray, captions: Sequence[str], seeds: Sequence[int] | None = None):
        """Reset ``B`` worlds on ``start_frames`` uint8 [B, H, W, 3] -> their first frames uint8 [B, 1, H, W, 3]."""
        b = len(start_frames)
        world = self._world_for(b)
        pad = world.batch_size - b
        seeds = list(range(b)) if seeds is None else [int(s) for s in seeds]
        frames = _pad_rows(start_frames, world.batch_size)
        first = world.reset(
            images_to_tensor(frames, world.device), list(captions) + [captions[-1]] * pad, seeds + [seeds[-1]] * pad
        )
        self._active, self._rows = world, b
        return first[:b].numpy()

    def step(self, actions: np.ndarray, context_latents: torch.Tensor | None = None) -> np.ndarray:
        """Advance the started worlds by one action each: ``actions`` [B, 6] -> uint8 [B, 4, H, W, 3].
        ``context_latents`` (the world's batch, padding rows included): teacher forcing, see
        :meth:`InteractiveWorld.step`."""
        if self._active is None:
            raise RuntimeError("start() the model before step()")
        acts = _pad_rows(np.asarray(actions, np.float32).reshape(self._rows, 6), self._active.batch_size)
        frames, _ = self._active.step(torch.from_numpy(acts), context_latents=context_latents)
        return frames[: self._rows].numpy()

    def generate(self, start_frames, captions, actions, starts=None, seeds=None) -> np.ndarray:
        frames, acts = check_inputs(self, start_frames, captions, actions)
        out = [self.start(frames, captions, seeds)]
        for i in range(acts.shape[1]):
            out.append(self.step(acts[:, i]))
        return np.concatenate(out, axis=1)

    def teacher_forced(self, real: np.ndarray, captions, actions, seeds=None) -> np.ndarray:
        """Next-step prediction from real past frames: ``real`` uint8 [B, 1 + 4n, H, W, 3], ``actions`` [B, n, 6]
        -> uint8 [B, 1 + 4n, H, W, 3] where step ``j``'s frames are generated from the real clip's latents of
        steps ``0 .. j - 1`` (VAE-encoded; the world's cache and decoder go on from them, not from its own)."""
        _, acts = check_inputs(self, real[:, 0], captions, actions)
        out = [self.start(real[:, 0], captions, seeds)]
        world = self._active
        encoder = world.encoder
        with torch.no_grad():
            x = video_to_tensor(_pad_rows(real, world.batch_size), world.device).to(next(encoder.parameters()).dtype)
            latents = encoder.encode(x).float()  # [B, 16, 1 + n, h, w]: the causal VAE, the whole clip at once
        for i in range(acts.shape[1]):
            out.append(self.step(acts[:, i], context_latents=latents[:, :, 1 + i : 2 + i]))
        return np.concatenate(out, axis=1)

    def close(self) -> None:
        for world in self._worlds.values():
            world.close()


# -- the bidirectional teacher --------------------------------------------------------------------------------------
class TeacherModel:
    """The bidirectional teacher (``distillation.teacher``): a whole clip at once, given the first frame.

    It samples clips of ``clip_steps`` actions (its training length). A horizon longer than that is *chained*:
    the next clip starts from the last generated frame (re-encoded by the VAE), with the same caption, so errors
    compound across clip boundaries as they would for any autoregressive use. A last, shorter piece is padded
    with copies of its last action (the likeliest continuation) and cut; the padding only affects the frames
    through the bidirectional attention. Frame 0 of the result is the teacher's own output for latent frame 0.
    """

    causal = False

    def __init__(
        self,
        vae,
        dit,
        text,
        cond,
        steps: int = 50,
        guidance: float = 3.0,
        shift: float = 3.0,
        clip_steps: int = 8,
        name: str = "teacher",
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        guide_actions: bool = False,
        guidance_interval: tuple[float, float] | None = None,
    ) -> None:
        if steps < 1 or clip_steps < 1:
            raise ValueError(f"steps and clip_steps must be >= 1, got {steps}, {clip_steps}")
        self.vae, self.dit, self.text, self.cond = vae, dit, text, cond
        self.decode = decode or latent_decoder(vae)  # latents -> video: the VAE decoder or a light decoder
        self.steps, self.guidance, self.shift, self.clip_steps = steps, guidance, shift, clip_steps
        self.guide_actions = guide_actions  # guidance also along the actions (see distillation.teacher.sample_clip)
        self.guidance_interval = guidance_interval  # guided noise levels (lo, hi); None: all
        self.name = name
        self.frame_size = (cond.cfg.width, cond.cfg.height)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "teacher",
            "frame_size": list(self.frame_size),
            "sampler": {
                "solver": "unipc",
                "steps": self.steps,
                "guidance": self.guidance,
                "guidance_on": "caption and actions" if self.guide_actions else "caption",
                "guidance_interval": list(self.guidance_interval) if self.guidance_interval else "all steps",
                "shift": self.shift,
            },
            "clip_steps": self.clip_steps,
            "chained": "clips longer than clip_steps restart from the last generated frame",
        }

    @torch.no_grad()
    def _clip(self, first: np.ndarray, captions: list[str], actions: np.ndarray, seed: int) -> np.ndarray:
        """One clip: first uint8 [B, H, W, 3], actions [B, clip_steps, 6] -> uint8 [B, 1 + 4 clip_steps, H, W, 3]."""
        device = next(self.dit.parameters()).device
        b, n = actions.shape[:2]
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            z0 = self.vae.encode(images_to_tensor(first, device)[:, :, None].to(self.vae.dtype), chunked=False).float()
            clip = torch.zeros(b, z0.shape[1], n + 1, *z0.shape[3:], device=device)
            clip[:, :, :1] = z0
            acts = torch.from_numpy(actions).to(device)
            lat = sample_clip(
                self.dit,
                self.text,
                self.cond,
                clip,
                acts,
                captions,
                self.steps,
                self.guidance,
                self.shift,
                seed,
                guide_actions=self.guide_actions,
                guidance_interval=self.guidance_interval,
            )
            video = self.decode(lat).float()
        return to_uint8(video).numpy()

    def generate(self, start_frames, captions, actions, starts=None, seeds=None) -> np.ndarray:
        frames, acts = check_inputs(self, start_frames, captions, actions)
        base = 0 if seeds is None else int(seeds[0])
        n, k = acts.shape[1], self.clip_steps
        pieces: list[np.ndarray] = []
        first = frames
        for c, lo in enumerate(range(0, n, k)):
            part = acts[:, lo : lo + k]
            m = part.shape[1]
            if m < k:
                part = np.concatenate([part, np.repeat(part[:, -1:], k - m, axis=1)], axis=1)
            video = self._clip(first, list(captions), part, base + c)
            if c == 0:
                pieces.append(video[:, :1])
            pieces.append(video[:, 1 : 1 + FRAMES_PER_STEP * m])
            first = video[:, FRAMES_PER_STEP * m]
        return np.concatenate(pieces, axis=1)

    def close(self) -> None:
        pass


# -- references: the game itself and noise --------------------------------------------------------------------------
class RealGameModel:
    """The real game replayed from each clip's :class:`EpisodeStart` in a fresh process (needs ``starts``).

    Its frames equal the ground truth exactly when the harness aligns frames and actions correctly, so real vs
    real must give PSNR == ``MAX_PSNR`` and SSIM == 1 at every horizon step.
    """

    causal = False

    def __init__(self, config: DoomConfig, name: str = "real game") -> None:
        self.config = config
        self.name = name
        self.frame_size = config.output_size

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "real", "frame_size": list(self.frame_size)}

    def generate(self, start_frames, captions, actions, starts=None, seeds=None) -> np.ndarray:
        _, acts = check_inputs(self, start_frames, captions, actions)
        if starts is None or len(starts) != len(acts):
            raise ValueError("RealGameModel replays episodes: pass starts (one EpisodeStart per row)")
        return np.stack([replay_clip(self.config, s, a) for s, a in zip(starts, acts)])

    def close(self) -> None:
        pass


class ReconstructionModel(RealGameModel):
    """The real game passed through a VAE: encode each clip, decode it with the VAE decoder or a light decoder.

    Not a world model: it sees the real frames, so its scores are the ceiling that the VAE (or the light decoder)
    puts on every world model decoding through it, measured on the same held-out clips and steps. ``decode`` maps
    normalised latents to video (default: the VAE's own decoder). ``hold_start``: the start frame held still goes
    through the VAE instead of the real clip: the no-motion baseline at the decoder's fidelity, the score a world
    model decoding through it would get by predicting that nothing moves.
    """

    def __init__(self, config: DoomConfig, vae, decode=None, name: str = "vae", hold_start: bool = False) -> None:
        super().__init__(config, name)
        self.vae = vae
        self.decode = decode or latent_decoder(vae)
        self.hold_start = hold_start

    def describe(self) -> dict[str, Any]:
        kind = "static-reconstruction" if self.hold_start else "reconstruction"
        return {"name": self.name, "kind": kind, "frame_size": list(self.frame_size)}

    @torch.no_grad()
    def generate(self, start_frames, captions, actions, starts=None, seeds=None) -> np.ndarray:
        if self.hold_start:
            clip = StaticModel(self.frame_size).generate(start_frames, captions, actions)
        else:
            clip = super().generate(start_frames, captions, actions, starts, seeds)
        device = next(self.vae.parameters()).device
        video = video_to_tensor(clip, device).to(self.vae.dtype)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            out = self.decode(self.vae.encode(video, chunked=False))
        return to_uint8(out.float()).numpy()


class _StartFrameOnly:
    """A reference that makes every frame after the start frame from the start frame alone (no model)."""

    causal = False
    kind = ""

    def __init__(self, frame_size: tuple[int, int], seed: int = 0, name: str = "") -> None:
        self.frame_size = tuple(frame_size)
        self.seed = seed
        self.name = name or self.kind

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "frame_size": list(self.frame_size)}

    def frames_after(self, first: np.ndarray, count: int, seed: int) -> np.ndarray:
        """``count`` frames ``uint8 [count, H, W, 3]`` to follow ``first`` ``[H, W, 3]``."""
        raise NotImplementedError

    def generate(self, start_frames, captions, actions, starts=None, seeds=None) -> np.ndarray:
        frames, acts = check_inputs(self, start_frames, captions, actions)
        seeds = [self.seed + i for i in range(len(frames))] if seeds is None else seeds
        count = FRAMES_PER_STEP * acts.shape[1]
        out = [np.concatenate([f[None], self.frames_after(f, count, int(s))]) for f, s in zip(frames, seeds)]
        return np.stack(out).astype(np.uint8)

    def close(self) -> None:
        pass


class NoiseModel(_StartFrameOnly):
    """Uniform random frames after the start frame: every metric's floor (and a check of its direction)."""

    kind = "noise"

    def frames_after(self, first: np.ndarray, count: int, seed: int) -> np.ndarray:
        h, w = first.shape[:2]
        return np.random.default_rng(seed).integers(0, 256, (count, h, w, 3)).astype(np.uint8)


class StaticModel(_StartFrameOnly):
    """The start frame held still: the no-motion baseline. A model that scores below it on PSNR predicts motion
    worse than not moving at all; its probe accuracy shows what the probe guesses from frames without motion."""

    kind = "static"

    def frames_after(self, first: np.ndarray, count: int, seed: int) -> np.ndarray:
        return np.repeat(first[None], count, axis=0)


# -- building a model from a spec -----------------------------------------------------------------------------------
def tiny_random_world(batch_size: int = 1, height: int = 32, width: int = 48, seed: int = 0) -> InteractiveWorld:
    """A complete world of tiny random parts (DiT, VAE, light decoder, text encoder) for harness checks."""
    from world_model.tiny import tiny_world

    return tiny_world(batch_size, height, width, seed=seed)


MODEL_SPECS = (
    "<world bundle folder>",
    "default",
    "<preset with weights, e.g. doom-untrained>",
    "teacher:<teacher export folder>:<vae export folder>[:<light decoder .pt>]",
    "vae:<vae export folder>[:<light decoder .pt>]",
    "real",
    "noise",
    "static",
    "static:<vae export folder>[:<light decoder .pt>]",
    "tiny-random",
)


@dataclasses.dataclass(frozen=True)
class TeacherSampling:
    """How a bidirectional teacher is sampled; ``None`` takes the Doom teacher's scale (``guidance``) or what the
    export was trained for (``guide_actions``: guidance along the actions too, if it had action dropout).
    ``interval``: the noise levels ``(lo, hi)`` that are guided (all when None)."""

    steps: int = 50
    guidance: float | None = None
    guide_actions: bool | None = None
    interval: tuple[float, float] | None = None


def model_from_spec(
    spec: str,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    seed: int = 0,
    size: tuple[int, int] = (128, 96),
    wad: str = "freedoom2",
    teacher: TeacherSampling = TeacherSampling(),
) -> WorldModelUnderTest:
    """Build the model named by ``spec`` (one of :data:`MODEL_SPECS`).

    ``size`` (W, H) is the frame size of the models without their own (``real``, ``noise``, ``static``);
    ``tiny-random`` is 48x32. ``teacher``: how a ``teacher:`` spec samples.
    """
    spec = str(spec).strip()
    if spec == "real":
        return RealGameModel(game_config(size, wad))
    if spec == "noise":
        return NoiseModel(size, seed)
    if spec == "static":
        return StaticModel(size, seed)
    if spec == "tiny-random":
        return CausalWorldModel(
            tiny_random_world(batch_size, seed=seed),
            "tiny-random",
            factory=lambda b: tiny_random_world(b, seed=seed),
        )
    if spec.startswith("teacher:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4) or not parts[1] or not parts[2]:
            raise ValueError(
                "a teacher spec is 'teacher:<teacher export folder>:<vae export folder>[:<light decoder .pt>]', "
                f"got {spec!r}"
            )
        light = parts[3] if len(parts) == 4 else None
        return load_teacher(parts[1], parts[2], device, teacher, light)
    if spec.startswith(("vae:", "static:")):
        kind, *parts = spec.split(":")
        if len(parts) not in (1, 2) or not parts[0]:
            raise ValueError(f"a {kind} spec is '{kind}:<vae export folder>[:<light decoder .pt>]', got {spec!r}")
        light = parts[1] if len(parts) == 2 else None
        return load_reconstruction(parts[0], light, device, size, wad, hold_start=kind == "static")
    # Everything else is what load_world takes: the embedded default, a bundle folder or release root, a preset
    # name with weights, or "doom-untrained" (random weights: the floor of a causal world's stability curves).
    try:
        world = load_world(spec, device=device, batch_size=batch_size, seed=seed)
    except WorldNotAvailableError as e:
        if spec != DEFAULT_NAME and not Path(spec).expanduser().is_dir():
            raise ValueError(f"unknown model spec {spec!r} ({e}); use one of: {', '.join(MODEL_SPECS)}") from None
        raise
    path = Path(spec).expanduser()
    name = path.name if path.is_dir() else spec
    return CausalWorldModel(world, name, factory=lambda b: load_world(spec, device=device, batch_size=b, seed=seed))


def warn_other_latents(what: str, vae_export: str | Path, consequence: str) -> None:
    """Warn that ``what`` recorded the latents of another VAE encoder than ``vae_export``'s at training."""
    warnings.warn(
        f"{what} was trained on the latents of another VAE encoder than {vae_export}'s (its recorded "
        f"vae_fingerprint differs): {consequence}. Pass the VAE it was trained with, or train it on this one.",
        stacklevel=3,
    )


def load_vae_and_decoder(vae_export: str | Path, light: str | Path | None, device: torch.device | str):
    """``(vae, decode)``: a VAE export and the decoder to use (``light``, a light decoder file, or the VAE's own;
    with a light decoder only the VAE's encoder is loaded)."""

    if not Path(vae_export).is_dir():
        raise ValueError(f"VAE export folder {str(vae_export)!r} does not exist")
    if light is not None and not Path(light).is_file():
        raise ValueError(f"light decoder file {str(light)!r} does not exist")
    if light is not None:
        from world_model.vae import light_decoder_fingerprint

        if not same_latents(light_decoder_fingerprint(light), vae_export):
            warn_other_latents(f"the light decoder {light}", vae_export, "its frames will be off")
    vae = load_exported_vae(vae_export, device, decoder=light is None)
    return vae, latent_decoder(vae, light or "", device)


def load_teacher(
    export: str | Path,
    vae_export: str | Path,
    device: str | torch.device,
    sampling: TeacherSampling = TeacherSampling(),
    light: str | Path | None = None,
) -> TeacherModel:
    """The teacher from its export folder and the VAE export it was trained with; with ``light`` (a light
    decoder file) it decodes through that, and only the VAE's encoder is loaded."""
    if not Path(export).is_dir():
        raise ValueError(f"teacher export folder {str(export)!r} does not exist")
    if not trained_on(export, vae_export):
        warn_other_latents(f"the teacher in {export}", vae_export, "its samples will be wrong")
    device = torch.device(device)
    vae, decode = load_vae_and_decoder(vae_export, light, device)
    dit, text, step = load_teacher_export(export, device)
    t = doom.DoomTeacherConfig()
    return TeacherModel(
        vae,
        dit.eval(),
        text.eval(),
        ClipConditioner(device),
        steps=sampling.steps,
        guidance=t.guidance_scale if sampling.guidance is None else sampling.guidance,
        shift=t.shift,
        clip_steps=t.clip_steps,
        name=f"teacher@{step}",
        decode=decode,
        guide_actions=guides_actions(export) if sampling.guide_actions is None else sampling.guide_actions,
        guidance_interval=sampling.interval,
    )


def load_reconstruction(
    vae_export: str | Path,
    light: str | Path | None,
    device: str | torch.device,
    size: tuple[int, int],
    wad: str,
    hold_start: bool = False,
) -> ReconstructionModel:
    """The real game (or with ``hold_start`` its start frame held still) through a VAE export
    (``distillation.vae_export``), optionally decoded by a light decoder."""
    vae, decode = load_vae_and_decoder(vae_export, light, device)
    name = ("static+" if hold_start else "") + ("vae" if light is None else "vae+light")
    return ReconstructionModel(game_config(size, wad), vae, decode, name, hold_start)


# -- the real frames through a model's own decoder (the sharpness ceiling) ------------------------------------------
def decoder_reference(model: WorldModelUnderTest) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``reference(real, generated) -> uint8 [B, 1 + 4n, H, W, 3]``: the real clips encoded by the model's VAE and
    decoded by the decoder it decodes with (the VAE's or a light decoder), for models that decode VAE latents
    (:class:`TeacherModel`, :class:`ReconstructionModel`, :class:`CausalWorldModel`); ``None`` for the others. For
    the real clip through the VAE (``vae:``), that is the model's own output, which is returned as it is."""
    if isinstance(model, ReconstructionModel) and not model.hold_start:
        return lambda real, generated: generated
    if isinstance(model, CausalWorldModel):  # a world bundle: its VAE encoder and the decoder it streams with
        vae, decode = model.world.encoder, model.world.decoder.decode
    else:
        vae, decode = getattr(model, "vae", None), getattr(model, "decode", None)
    if vae is None or decode is None:
        return None

    @torch.no_grad()
    def reference(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
        device = next(vae.parameters()).device
        video = video_to_tensor(real, device).to(vae.dtype)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            out = decode(vae.encode(video, chunked=False))
        return to_uint8(out.float()).numpy()

    return reference
