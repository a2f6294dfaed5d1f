"""Release roots with random weights in the exact official layout, so the full-size loaders can be run (and timed)
on a machine that cannot download a real LingBot-World release.

Why: the GPU box has no network, yet the question "how fast is ``LingBotWorld-v0`` at LingBot size on one GPU"
is only answered honestly through the code path a real download takes: :func:`~world_model.checkpoints.release.
load_release` (via :func:`~world_model.bundle.load_world`) reading shard files, the index, ``Wan2.1_VAE.pth`` and
the umT5 ``.pth`` + tokenizer folder. :func:`write_random_release` writes exactly those files
(docs/official_models.md §1), e.g. for ``lingbot-world-fast``::

    <root>/lingbot_world_fast/config.json                                   the 13 official keys, nothing else
    <root>/lingbot_world_fast/model-00001-of-00016.safetensors ... -00016    16 shards of about equal bytes
    <root>/lingbot_world_fast/diffusion_pytorch_model.safetensors.index.json {"metadata", "weight_map"}
    <root>/Wan2.1_VAE.pth                                                   torch.save state dict, 194 tensors, fp32
    <root>/models_t5_umt5-xxl-enc-bf16.pth                                  torch.save state dict, 242 tensors, bf16
    <root>/google/umt5-xxl/                                                 tokenizer files (a stand-in, see below)
    <root>/random_release.json                                              marker, written last (not official)

Base presets get ``high_noise_model/`` + ``low_noise_model/`` with 8 ``diffusion_pytorch_model-0000k-of-00008``
shards each. Where this differs from a download, and why:

* the shards hold ``dtype`` (default bf16), not the official fp32: fp32 at LingBot size is 74 GB, which does not fit
  the GPU box's 64 GiB disk beside the 11.4 GB umT5; the loader converts either to the model's dtype the same way
  (pass ``dtype=torch.float32`` for the official bytes);
* the tokenizer is a word-level stand-in saved as ``tokenizer.json`` (the real one is a 256k SentencePiece model
  that cannot be generated); it has umT5's special ids (pad 0, EOS 1, unk 2), and the DiT pads the text to 512
  tokens anyway, so only the (tiny, once per prompt) umT5 cost depends on the token count;
* no ``SHA256SUMS`` (a download has none either), so the loader checks every tensor finite, as for a download;
* ``random_release.json`` marks the root as a random build: written with ``"complete": false`` before the first
  file and rewritten with ``"complete": true`` after the last, so a build cut off (a 10-minute call limit) is
  rebuilt by :func:`ensure_random_release` instead of reused. The loaders never read it.

Memory: the DiT is streamed, one shard of tensors generated, written and freed at a time (about 2.3 GB at LingBot
size in bf16), never the whole 37 GB. The two ``.pth`` files are ``torch.save`` pickles, a format that needs the
whole state dict at once: 0.5 GB for the VAE, 11.4 GB for umT5-XXL.

Values: every tensor is drawn from its own generator, seeded by ``seed`` and the tensor's name, so a tensor can be
regenerated alone (:func:`random_tensor`, :func:`random_dit_state`) whatever the shard plan. Scales keep a
40-layer forward finite in bf16: weights ~ N(0, 1/fan_in) (unit gain), biases ~ N(0, 0.02^2), norm gains
~ 1 + N(0, 0.02^2), modulations ~ N(0, 1/d) (Wan's), the camera scale/shift layers at a tenth of unit gain (they
multiply the residual stream once per block), and nothing zero (Wan's zero head would make every frame equal).
Values generated on CUDA differ from values generated on the CPU (other generators); the marker records where.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from world_model.checkpoints.loading import RELEASE_FOLDERS
from world_model.checkpoints.presets import Preset, get_preset
from world_model.checkpoints.saving import DIFFUSERS_LAYOUT, FAST_LAYOUT, ShardLayout, fsync_file, plan_shards
from world_model.checkpoints.text_encoders import UMT5_XXL
from world_model.config import WanDiTConfig
from world_model.kv_cache import CacheConfig

MARKER = "random_release.json"
FORMAT = "lingbot-realtime-random-release"
VERSION = 1
DIFFUSERS_VERSION = "0.33.0"
# Keys of the official config.json (docs/official_models.md §1), in the file's order.
OFFICIAL_CONFIG_KEYS = (
    "_class_name",
    "_diffusers_version",
    "dim",
    "eps",
    "ffn_dim",
    "freq_dim",
    "in_dim",
    "model_type",
    "num_heads",
    "num_layers",
    "out_dim",
    "text_len",
)
# Release folder -> (file names, shard count) of the official releases (docs/official_models.md §1).
OFFICIAL_SHARDS: dict[str, tuple[ShardLayout, int]] = {
    "lingbot_world_fast": (FAST_LAYOUT, 16),
    "high_noise_model": (DIFFUSERS_LAYOUT, 8),
    "low_noise_model": (DIFFUSERS_LAYOUT, 8),
}
PRESET_ALIASES = {
    "fast": "lingbot-world-fast",
    "base-cam": "lingbot-world-base-cam",
    "base-act": "lingbot-world-base-act",
    "wan2.2": "wan2.2-i2v-a14b",
}
# The stand-in tokenizer's words (ids 3..); anything else is <unk> (2). Ids stay below every shape's vocab_size.
_WORDS = (
    "a the of and in on to with at from through into toward under over near along across is are walking moving "
    "camera view forward left right slowly city street forest room door road river mountain sky light dark old "
    "stone red green blue golden sunset night rain snow ancient castle"
)
STAND_IN_WORDS = tuple(_WORDS.split())
DISK_MARGIN = 1 << 30  # bytes left free on the disk after a build


class ReleaseBuildError(RuntimeError):
    """A random release cannot be written there (not enough disk, a folder that is not a random release...)."""


@dataclass(frozen=True)
class ReleaseShapes:
    """Sizes of the parts of a random release.

    ``dit``: one expert's shape (its ``control_dim`` is replaced by the preset's, so one shape serves Cam, Act and
    plain Wan presets). ``vae_dim``: the Wan2.1 VAE's base width (96 = the released VAE). ``umt5``: transformers
    ``UMT5Config`` fields (umT5-XXL by default); its ``d_model`` must be the DiT's ``text_dim``, which the presets
    fix at 4096, umT5-XXL's width.
    """

    name: str
    dit: WanDiTConfig
    vae_dim: int = 96
    umt5: Mapping[str, Any] = field(default_factory=lambda: dict(UMT5_XXL))
    description: str = ""

    def __post_init__(self) -> None:
        if int(self.umt5["d_model"]) != self.dit.text_dim:
            raise ValueError(f"shapes {self.name!r}: umT5 d_model {self.umt5['d_model']} != DiT text_dim")
        if int(self.umt5["vocab_size"]) < 3 + len(STAND_IN_WORDS):
            raise ValueError(f"shapes {self.name!r}: umT5 vocab_size must hold the {3 + len(STAND_IN_WORDS)} tokens")

    @property
    def is_xxl(self) -> bool:
        return dict(self.umt5) == dict(UMT5_XXL)

    def key(self) -> dict[str, Any]:
        """What identifies the shapes in the marker (a cached root is reused only for the same key)."""
        dit = {k: v for k, v in dataclasses.asdict(self.dit).items() if k != "extra"}
        dit["patch_size"] = list(self.dit.patch_size)
        return {"name": self.name, "dit": dit, "vae_dim": self.vae_dim, "umt5": dict(self.umt5)}


SHAPES: dict[str, ReleaseShapes] = {
    s.name: s
    for s in (
        ReleaseShapes(
            "lingbot",
            WanDiTConfig(control_dim=6),
            description="LingBot-World size: the 18.54B DiT (1421 tensors), the Wan2.1 VAE, umT5-XXL",
        ),
        ReleaseShapes(
            "wan-1.3b",
            WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, control_dim=6),
            description=(
                "the Wan2.1-1.3B block shape (d 1536, f 8960, 12 heads, 30 layers) with LingBot's I2V input (36 "
                "channels) and camera layers, so it streams through the same Fast path; full VAE and umT5-XXL"
            ),
        ),
        ReleaseShapes(
            "tiny",
            WanDiTConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_len=16, control_dim=6),
            vae_dim=8,
            umt5=dict(
                UMT5_XXL, vocab_size=64, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_max_distance=20
            ),
            description="a CPU smoke-test size (seconds): 2-layer DiT of width 64, VAE width 8, 2-layer umT5",
        ),
    )
}


def get_shapes(shapes: str | ReleaseShapes) -> ReleaseShapes:
    if isinstance(shapes, ReleaseShapes):
        return shapes
    try:
        return SHAPES[shapes]
    except KeyError:
        raise KeyError(f"unknown release shapes {shapes!r}; known: {sorted(SHAPES)}") from None


def resolve_preset(preset: str | Preset) -> Preset:
    """A preset by name or alias (``"fast"`` = ``lingbot-world-fast``), checked to have an official release layout."""
    p = get_preset(PRESET_ALIASES.get(preset, preset) if isinstance(preset, str) else preset)
    bad = [e.subfolder for e in p.experts if e.subfolder not in OFFICIAL_SHARDS]
    if bad or p.text_encoder != "umt5-xxl" or not {"vae", "text_encoder", "tokenizer"} <= set(p.files):
        raise ValueError(
            f"preset {p.name!r} has no official release layout to imitate (expert folders {bad or 'ok'}, text "
            f"encoder {p.text_encoder!r}); use one whose experts live in {sorted(OFFICIAL_SHARDS)}"
        )
    return p


def dit_config(preset: str | Preset, shapes: str | ReleaseShapes) -> WanDiTConfig:
    """The DiT shape a random release of ``preset`` at ``shapes`` has: the shapes' sizes, the preset's control."""
    p, s = resolve_preset(preset), get_shapes(shapes)
    return dataclasses.replace(s.dit, control_dim=p.config.control_dim, in_dim=p.config.in_dim)


def release_preset(
    preset: str | Preset = "lingbot-world-fast",
    shapes: str | ReleaseShapes = "lingbot",
    cache: CacheConfig | None = None,
) -> Preset:
    """The :class:`Preset` that loads a random release of ``preset`` at ``shapes`` (``load_world(root,
    release_preset=...)``): the preset with the shapes' DiT and, when given, another KV-cache config (the Fast
    preset's global cache preallocates 1024 latent frames, 1.9 GB each at LingBot size and 480x832)."""
    p, s = resolve_preset(preset), get_shapes(shapes)
    cfg = dit_config(p, s)
    sampling = p.sampling
    if cache is not None:
        if sampling.stream is None:
            raise ValueError(f"preset {p.name!r} does not stream: it has no KV cache to configure")
        sampling = dataclasses.replace(sampling, stream=dataclasses.replace(sampling.stream, cache=cache))
    same = cfg == p.config and cache is None
    return dataclasses.replace(
        p,
        name=p.name if same else f"{p.name}@random-{s.name}",
        experts=tuple(dataclasses.replace(e, config=cfg) for e in p.experts),
        sampling=sampling,
        files=dict(p.files),
    )


def text_encoder_kwargs(shapes: str | ReleaseShapes, **extra: Any) -> dict[str, Any]:
    """``text_encoder_kwargs`` for :func:`~world_model.checkpoints.release.load_release` / ``load_world``: the umT5
    file records no config, so a shape other than XXL must be named to the loader."""
    s = get_shapes(shapes)
    if s.is_xxl:
        return dict(extra)
    from world_model.checkpoints.text_encoders import umt5_config

    return {"config": umt5_config(**s.umt5), **extra}


def official_config_json(cfg: WanDiTConfig) -> dict[str, Any]:
    """``config.json`` exactly as the releases have it: the official keys only (no control type, no text width:
    the loader reads those from the tensors)."""
    return {
        "_class_name": "WanModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "dim": cfg.dim,
        "eps": cfg.eps,
        "ffn_dim": cfg.ffn_dim,
        "freq_dim": cfg.freq_dim,
        "in_dim": cfg.in_dim,
        "model_type": "i2v" if cfg.cond_dim else "t2v",
        "num_heads": cfg.num_heads,
        "num_layers": cfg.num_layers,
        "out_dim": cfg.out_dim,
        "text_len": cfg.text_len,
    }


# -- tensor names and shapes (no allocation) ----------------------------------------------------------------------
def dit_tensor_specs(cfg: WanDiTConfig) -> list[tuple[str, tuple[int, ...]]]:
    """``(official name, shape)`` of every DiT tensor, in state-dict order (blocks in order), read on ``meta``."""
    from world_model.dit import WanDiT

    with torch.device("meta"):
        model = WanDiT(cfg)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def vae_tensor_specs(dim: int = 96) -> list[tuple[str, tuple[int, ...]]]:
    """``(official name, shape)`` of every tensor of ``Wan2.1_VAE.pth`` at base width ``dim`` (194 tensors)."""
    from world_model.vae import VAEConfig, WanVAE

    with torch.device("meta"):
        model = WanVAE(VAEConfig(dim=dim))
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def umt5_tensor_specs(umt5: Mapping[str, Any] = UMT5_XXL) -> list[tuple[str, tuple[int, ...]]]:
    """``(Wan name, shape)`` of every tensor of ``models_t5_umt5-xxl-enc-bf16.pth`` (docs/official_models.md §12):
    the token embedding, per layer two RMS-norm gains, q/k/v/o (no biases), the gated FFN and its own relative
    position bias [buckets, heads], then the final norm. 242 tensors at XXL size."""
    d, h, kv, f = (int(umt5[k]) for k in ("d_model", "num_heads", "d_kv", "d_ff"))
    inner = h * kv
    specs = [("token_embedding.weight", (int(umt5["vocab_size"]), d))]
    for i in range(int(umt5["num_layers"])):
        b = f"blocks.{i}."
        specs += [
            (b + "norm1.weight", (d,)),
            (b + "attn.q.weight", (inner, d)),
            (b + "attn.k.weight", (inner, d)),
            (b + "attn.v.weight", (inner, d)),
            (b + "attn.o.weight", (d, inner)),
            (b + "norm2.weight", (d,)),
            (b + "ffn.gate.0.weight", (f, d)),
            (b + "ffn.fc1.weight", (f, d)),
            (b + "ffn.fc2.weight", (d, f)),
            (b + "pos_embedding.embedding.weight", (int(umt5["relative_attention_num_buckets"]), h)),
        ]
    specs.append(("norm.weight", (d,)))
    return specs


# -- values -------------------------------------------------------------------------------------------------------
def _scale(name: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """``(mean, std)`` of a tensor's random values (see the module docstring for why)."""
    leaf = name.rsplit(".", 2)
    module = leaf[-2] if len(leaf) > 1 else ""
    if name.endswith("modulation"):
        return 0.0, shape[-1] ** -0.5
    if name.endswith(".gamma") or (name.endswith(".weight") and "norm" in module):
        return 1.0, 0.02
    if name.endswith(".bias"):
        return 0.0, 0.02
    if name == "token_embedding.weight" or name.endswith("pos_embedding.embedding.weight"):
        return 0.0, 1.0
    std = math.prod(shape[1:]) ** -0.5 if len(shape) > 1 else 0.02
    if module in ("cam_scale_layer", "cam_shift_layer"):
        std *= 0.1
    return 0.0, std


def _seed_for(seed: int, key: str) -> int:
    """One generator seed per tensor name: a tensor's values do not depend on the shard plan or the order."""
    return (int(seed) * 0x9E3779B1 + zlib.crc32(key.encode())) % (2**63 - 1)


def random_tensor(
    key: str,
    shape: tuple[int, ...],
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The random values ``[*shape]`` in ``dtype`` of tensor ``key`` (its official name; ``expert/name`` in a
    pair, ``vae/name`` and ``umt5/name`` for the other files): the same for the same (key, shape, seed, dtype,
    device type), whatever else is generated around it, so a test can regenerate any one tensor alone."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(_seed_for(seed, key))
    mean, std = _scale(key.rsplit("/", 1)[-1], tuple(shape))
    t = torch.randn(shape, generator=g, device=device, dtype=dtype)
    return t.mul_(std).add_(mean) if mean else t.mul_(std)


def _expert_key(preset: Preset, expert: str) -> str:
    return f"{expert}/" if preset.is_pair else ""


def random_dit_state(
    preset: str | Preset = "lingbot-world-fast",
    shapes: str | ReleaseShapes = "lingbot",
    *,
    expert: str = "model",
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of one expert of a random release, one tensor at a time, as :func:`write_random_release`
    writes them (regenerate to compare a loaded model without keeping the files' contents around)."""
    p = resolve_preset(preset)
    prefix = _expert_key(p, expert)
    for name, shape in dit_tensor_specs(dit_config(p, shapes)):
        yield name, random_tensor(prefix + name, shape, seed=seed, dtype=dtype, device=device)


# -- writing ------------------------------------------------------------------------------------------------------
@dataclass
class RandomRelease:
    """A random release on disk: where, what (its :class:`Preset` to load it with, :meth:`text_encoder_kwargs`),
    the marker's contents, and whether :func:`ensure_random_release` reused it."""

    root: Path
    preset: Preset
    shapes: ReleaseShapes
    marker: dict[str, Any]
    reused: bool = False

    @property
    def total_bytes(self) -> int:
        return int(self.marker["total_bytes"])

    @property
    def build_seconds(self) -> float:
        return float(self.marker["build_seconds"])

    def text_encoder_kwargs(self, **extra: Any) -> dict[str, Any]:
        return text_encoder_kwargs(self.shapes, **extra)


def _build_key(p: Preset, s: ReleaseShapes, dtype: torch.dtype, seed: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "preset": p.name,
        "shapes": s.key(),
        "dit_control_dim": dit_config(p, s).control_dim,
        "dtype": str(dtype).removeprefix("torch."),
        "seed": int(seed),
    }


def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker of a random release root (None when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key", {}).get("format") == FORMAT else None


def _files_intact(root: Path, marker: dict[str, Any]) -> bool:
    """Every recorded file there at its recorded size: catches a deleted or truncated file without hashing 49 GB."""
    files = marker.get("files") or {}
    return bool(files) and all((root / n).is_file() and (root / n).stat().st_size == b for n, b in files.items())


def estimate_bytes(
    preset: str | Preset = "lingbot-world-fast",
    shapes: str | ReleaseShapes = "lingbot",
    dtype: torch.dtype = torch.bfloat16,
) -> int:
    """Bytes a build writes (tensor data; headers and the tokenizer add a few MB)."""
    p, s = resolve_preset(preset), get_shapes(shapes)
    esize = torch.empty((), dtype=dtype).element_size()
    dit = sum(math.prod(sh) for _, sh in dit_tensor_specs(dit_config(p, s))) * esize * len(p.experts)
    vae = sum(math.prod(sh) for _, sh in vae_tensor_specs(s.vae_dim)) * 4
    t5 = sum(math.prod(sh) for _, sh in umt5_tensor_specs(s.umt5)) * 2
    return dit + vae + t5


def _owned_paths(root: Path, p: Preset, marker: dict[str, Any] | None) -> list[Path]:
    """What a (re)build replaces: the release folders, the shared files and what an earlier build recorded."""
    paths = {root / f for f in RELEASE_FOLDERS} | {root / f for f in p.files.values()} | {root / "google"}
    paths |= {root / Path(n).parts[0] for n in (marker or {}).get("files", {})}
    return sorted(paths)


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _write_marker(root: Path, marker: dict[str, Any]) -> None:
    tmp = root / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    fsync_file(tmp)
    os.replace(tmp, root / MARKER)


def write_stand_in_tokenizer(folder: str | Path) -> Path:
    """A word-level tokenizer saved like the ``google/umt5-xxl`` folder is read (``AutoTokenizer.from_pretrained``):
    umT5's special ids (``<pad>`` 0, ``</s>`` 1 appended to every prompt, ``<unk>`` 2), then
    :data:`STAND_IN_WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(STAND_IN_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    folder = Path(folder)
    fast.save_pretrained(str(folder))
    return folder


def _write_dit(
    folder: Path,
    cfg: WanDiTConfig,
    key_prefix: str,
    *,
    dtype: torch.dtype,
    seed: int,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, int]:
    """One expert folder, streamed: each shard's tensors are generated, written and freed before the next."""
    layout, num_shards = OFFICIAL_SHARDS[folder.name]
    folder.mkdir(parents=True)
    specs = dit_tensor_specs(cfg)
    shape_of = dict(specs)
    esize = torch.empty((), dtype=dtype).element_size()
    shards = plan_shards([(n, math.prod(s) * esize) for n, s in specs], num_shards=num_shards)
    weight_map: dict[str, str] = {}
    written: dict[str, int] = {}
    t0 = time.perf_counter()
    for k, names in enumerate(shards, start=1):
        fname = layout.shard_name(k, len(shards))
        tensors = {
            n: random_tensor(key_prefix + n, shape_of[n], seed=seed, dtype=dtype, device=device).cpu() for n in names
        }
        save_file(tensors, str(folder / fname), metadata={"format": "pt"})
        del tensors  # the only reference: this shard's host memory goes before the next shard is generated
        fsync_file(folder / fname)
        weight_map.update(dict.fromkeys(names, fname))
        written[fname] = (folder / fname).stat().st_size
        done = sum(written.values())
        log(f"  {folder.name}/{fname}: {done / 1e9:.2f} GB written, {done / 1e9 / (time.perf_counter() - t0):.2f} GB/s")
    total = sum(math.prod(shape_of[n]) * esize for n in weight_map)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / layout.index_name).write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(official_config_json(cfg), indent=2))
    for name in (layout.index_name, "config.json"):
        fsync_file(folder / name)
        written[name] = (folder / name).stat().st_size
    return written


def _write_pth(
    path: Path, specs, *, dtype: torch.dtype, seed: int, key_prefix: str, device: torch.device
) -> dict[str, int]:
    """A plain ``torch.save`` state dict (the official ``.pth`` format: it needs every tensor at once)."""
    state = {n: random_tensor(key_prefix + n, s, seed=seed, dtype=dtype, device=device).cpu() for n, s in specs}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    del state
    fsync_file(path)
    return {path.name: path.stat().st_size}


def write_random_release(
    root: str | Path,
    preset: str | Preset = "lingbot-world-fast",
    *,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    shapes: str | ReleaseShapes = "lingbot",
    device: torch.device | str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> RandomRelease:
    """Write a release root of ``preset`` with random weights in the official layout (see the module docstring).

    Args:
        root: the release root folder (created). A folder that is not empty and holds no marker is refused unless
            ``overwrite`` (a real download must not be overwritten by mistake); an earlier random build there is
            replaced.
        preset: ``"lingbot-world-fast"`` (alias ``"fast"``) or another preset with a release layout (Base: the
            expert pair).
        dtype: the DiT shards' dtype (official: fp32; default bf16, see the module docstring). The VAE is always
            fp32 and umT5 bf16, as released.
        seed: seeds every tensor (with its name).
        shapes: ``"lingbot"`` (release size), ``"wan-1.3b"``, ``"tiny"`` or a :class:`ReleaseShapes`.
        device: where values are generated (default CUDA when available: much faster than the CPU); they are
            written from the host.
        log: called with a progress line per file.
    Raises:
        ReleaseBuildError: the disk lacks the space (checked before anything is written), or ``root`` is foreign.
    """
    t0 = time.perf_counter()
    log = log or (lambda msg: None)
    p, s = resolve_preset(preset), get_shapes(shapes)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    root = Path(root).expanduser()
    old = read_marker(root)
    if root.is_dir() and any(root.iterdir()) and old is None and not overwrite:
        raise ReleaseBuildError(
            f"{root} is not empty and holds no {MARKER}: it is not a random release this code wrote (a real "
            "download?). Pick another folder or pass overwrite=True"
        )
    owned = _owned_paths(root, p, old)
    need = estimate_bytes(p, s, dtype)
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free + sum(_size_of(x) for x in owned)
    if free < need + DISK_MARGIN:
        raise ReleaseBuildError(
            f"{root}: a random {p.name} release at shapes {s.name!r} in {dtype} needs {need / 1e9:.1f} GB (+ "
            f"{DISK_MARGIN / 2**30:.0f} GiB margin) but only {free / 1e9:.1f} GB are free there. Use bf16 shards, "
            "smaller shapes or another disk"
        )
    root.mkdir(parents=True, exist_ok=True)
    # From here until the last line the root is ours but incomplete: a build cut off is rebuilt, never reused
    # (and, being marked, never mistaken for a foreign folder). The old file list is kept for that rebuild.
    key = _build_key(p, s, dtype, seed)
    _write_marker(root, {"key": key, "complete": False, "files": (old or {}).get("files", {})})
    for path in owned:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log(f"writing a random {p.name} release ({s.name}, {dtype}, {need / 1e9:.1f} GB) to {root} from {device}")

    files: dict[str, int] = {}
    cfg = dit_config(p, s)
    for e in p.experts:
        written = _write_dit(
            root / e.subfolder, cfg, _expert_key(p, e.name), dtype=dtype, seed=seed, device=device, log=log
        )
        files.update({f"{e.subfolder}/{n}": b for n, b in written.items()})
    vae = root / p.files["vae"]
    files.update(
        _write_pth(vae, vae_tensor_specs(s.vae_dim), dtype=torch.float32, seed=seed, key_prefix="vae/", device=device)
    )
    log(f"  {vae.name}: {files[vae.name] / 1e9:.2f} GB")
    t5 = root / p.files["text_encoder"]
    files.update(
        _write_pth(t5, umt5_tensor_specs(s.umt5), dtype=torch.bfloat16, seed=seed, key_prefix="umt5/", device=device)
    )
    log(f"  {t5.name}: {files[t5.name] / 1e9:.2f} GB")
    tok = write_stand_in_tokenizer(root / p.files["tokenizer"])
    files.update({f.relative_to(root).as_posix(): f.stat().st_size for f in sorted(tok.rglob("*")) if f.is_file()})

    marker = {
        "key": key,
        "complete": True,
        "description": "random weights in the official release layout (world_model.checkpoints.random_release)",
        "generated_on": device.type,
        "files": files,
        "total_bytes": sum(files.values()),
        "build_seconds": time.perf_counter() - t0,
        "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_marker(root, marker)  # last: "complete": true now means every file above is on disk, fsynced
    log(f"done in {marker['build_seconds']:.1f} s ({marker['total_bytes'] / 1e9:.2f} GB)")
    return RandomRelease(root, release_preset(p, s), s, marker)


def ensure_random_release(
    root: str | Path,
    preset: str | Preset = "lingbot-world-fast",
    *,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    shapes: str | ReleaseShapes = "lingbot",
    device: torch.device | str | None = None,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> RandomRelease:
    """:func:`write_random_release` unless ``root`` already holds a complete build of the same preset, shapes,
    dtype and seed with every recorded file at its recorded size (then ``reused`` is True). A build that was cut
    off (its marker still says incomplete) or damaged is written again; ``rebuild`` forces it."""
    p, s = resolve_preset(preset), get_shapes(shapes)
    root = Path(root).expanduser()
    marker = read_marker(root)
    if (
        not rebuild
        and marker is not None
        and marker.get("complete")
        and marker.get("key") == _build_key(p, s, dtype, seed)
        and _files_intact(root, marker)
    ):
        return RandomRelease(root, release_preset(p, s), s, marker, reused=True)
    return write_random_release(root, p, dtype=dtype, seed=seed, shapes=s, device=device, log=log)
