"""LingBotWorld-v0 at LingBot size on one GPU, end to end, from a release root on disk.

Why: every earlier number timed a part (the DiT alone in ``dit_stream``, the VAE in ``vae_decode``, the env with a
small random world in ``env_throughput``). This one times what a user of the full-size model gets: the env made
with ``gym.make("LingBotWorld-v0", model=<release root>)``, loaded by ``load_world`` -> ``load_release`` from
shards on disk, then ``reset(options={"image", "prompt"})`` and ``step()`` calls, all in one process.

The root is a random-weight release in the exact official layout (``world_model.checkpoints.random_release``:
``lingbot_world_fast/`` with 16 ``model-0000k-of-00016.safetensors`` shards + index + config.json,
``Wan2.1_VAE.pth``, ``models_t5_umt5-xxl-enc-bf16.pth``, ``google/umt5-xxl/``), built once and reused while its
marker (marked complete only after the last file) matches. Speed does not depend on the values, only on shapes.

What is timed (host wall clock; every call returns host uint8 frames, so the GPU is synchronised):

* ``load_s``: making the env (every shard read and converted, VAE, umT5, tokenizer);
* ``reset_ms``: the start image VAE-encoded, the prompt through umT5, the stream primed (cross-attention K/V),
  latent frame 0 decoded; ``first_step_ms``: the first chunk (3 latent frames, 8 new video frames in Fast's
  layout) generated and decoded; ``first_frame_latency_ms`` = the two together, image in -> first generated frame;
* ``--warmup`` untimed steps (they fill the rolling KV window), then ``--steps`` timed ones: p50 / p95 / mean per
  chunk (``step_ms``, split into ``generate_ms`` (DiT: 4 steps + the cache pass) and ``decode_ms``), video
  frames/s (12 frames per chunk), real-time factor against the model's 16 fps;
* GPU memory: allocated after the load, peak of the load, peak of reset + steps, reserved.

Memory at LingBot size (480x832), estimated from the parts (not yet measured together): DiT 34.5 GiB bf16,
umT5-XXL 10.6 GiB, Wan VAE 0.5 GiB + its fp32 stream state ~3.5 GiB, each KV-cache slot (one latent frame:
K + V + rotated K [40 layers, 1560 tokens, 40 heads, 128]) 1.79 GiB. The Fast preset's global cache preallocates
1024 frames (1.8 TiB), so the default is a rolling cache of ``--window 6`` frames + ``--sink 1`` (12.5 GiB);
``--cache global`` preallocates exactly the frames the run writes (1.79 GiB x 3 x (1 + warmup + steps): only
short runs fit). With the DiT pass's ~13 GiB of transients (``dit_stream``) the default peaks near 75 GiB of the
H100's 79: tight. A run that runs out writes its JSON anyway (``results.error``, ``results.phase``, the steps
done) and exits 1; the levers are ``--vae-dtype bf16`` (the fp32 decoder chunk is ~12 GiB of transients),
``--text-encoder-device cpu`` (umT5 stays in host memory; it runs once per new prompt, so reset gets slower) and
``--window 3 --sink 0``. Each is recorded in the JSON.

Model and decoder flags:

* ``--shape lingbot`` (18.54B DiT, the release) | ``wan-1.3b`` (the Wan2.1-1.3B block shape with LingBot's I2V input
  and camera layers, 1.71B: the published real-time results are at this size) | ``tiny`` (CPU smoke test);
* ``--decoder wan`` (the full Wan2.1 VAE decoder the release loads, as the env runs it) | ``light`` (the project's
  TAEHV-style light decoder, random weights of ``--light-widths``: no trained one exists for this model, so this
  measures what one would cost; it is swapped in through a world factory, still timed through the env).

On the GPU box (no network; torch, transformers, tokenizers, safetensors are there, gymnasium is not: carry the
gymnasium, farama-notifications and cloudpickle wheels in ``.whl``; 64 GiB disk; 10 minutes per call). The 1.3B
shape first (a ~15 GB root, about 2-3 minutes in all), then LingBot size in a call of its own (a ~49 GB root:
about 1-1.5 minutes to write from CUDA-generated values at the disk's ~1.4 GB/s, ~0.5 min to load, ~3 s per
step: about 5-6 minutes in all; these are estimates from the parts, not a measured run)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True GIT_COMMIT=<hash>
    python3 -m benchmarks.env_full_size --shape wan-1.3b --out "$OUT/env_full_size_1.3b_h100.json"
    python3 -m benchmarks.env_full_size --shape lingbot --max-run-s 240 --out "$OUT/env_full_size_lingbot_h100.json"

The LingBot root fits the disk once: in one call, delete the 1.3B root first
(``rm -rf ~/.cache/lingbot-realtime/random-release``). Here::

    python -m benchmarks.env_full_size --tiny --device cpu           # seconds: the whole path at a tiny shape
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.common import write_result

DEFAULT_ROOT = "~/.cache/lingbot-realtime/random-release"
DEFAULT_PROMPT = "the camera moving forward slowly through an ancient stone city street at sunset"
GIB = 2**30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from world_model.checkpoints.random_release import SHAPES

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.env_full_size",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = ap.add_argument_group("model and release root")
    model.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="lingbot",
        help="DiT / VAE / umT5 shapes of the random release: "
        + "; ".join(f"{k}: {v.description}" for k, v in SHAPES.items()),
    )
    model.add_argument("--tiny", action="store_true", help="= --shape tiny at 32x48 with few steps (CPU smoke run)")
    model.add_argument("--root", default=None, help=f"release root (default {DEFAULT_ROOT}/<shape>-<dtype>-s<seed>)")
    model.add_argument("--release-dtype", choices=("bf16", "fp32"), default="bf16", help="dtype of the DiT shards")
    model.add_argument("--seed", type=int, default=0, help="seed of the random weights and of the env")
    model.add_argument("--rebuild", action="store_true", help="write the root again even if its marker matches")
    model.add_argument("--build-only", action="store_true", help="build (or check) the root and stop")
    run = ap.add_argument_group("env")
    run.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    run.add_argument("--dtype", default=None, help="DiT dtype (default bf16 on CUDA, fp32 on CPU)")
    run.add_argument("--decoder", choices=("wan", "light"), default="wan", help="full Wan VAE decode or light one")
    run.add_argument("--light-widths", default="256,128,64,64", help="light decoder stage widths")
    run.add_argument("--light-blocks", type=int, default=3, help="light decoder MemBlocks per stage")
    run.add_argument(
        "--vae-dtype", choices=("env", "bf16", "fp32"), default="env", help="VAE dtype (env: as loaded, fp32)"
    )
    run.add_argument(
        "--text-encoder-device", choices=("same", "cpu"), default="same", help="where umT5 runs (cpu frees its VRAM)"
    )
    run.add_argument("--height", type=int, default=None, help="frame height (default the preset's: 480)")
    run.add_argument("--width", type=int, default=None, help="frame width (default the preset's: 832)")
    run.add_argument("--cache", choices=("rolling", "global"), default="rolling", help="KV cache kind")
    run.add_argument("--window", type=int, default=6, help="rolling window, latent frames (>= the 3-frame chunk)")
    run.add_argument("--sink", type=int, default=1, help="rolling cache sink frames")
    run.add_argument("--compile", action="store_true", help="WanDiT.compile() before the first reset")
    run.add_argument(
        "--overlap", action="store_true", help="run each step's cache pass beside its decode (a second CUDA stream)"
    )
    run.add_argument("--prompt", default=DEFAULT_PROMPT)
    run.add_argument("--image", default=None, help="start image file (default: a synthetic gradient)")
    timing = ap.add_argument_group("timing")
    timing.add_argument("--steps", type=int, default=None, help="timed step() calls (default 50; 6 with --tiny)")
    timing.add_argument("--warmup", type=int, default=None, help="untimed steps after the first (default 2; 1 tiny)")
    timing.add_argument(
        "--max-run-s", type=float, default=0.0, help="stop the timed steps after this many seconds (0: no limit)"
    )
    ap.add_argument("--out", default="benchmarks/results/env_full_size.json")
    args = ap.parse_args(argv)
    if args.tiny:
        args.shape = "tiny"
        args.height, args.width = args.height or 32, args.width or 48
        args.window = min(args.window, 3)
    args.steps = args.steps if args.steps is not None else (6 if args.shape == "tiny" else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.shape == "tiny" else 2)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.root is None:
        args.root = str(Path(DEFAULT_ROOT).expanduser() / f"{args.shape}-{args.release_dtype}-s{args.seed}")
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    return args


def _dtype(name: str | None, device: str) -> torch.dtype:
    from lingbot_env.resolve import parse_dtype

    return parse_dtype(name) or (torch.bfloat16 if device.startswith("cuda") else torch.float32)


def build_root(args: argparse.Namespace):
    """The cached random release root for ``args`` (written only when its marker does not match)."""
    from world_model.checkpoints.random_release import ensure_random_release

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.release_dtype]
    gen = args.device if args.device.startswith("cuda") else "cpu"
    return ensure_random_release(
        args.root,
        "lingbot-world-fast",
        dtype=dtype,
        seed=args.seed,
        shapes=args.shape,
        device=gen,
        rebuild=args.rebuild,
        log=lambda msg: print(msg, flush=True),
    )


def _cache_config(args: argparse.Namespace):
    from world_model.kv_cache import CacheConfig

    if args.cache == "rolling":
        return CacheConfig("rolling", window_frames=args.window, sink_frames=args.sink)
    # Fast's chunks are 3 latent frames; allocate exactly the frames this run writes (first + warmup + timed).
    return CacheConfig("global", max_frames=3 * (1 + args.warmup + args.steps))


def start_image(args: argparse.Namespace, height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: the ``--image`` file, else a gradient with a few bars (not flat, so the VAE and
    the text of the timing are the same work as for a photo)."""
    if args.image:
        from lingbot_env.images import prepare_image

        return prepare_image(args.image, height, width)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x // 16 % 2) * 160 + 48], -1)
    return img.astype(np.uint8)


def _tweaked_world(world, args: argparse.Namespace):
    """The loaded world with the ``--decoder light`` / ``--vae-dtype`` / ``--text-encoder-device`` changes."""
    from world_model.tiny import randomize_
    from world_model.vae import LightDecoder, LightDecoderConfig
    from world_model.world import InteractiveWorld

    device, notes = world.device, dict(world.notes)
    if args.vae_dtype != "env":
        world.encoder.to(_dtype(args.vae_dtype, "cuda"))
        notes["vae_dtype"] = args.vae_dtype
    decoder = world.decoder
    if args.decoder == "light":
        widths = tuple(int(w) for w in args.light_widths.split(","))
        cfg = LightDecoderConfig(widths=widths, blocks_per_stage=args.light_blocks)
        decoder = randomize_(LightDecoder(cfg), std=0.05, seed=args.seed).to(device, world.dit.dtype).eval()
        del world.encoder.decoder, world.encoder.conv2  # the Wan decoder half is not used (as in a light bundle)
        notes["decoder"] = "light (random weights)"
    if args.text_encoder_device == "cpu":
        world.text_encoder.model.to("cpu")
        notes["text_encoder_device"] = "cpu"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    out = InteractiveWorld(world.dit, world.encoder, decoder, world.text_encoder, world.spec, 1, args.seed)
    out.start_image, out.notes = None, notes
    return out


def make_env(args: argparse.Namespace, release):
    """``gym.make("LingBotWorld-v0")`` on the root: by its path (the user's path) when nothing is changed, else
    through a world factory that loads the same way and then applies the flags."""
    import gymnasium as gym

    import lingbot_env  # noqa: F401  (registers LingBotWorld-v0)
    from world_model.bundle import load_world
    from world_model.checkpoints.random_release import release_preset

    preset = release_preset("lingbot-world-fast", args.shape, cache=_cache_config(args))
    size = (args.height or preset.sizes[0][0], args.width or preset.sizes[0][1])
    dtype = _dtype(args.dtype, args.device)  # the DiT's, and umT5's (bf16 on CUDA, as the loader's default)
    kw = {"size": size, "release_preset": preset, "text_encoder_kwargs": release.text_encoder_kwargs(dtype=dtype)}
    common = dict(prompt=args.prompt, timing_info=True, action_clip="clip")
    if args.decoder == "wan" and args.vae_dtype == "env" and args.text_encoder_device == "same":
        return gym.make(
            "LingBotWorld-v0", model=str(release.root), device=args.device, dtype=dtype, model_kwargs=kw, **common
        )

    def factory():
        return _tweaked_world(load_world(str(release.root), device=args.device, dtype=dtype, **kw), args)

    return gym.make("LingBotWorld-v0", model=factory, **common)


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        f"{prefix}_p50": statistics.median(values),
        f"{prefix}_p95": float(np.percentile(values, 95)),
        f"{prefix}_mean": statistics.fmean(values),
        f"{prefix}_min": min(values),
        f"{prefix}_max": max(values),
    }


def _gpu_mem(cuda: bool, out: dict[str, Any], key: str) -> None:
    if cuda:
        out[key] = torch.cuda.max_memory_allocated() / GIB


def bench(args: argparse.Namespace, release, out: dict[str, Any]) -> dict[str, Any]:
    """Load, reset and step the env, filling ``out`` as it goes (so a run that dies, e.g. out of GPU memory,
    still reports how far it got: ``out["phase"]``); -> :func:`describe_world` of the world that ran."""
    from benchmarks.env_throughput import describe_world

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out["phase"] = "load"
    t = time.perf_counter()
    env = make_env(args, release)
    out["load_s"] = time.perf_counter() - t
    world = env.unwrapped.world
    if args.compile:
        world.dit.compile()
    world.overlap_cache_pass = args.overlap
    if cuda:
        out["gpu_mem_after_load_gib"] = torch.cuda.memory_allocated() / GIB
        _gpu_mem(cuda, out, "peak_gpu_mem_load_gib")
        torch.cuda.reset_peak_memory_stats()
    print(f"env made in {out['load_s']:.1f} s" + (f", {out['gpu_mem_after_load_gib']:.1f} GiB" if cuda else ""))
    shape = describe_world(world)
    out["world"] = shape
    out["frames_per_step"], out["model_fps"] = world.spec.frames_per_step, world.spec.fps
    rng = np.random.default_rng(args.seed)
    actions = rng.uniform([0, 0, 0, 0, -1, -1], 1, (1 + args.warmup + args.steps, 6)).astype(np.float32)
    image = start_image(args, world.spec.height, world.spec.width)

    out["phase"] = "reset"
    t = time.perf_counter()
    env.reset(seed=args.seed, options={"image": image, "prompt": args.prompt})
    out["reset_ms"] = (time.perf_counter() - t) * 1e3
    out["kv_cache_gib"] = world.generator.cache.nbytes / GIB
    out["phase"] = "first step"
    t = time.perf_counter()
    info = env.step(actions[0])[4]
    out["first_step_ms"] = (time.perf_counter() - t) * 1e3
    out["first_step_frames"] = int(info["frames"].shape[0])
    out["first_frame_latency_ms"] = out["reset_ms"] + out["first_step_ms"]
    print(f"reset {out['reset_ms']:.0f} ms, first chunk {out['first_step_ms']:.0f} ms", flush=True)
    out["phase"] = "warmup steps"
    out["warmup_step_ms"] = warm = []
    for a in actions[1 : 1 + args.warmup]:
        t = time.perf_counter()
        env.step(a)
        warm.append((time.perf_counter() - t) * 1e3)
    out["phase"] = "timed steps"
    out["raw_step_ms"], out["raw_generate_ms"], out["raw_decode_ms"], out["raw_frames"] = [], [], [], []
    t_run = time.perf_counter()
    for i, a in enumerate(actions[1 + args.warmup :]):
        t = time.perf_counter()
        info = env.step(a)[4]
        out["raw_step_ms"].append((time.perf_counter() - t) * 1e3)
        out["raw_generate_ms"].append(float(info["generate_ms"]))
        out["raw_decode_ms"].append(float(info["decode_ms"]))
        out["raw_frames"].append(int(info["frames"].shape[0]))
        out["run_s"] = time.perf_counter() - t_run
        if (i + 1) % 10 == 0:
            print(f"  step {i + 1}/{args.steps}: p50 {statistics.median(out['raw_step_ms']):.0f} ms", flush=True)
        if args.max_run_s and out["run_s"] > args.max_run_s:
            print(f"  --max-run-s {args.max_run_s:g} reached after {i + 1} timed steps", flush=True)
            break
    out["phase"] = "done"
    _gpu_mem(cuda, out, "peak_gpu_mem_run_gib")
    if cuda:
        out["peak_gpu_mem_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    env.close()
    return shape


def summarise(args: argparse.Namespace, out: dict[str, Any]) -> dict[str, Any]:
    """The JSON's ``results``: percentiles and rates from the raw lists (whatever part of the run there is)."""
    steps, frames = out.get("raw_step_ms", []), out.get("raw_frames", [])
    res = {k: v for k, v in out.items() if k not in ("world", "raw_generate_ms", "raw_decode_ms", "raw_frames")}
    res.update(steps_timed=len(steps), steps_requested=args.steps, stopped_early=len(steps) < args.steps)
    res.update(_stats("step_ms", steps))
    res.update(_stats("generate_ms", out.get("raw_generate_ms", [])))
    res.update(_stats("decode_ms", out.get("raw_decode_ms", [])))
    if steps:
        res["video_frames_per_s"] = sum(frames) / out["run_s"]
        res["video_frames_per_s_from_p50"] = out["frames_per_step"] * 1e3 / statistics.median(steps)
        res["realtime_factor"] = res["video_frames_per_s"] / out["model_fps"]
    peaks = [out[k] for k in ("peak_gpu_mem_load_gib", "peak_gpu_mem_run_gib") if k in out]
    res["peak_gpu_mem_gib"] = max(peaks) if peaks else None
    return res


OOM_HINT = (
    "out of GPU memory: free some with --vae-dtype bf16 (the Wan decoder's fp32 chunk is the largest transient), "
    "--text-encoder-device cpu (umT5-XXL, 10.6 GiB), --window 3 --sink 0 (1.79 GiB per KV frame at 480x832)"
)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    from world_model.checkpoints.random_release import get_shapes

    t0 = time.time()
    release = build_root(args)
    build = {
        "root": str(release.root),
        "reused": release.reused,
        "build_seconds": release.build_seconds,
        "total_bytes": release.total_bytes,
        "generated_on": release.marker.get("generated_on"),
        "dtype_on_disk": release.marker["key"]["dtype"],
    }
    print(("reused" if release.reused else "built") + f" {release.root} ({release.total_bytes / 1e9:.2f} GB)")
    if args.build_only:
        return None
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    out: dict[str, Any] = {}
    error = None
    try:
        bench(args, release, out)
    except torch.cuda.OutOfMemoryError as exc:
        error = f"{OOM_HINT} (during {out.get('phase')}: {str(exc).splitlines()[0]})"
        cuda = args.device.startswith("cuda") and torch.cuda.is_available()
        _gpu_mem(cuda, out, "peak_gpu_mem_run_gib" if "load_s" in out else "peak_gpu_mem_load_gib")
    results = summarise(args, out)
    results.update(build=build, wall_s=time.time() - t0)
    if error:
        results["error"] = error
    shapes = get_shapes(args.shape)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    config.update(
        model_shape=args.shape,
        model_shape_description=shapes.description,
        lingbot_size=args.shape == "lingbot",
        decoder_description={"wan": "full Wan2.1 VAE decoder (the release's)", "light": "light decoder, random"}[
            args.decoder
        ],
        kv_cache=dataclasses.asdict(_cache_config(args)),
        world=out.get("world"),
    )
    record = write_result(args.out, "env_full_size", args.device, config, results)
    if error:
        print("FAILED:", error, "\nwrote", args.out)
        raise SystemExit(1)
    r = results
    print(
        f"{args.shape} {out['world']['resolution']} decoder={args.decoder}: reset {r['reset_ms']:.0f} ms, first "
        f"chunk {r['first_step_ms']:.0f} ms; step p50 {r['step_ms_p50']:.0f} ms p95 {r['step_ms_p95']:.0f} ms "
        f"(DiT {r['generate_ms_p50']:.0f}, decode {r['decode_ms_p50']:.0f}); {r['video_frames_per_s']:.2f} video "
        "frames/s" + (f"; peak {r['peak_gpu_mem_gib']:.1f} GiB" if r["peak_gpu_mem_gib"] is not None else "")
    )
    print("wrote", args.out)
    return record


if __name__ == "__main__":
    main()
