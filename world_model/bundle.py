"""World bundles: everything an :class:`~world_model.world.InteractiveWorld` needs, in one folder.

Our own format (the shipped Doom model, distilled students)::

    world.json                      spec (size, fps, action control, streaming), parts, provenance notes
    dit/                            the DiT in the official layout (config.json + safetensors shards)
    vae_encoder.safetensors         the VAE's encoder half (official key names) + vae.json (its config)
    light_decoder.safetensors       the light streaming decoder + light_decoder.json
    text_encoder.safetensors        the small text encoder + text_encoder.json
    start.png                       a start frame for reset() without an image
    heads.safetensors (optional)    step heads (learned reward / termination, world_model.heads) + heads.json

``world.json`` records the SHA-256 of every other file (``"sha256": {relative path: hex}``); loading checks them
all before it builds anything, and a file whose bytes changed is refused by name.

:func:`load_world` also accepts a full-size LingBot-World release root (``lingbot_world_fast/`` +
``Wan2.1_VAE.pth`` + umT5), a registered preset name with a bundle, or None for the embedded default.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from world_model.control import ActionControlConfig
from world_model.heads import HEADS_CONFIG, HEADS_FILE, load_heads
from world_model.kv_cache import CacheConfig
from world_model.safe_files import check_sha256, sha256_file
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig
from world_model.world import InteractiveWorld, WorldSpec

FORMAT = "lingbot-realtime-world"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "doom"  # the "doom" preset
DEFAULT_NAME = "default"  # the spec string that means model=None
RELEASE_PRESET = "lingbot-world-fast"  # what a release root passed to load_world is read as by default


class WorldNotAvailableError(FileNotFoundError):
    """The asked-for world has no weights here (e.g. the embedded default before it is trained and shipped)."""


# -- spec <-> json -------------------------------------------------------------------------------------------------
def spec_to_dict(spec: WorldSpec) -> dict[str, Any]:
    s = spec.stream
    return {
        "height": spec.height,
        "width": spec.width,
        "fps": spec.fps,
        "default_prompt": spec.default_prompt,
        "control": None if spec.control is None else dataclasses.asdict(spec.control),
        "stream": {
            "block_frames": s.block_frames,
            "first_block_frames": s.first_block_frames,
            "timesteps": list(s.schedule.timesteps),
            "cache": dataclasses.asdict(s.cache),
            "cache_write": s.cache_write,
        },
    }


def spec_from_dict(d: dict[str, Any]) -> WorldSpec:
    st = d["stream"]
    stream = StreamConfig(
        block_frames=st["block_frames"],
        first_block_frames=st["first_block_frames"],
        schedule=FewStepSchedule(tuple(st["timesteps"])),
        cache=CacheConfig(**st["cache"]),
        cache_write=st.get("cache_write", "clean"),  # bundles written before the option: the clean pass
    )
    control = None if d.get("control") is None else ActionControlConfig(**d["control"])
    return WorldSpec(d["height"], d["width"], d["fps"], control, stream, d.get("default_prompt", ""))


# -- saving --------------------------------------------------------------------------------------------------------
def _save_module(module: torch.nn.Module, path: Path, config: Any, dtype: torch.dtype, keep=lambda k: True) -> None:
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items() if keep(k)}
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(dataclasses.asdict(config), indent=1))


def save_world(
    folder: str | Path,
    world: InteractiveWorld,
    start_image: np.ndarray | None = None,
    notes: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write ``world`` as a bundle (bf16 by default; shards <= 15 MiB so every file fits a 16 MiB transfer)."""
    from PIL import Image

    from world_model.checkpoints.saving import save_checkpoint
    from world_model.vae import is_encoder_key

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(world.dit, folder / "dit", max_shard_size="15MiB", dtype=dtype, overwrite=True)
    vae = world.encoder
    _save_module(vae, folder / "vae_encoder.safetensors", vae.config, dtype, keep=is_encoder_key)
    _save_module(world.decoder, folder / "light_decoder.safetensors", world.decoder.config, dtype)
    _save_module(world.text_encoder, folder / "text_encoder.safetensors", world.text_encoder.config, dtype)
    if start_image is not None:
        Image.fromarray(np.asarray(start_image, dtype=np.uint8)).save(folder / "start.png")
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "world.json"
    )
    digests = {name: sha256_file(folder / name) for name in files}
    meta = {"format": FORMAT, "version": 1, "spec": spec_to_dict(world.spec), "notes": notes or {}, "sha256": digests}
    (folder / "world.json").write_text(json.dumps(meta, indent=1))
    return folder


def check_bundle_files(folder: str | Path, meta: dict[str, Any] | None = None) -> bool:
    """Check every file ``world.json`` records against its SHA-256 (:class:`~world_model.safe_files.IntegrityError`
    naming the first that differs, ``FileNotFoundError`` for a missing one). False for an older bundle that records
    none (nothing checked)."""
    folder = Path(folder)
    meta = meta if meta is not None else json.loads((folder / "world.json").read_text())
    digests = meta.get("sha256")
    if not digests:
        return False
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {folder / 'world.json'} but missing; the bundle is incomplete")
        check_sha256(path, digest, "world bundle file")
    return True


# -- loading -------------------------------------------------------------------------------------------------------
def _config(cls, path: Path):
    d = json.loads(path.read_text())
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _load_bundle(folder: Path, device, dtype, batch_size: int, seed: int) -> InteractiveWorld:
    from world_model.checkpoints import load_dit
    from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
    from world_model.vae import LightDecoder, LightDecoderConfig, VAEConfig, vae_from_halves

    meta = json.loads((folder / "world.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'world.json'} is not a {FORMAT} bundle (format={meta.get('format')!r})")
    spec = spec_from_dict(meta["spec"])
    checked = check_bundle_files(folder, meta)
    if not checked:
        import warnings

        warnings.warn(
            f"{folder / 'world.json'} records no SHA-256 of its files (a bundle written before they were): only "
            "the DiT is checked (finite weights). Save it again with save_world to record them.",
            stacklevel=3,
        )
    dtype = dtype or (torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32)
    dit = load_dit(folder / "dit", device=device, dtype=dtype, integrity="none" if checked else "auto").eval()

    state = {k: v.float() for k, v in load_file(folder / "vae_encoder.safetensors").items()}
    # Only the encoder half ships: the light decoder decodes.
    vae = vae_from_halves(_config(VAEConfig, folder / "vae_encoder.json"), state, decoder=False, source=str(folder))
    vae = vae.to(device, torch.float32).eval()

    light = LightDecoder(_config(LightDecoderConfig, folder / "light_decoder.json"))
    light.load_state_dict({k: v.float() for k, v in load_file(folder / "light_decoder.safetensors").items()})
    text = SmallTextEncoder(_config(SmallTextEncoderConfig, folder / "text_encoder.json"))
    text.load_state_dict({k: v.float() for k, v in load_file(folder / "text_encoder.safetensors").items()})
    world = InteractiveWorld(dit, vae, light.to(device).eval(), text.to(device).eval(), spec, batch_size, seed)
    world.start_image = _start_image(folder / "start.png")
    world.notes = meta.get("notes", {})
    if (folder / HEADS_CONFIG).exists():
        if checked and HEADS_FILE not in meta["sha256"]:
            raise ValueError(
                f"{folder / HEADS_FILE} is not recorded in {folder / 'world.json'}: add heads with "
                "world_model.bundle.add_heads (python -m agents.train_heads --bundle), which records them"
            )
        world.heads = load_heads(folder, world.notes.get("vae_fingerprint")).to(device)
    return world


def add_heads(folder: str | Path, heads_folder: str | Path) -> None:
    """Copy step heads (:func:`world_model.heads.save_heads`) into a bundle and record their SHA-256 in its
    ``world.json``; refused when they read other latents than the bundle's."""
    import shutil

    folder, heads_folder = Path(folder), Path(heads_folder)
    meta = json.loads((folder / "world.json").read_text())
    load_heads(heads_folder, meta.get("notes", {}).get("vae_fingerprint"))  # the fingerprint check, before copying
    for name in (HEADS_FILE, HEADS_CONFIG):
        shutil.copy(heads_folder / name, folder / name)
        meta.setdefault("sha256", {})[name] = sha256_file(folder / name)
    tmp = folder / "world.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "world.json")


def _start_image(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _load_release(
    root: Path,
    device,
    dtype,
    batch_size: int,
    seed: int,
    size: tuple[int, int] | None,
    preset: Any = None,
    text_encoder_kwargs: dict[str, Any] | None = None,
):
    """A LingBot-World causal release (``lingbot-world-fast``, or ``preset``: a name or a
    :class:`~world_model.checkpoints.Preset` of the same layout) as an interactive world."""
    from world_model.checkpoints import get_preset
    from world_model.checkpoints.release import load_release

    preset = get_preset(preset or RELEASE_PRESET)
    if preset.is_pair or not preset.causal or preset.sampling.stream is None:
        raise ValueError(
            f"preset {preset.name!r} is not a causal streaming student (one block-causal model with a stream "
            "layout, like lingbot-world-fast): it cannot run as an interactive world"
        )
    if not (root / preset.experts[0].subfolder).exists():
        raise ValueError(
            f"{root} is a LingBot-World release without {preset.experts[0].subfolder}/: only the causal Fast model "
            "streams; the Base experts are bidirectional (use them through the teacher sampler)"
        )
    dtype = dtype or torch.bfloat16
    rel = load_release(root, preset, device=device, dtype=dtype, text_encoder_kwargs=text_encoder_kwargs)
    h, w = size or preset.sizes[0]
    control = ActionControlConfig("cam", h, w, turn_deg_per_frame=2.0, frames_per_latent=4)
    spec = WorldSpec(h, w, float(preset.fps), control, preset.sampling.stream)
    world = InteractiveWorld(rel.dit, rel.vae, rel.vae, rel.text_encoder, spec, batch_size, seed)
    world.start_image = None
    world.notes = {"preset": preset.name}
    return world


def _is_release_folder(model: Any) -> bool:
    if not isinstance(model, (str, os.PathLike)):
        return False
    from world_model.checkpoints.loading import is_release_root

    path = Path(model).expanduser()
    return not (path / "world.json").exists() and is_release_root(path)


def load_world(
    model: Any = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    batch_size: int = 1,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    release_preset: Any = None,
    text_encoder_kwargs: dict[str, Any] | None = None,
) -> InteractiveWorld:
    """An :class:`InteractiveWorld` from ``model``: the one resolver of a ``model`` spec, which the env, the CLI, the
    harness and the benchmarks all call.

    * None or ``"default"``: the embedded default (the small Doom world shipped under ``world_model/assets``);
    * an :class:`InteractiveWorld` (returned as is) or a zero-argument factory returning one;
    * a bundle folder (``world.json``), or a LingBot-World release root (its ``lingbot_world_fast/`` student);
    * a registered preset name whose weights ship with the package;
    * ``"doom-untrained"``: the Doom architecture with random weights (pipeline and speed only; warns).

    For a release root only: ``size`` ``(height, width)`` (default the preset's first size), ``release_preset``
    (a preset name or :class:`~world_model.checkpoints.Preset` of the Fast layout, default ``"lingbot-world-fast"``;
    lets tests and re-trained students of another shape use the same path) and ``text_encoder_kwargs`` (for the
    umT5 loader, e.g. ``{"config": ...}``). Giving them for anything else raises ``ValueError``.
    """
    release_only = {"release_preset": release_preset, "text_encoder_kwargs": text_encoder_kwargs}
    release_only = [k for k, v in release_only.items() if v is not None]
    if release_only and not _is_release_folder(model):
        raise ValueError(f"{release_only} apply to a LingBot-World release root only; model={model!r:.80} is not one")
    if isinstance(model, InteractiveWorld):
        return model
    if callable(model):
        return model()
    from world_model import doom

    if model == doom.UNTRAINED_NAME:
        import warnings

        warnings.warn(
            f"{doom.UNTRAINED_NAME!r}: the Doom world architecture with RANDOM weights. It runs at the real model's "
            "speed but its frames are noise; it exists to try the pipeline before trained weights ship.",
            stacklevel=2,
        )
        world = doom.build_world(batch_size, seed, device, dtype)
        world.notes = {"trained": False}
        return world
    if model is None or model == DEFAULT_NAME:
        if not (DEFAULT_BUNDLE / "world.json").exists():
            raise WorldNotAvailableError(
                "the embedded default world (the project's small ViZDoom model) is not trained and shipped yet: "
                f"nothing at {DEFAULT_BUNDLE}. Pass model='doom-untrained' (its architecture with random weights: "
                "runs offline, shows noise), model=<bundle folder> or model=<LingBot-World release root>"
            )
        return _load_bundle(DEFAULT_BUNDLE, device, dtype, batch_size, seed)
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "world.json").exists():
            return _load_bundle(path, device, dtype, batch_size, seed)
        from world_model.checkpoints.loading import is_release_root

        if is_release_root(path):
            return _load_release(path, device, dtype, batch_size, seed, size, release_preset, text_encoder_kwargs)
        raise ValueError(f"{path} is neither a world bundle (world.json) nor a LingBot-World release root")
    if path.exists():
        raise ValueError(f"{path} is a file; pass a bundle folder or a release root folder")
    from world_model.checkpoints import get_preset

    try:
        preset = get_preset(str(model))
    except KeyError:
        raise WorldNotAvailableError(
            f"{model!r} is not a folder here nor a known preset name (for random weights that run offline use "
            "'doom-untrained')"
        ) from None
    bundle = DEFAULT_BUNDLE.parent / preset.name
    if (bundle / "world.json").exists():
        return _load_bundle(bundle, device, dtype, batch_size, seed)
    raise WorldNotAvailableError(
        f"preset {preset.name!r} has no weights in this package: download the release and pass its root folder"
    )
