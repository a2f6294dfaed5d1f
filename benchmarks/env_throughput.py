"""LingBotWorld-v0 throughput: env steps per second and video frames per second, through the Gym API.

Measures what an agent or a player gets: ``env.step`` end to end (action checks, control maps, the streaming
DiT chunk, the streaming decoder, uint8 frames back on the host, camera pose, info). ``N = 1`` uses the single
env, ``N > 1`` the batched vector env (one model call for all N worlds). Weights are random (throughput does not
depend on them): the default shape is sized like the project's small Doom model (issue 8: 4:3, >= 128x96, a few
million DiT parameters, light decoder); every size is a flag. ``--model`` benchmarks a real model through
``world_model.bundle.load_world`` instead (the JSON config then records that model's shape and parameter counts,
``config.model_shape``, and leaves out the shape flags, which it ignores). Usage::

    python -m benchmarks.env_throughput --device cpu --threads 1,2                 # the single env on this CPU
    python -m benchmarks.env_throughput --device cuda --dtype bf16 --num-envs 1,16,64 \\
        --out benchmarks/results/env_throughput_h100.json
    python -m benchmarks.env_throughput --quick                                       # tiny smoke run

Timing: host wall clock around ``step`` (each step returns host uint8 frames, so the device is synchronised).
Results go to ``--out`` as JSON with device, commit and config (``benchmarks.common.write_result``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_result


def build_random_world(args: argparse.Namespace, batch_size: int):
    """An ``InteractiveWorld`` of random parts with the flags' shape, on ``args.device`` in ``args.dtype``."""
    from world_model.checkpoints.text_encoders import SmallTextEncoder, SmallTextEncoderConfig
    from world_model.config import WanDiTConfig
    from world_model.control import ActionControlConfig
    from world_model.dit import WanDiT
    from world_model.kv_cache import CacheConfig
    from world_model.sampling import FewStepSchedule
    from world_model.streaming import StreamConfig
    from world_model.vae import LightDecoder, LightDecoderConfig, VAEConfig, WanVAE
    from world_model.world import InteractiveWorld, WorldSpec

    torch.manual_seed(0)
    dtype = _dtype(args)
    text_cfg = SmallTextEncoderConfig(out_dim=args.text_dim, dim=args.text_dim, num_layers=1, num_heads=4)
    text = SmallTextEncoder(text_cfg).eval()  # runs once per reset, on the CPU
    cfg = WanDiTConfig(
        dim=args.dit_dim,
        ffn_dim=args.ffn_dim,
        num_heads=args.heads,
        num_layers=args.layers,
        in_dim=36,
        out_dim=16,
        text_dim=args.text_dim,
        text_len=args.text_len,
        control_dim=7 if args.control == "act" else 6,
    )
    dit = WanDiT(cfg)
    vae = WanVAE(VAEConfig(dim=args.vae_dim))
    widths = tuple(int(w) for w in args.decoder_widths.split(","))
    light = LightDecoder(LightDecoderConfig(widths=widths, blocks_per_stage=args.decoder_blocks))
    with torch.no_grad():
        for model, std in ((dit, 0.02), (vae, 0.05), (light, 0.05)):
            for p in model.parameters():
                p.normal_(0, std)
    dit, vae, light = (m.to(args.device, dtype).eval() for m in (dit, vae, light))
    if args.compile:
        dit.compile()
    schedule = FewStepSchedule(FewStepSchedule.self_forcing().timesteps[: args.denoise_steps])
    stream = StreamConfig(
        args.block_frames, 1, schedule, CacheConfig("rolling", args.window, args.sink)
    )  # first_block_frames=1: the image is written alone, so single rows can restart
    spec = WorldSpec(
        args.height,
        args.width,
        fps=17.5,
        control=ActionControlConfig(args.control, args.height, args.width),
        stream=stream,
    )
    world = InteractiveWorld(dit, vae, light, text, spec, batch_size=batch_size, seed=0)
    y, x = np.mgrid[0 : args.height, 0 : args.width]
    world.start_image = np.stack([x * 255 // args.width, y * 255 // args.height, np.full_like(x, 96)], -1).astype(
        np.uint8
    )
    return world


def _dtype(args: argparse.Namespace) -> torch.dtype:
    from lingbot_env.resolve import parse_dtype

    return parse_dtype(args.dtype) or (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Flags that only shape the random world: with --model they are ignored, so the JSON config leaves them out.
SHAPE_FLAGS = (
    "height",
    "width",
    "dit_dim",
    "ffn_dim",
    "heads",
    "layers",
    "text_dim",
    "text_len",
    "control",
    "vae_dim",
    "decoder_widths",
    "decoder_blocks",
    "block_frames",
    "denoise_steps",
    "window",
    "sink",
)


def _as_module(part: Any) -> torch.nn.Module | None:
    """The ``nn.Module`` behind a world part (umT5's wrapper keeps it in ``.model``), or None."""
    if isinstance(part, torch.nn.Module):
        return part
    inner = getattr(part, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def describe_world(world) -> dict[str, Any]:
    """The shape of the world actually benchmarked: resolution, stream layout, control, the DiT's config and the
    parameter count of every part (a part shared by two roles, e.g. the full Wan VAE as encoder and decoder, is
    counted once in ``total_params``)."""
    import dataclasses

    spec, stream = world.spec, world.spec.stream
    dit_cfg = {k: v for k, v in dataclasses.asdict(world.dit.cfg).items() if k != "extra"}
    parts = {"dit": world.dit, "encoder": world.encoder, "decoder": world.decoder, "text_encoder": world.text_encoder}
    counts: dict[str, Any] = {}
    unique: dict[int, int] = {}
    for name, part in parts.items():
        module = _as_module(part)
        counts[f"{name}_params"] = None if module is None else params(module)
        if module is not None:
            unique.update({id(p): p.numel() for p in module.parameters()})
    return {
        "resolution": f"{spec.height}x{spec.width}",
        "fps": spec.fps,
        "frames_per_step": spec.frames_per_step,
        "control": None if spec.control is None else dataclasses.asdict(spec.control),
        "stream": {
            "block_frames": stream.block_frames,
            "first_block_frames": stream.first_block_frames,
            "denoise_steps": len(stream.schedule.timesteps),
            "timesteps": [float(t) for t in stream.schedule.timesteps],
            "cache": dataclasses.asdict(stream.cache),
        },
        "dit_config": dit_cfg,
        "dit_dtype": str(world.dit.dtype).removeprefix("torch."),
        **counts,
        "decoder_is_encoder": world.decoder is world.encoder,
        "total_params": sum(unique.values()),
        "notes": dict(getattr(world, "notes", {}) or {}),
    }


def make_env(args: argparse.Namespace, num_envs: int) -> Any:
    """The env (one world, or a vector env of ``num_envs`` rows) that :func:`bench` times: ``--model`` goes through
    the env's resolver (``world_model.bundle.load_world``) like every other entry point; without it, random
    weights of the shape flags."""
    from lingbot_env.vector_env import LingBotWorldVectorEnv
    from lingbot_env.world_env import LingBotWorldEnv

    if args.model:
        model: Any = args.model
        kw: dict[str, Any] = dict(device=args.device, dtype=args.dtype)
    else:
        model = lambda batch_size: build_random_world(args, batch_size)  # noqa: E731
        kw = {}
    # The per-step DiT / decode timings are opt-in; the threads are this benchmark's (--threads), not the env's.
    kw.update(timing_info=True, num_threads=None)
    if num_envs == 1:
        return LingBotWorldEnv(model=model, image=args.image, action_clip="clip", **kw)
    return LingBotWorldVectorEnv(num_envs, model=model, image=args.image, action_clip="clip", **kw)


def bench(args: argparse.Namespace, num_envs: int, threads: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One configuration -> (timings, :func:`describe_world` of the world that ran)."""
    if threads:
        torch.set_num_threads(threads)
    env = make_env(args, num_envs)
    world = env.world
    if args.model and args.compile:
        world.dit.compile()
    world.overlap_cache_pass = args.overlap
    spec = world.spec
    shape = describe_world(world)
    rng = np.random.default_rng(0)
    action_shape = (6,) if num_envs == 1 else (num_envs, 6)

    def actions() -> np.ndarray:
        return rng.uniform([0, 0, 0, 0, -1, -1], 1, (args.steps + args.warmup, *action_shape)).astype(np.float32)

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    env.reset(seed=0)
    reset_ms = (time.perf_counter() - t) * 1e3
    step_ms, gen_ms, dec_ms = [], [], []
    for i, a in enumerate(actions()):
        t = time.perf_counter()
        info = env.step(a)[4]
        if i >= args.warmup:  # warm-up fills the rolling window and lets cuDNN / compile settle
            step_ms.append((time.perf_counter() - t) * 1e3)
            gen_ms.append(float(np.mean(info["generate_ms"])))
            dec_ms.append(float(np.mean(info["decode_ms"])))
    med = statistics.median(step_ms)
    mean = statistics.fmean(step_ms)
    frames = spec.frames_per_step
    result = {
        "num_envs": num_envs,
        "torch_threads": torch.get_num_threads(),
        "resolution": f"{spec.height}x{spec.width}",
        "frames_per_step": frames,
        "dit_params": params(world.dit),
        "decoder_params": params(world.decoder),
        "reset_ms": reset_ms,
        "step_ms_median": med,
        "step_ms_mean": mean,
        "step_ms_p90": float(np.percentile(step_ms, 90)),
        "generate_ms_median": statistics.median(gen_ms),
        "decode_ms_median": statistics.median(dec_ms),
        "env_steps_per_s": num_envs * 1e3 / mean,
        "video_frames_per_s": num_envs * frames * 1e3 / mean,
        "video_frames_per_s_per_env": frames * 1e3 / mean,
        "realtime_factor_per_env": frames * 1e3 / mean / spec.fps,
        "kv_cache_mib": world.generator.cache.nbytes / 2**20,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None,
        "raw_step_ms": step_ms,
    }
    env.close()
    return result, shape


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--num-envs", default="1", help="comma-separated batch sizes, e.g. 1,16,64")
    ap.add_argument("--threads", default=None, help="comma-separated torch CPU thread counts to try, e.g. 1,2")
    ap.add_argument("--steps", type=int, default=30, help="timed env steps per configuration")
    ap.add_argument("--warmup", type=int, default=8, help="untimed steps first (>= window to time a full cache)")
    ap.add_argument("--model", default=None, help="a preset name or model folder (load_world) instead of random")
    ap.add_argument("--image", default=None, help="start image (default: a gradient shipped with the random world)")
    shape = ap.add_argument_group("random world shape (the small Doom model's intended size by default)")
    shape.add_argument("--height", type=int, default=96)
    shape.add_argument("--width", type=int, default=128)
    shape.add_argument("--dit-dim", type=int, default=256)
    shape.add_argument("--ffn-dim", type=int, default=1024)
    shape.add_argument("--heads", type=int, default=4)
    shape.add_argument("--layers", type=int, default=8)
    shape.add_argument("--text-dim", type=int, default=128)
    shape.add_argument("--text-len", type=int, default=64)
    shape.add_argument("--control", choices=("act", "cam"), default="act")
    shape.add_argument("--vae-dim", type=int, default=32, help="VAE width (its encoder runs only at reset)")
    shape.add_argument("--decoder-widths", default="128,64,32,32", help="light decoder stage widths")
    shape.add_argument("--decoder-blocks", type=int, default=2)
    shape.add_argument("--block-frames", type=int, default=1, help="latent frames per env step (4 video frames each)")
    shape.add_argument("--denoise-steps", type=int, default=4, help="few-step passes per chunk (+1 cache pass)")
    shape.add_argument("--window", type=int, default=6, help="rolling KV window, latent frames")
    shape.add_argument("--sink", type=int, default=1, help="KV sink frames")
    ap.add_argument("--compile", action="store_true", help="WanDiT.compile() (GPU)")
    ap.add_argument("--overlap", action="store_true", help="each step's cache pass beside its decode (CUDA stream)")
    ap.add_argument("--quick", action="store_true", help="tiny 32x48 world, a few steps (smoke test)")
    ap.add_argument("--out", default="benchmarks/results/env_throughput.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.height, args.width, args.dit_dim, args.ffn_dim, args.layers = 32, 48, 64, 128, 2
        args.text_dim, args.text_len, args.vae_dim, args.decoder_widths, args.decoder_blocks = 32, 16, 8, "16,8,8,8", 1
        args.steps, args.warmup = 5, 2
    sizes = [int(n) for n in args.num_envs.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    runs = []
    model_shape: dict[str, Any] | None = None
    t0 = time.time()
    for threads in thread_counts:
        for n in sizes:
            r, shape = bench(args, n, threads)
            model_shape = model_shape or shape
            runs.append(r)
            print(
                f"N={n:>3} threads={r['torch_threads']} {r['resolution']}: {r['step_ms_median']:.1f} ms/step "
                f"(DiT {r['generate_ms_median']:.1f}, decode {r['decode_ms_median']:.1f}), "
                f"{r['env_steps_per_s']:.1f} env steps/s, {r['video_frames_per_s']:.1f} video frames/s, "
                f"{r['realtime_factor_per_env']:.2f}x real time per env",
                flush=True,
            )
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    # With --model the shape flags were not used: record the loaded model's real shape instead of them.
    skip = {"out", *SHAPE_FLAGS} if args.model else {"out"}
    cfg = {k: v for k, v in vars(args).items() if k not in skip}
    cfg["model_shape"] = model_shape
    write_result(args.out, "env_throughput", args.device, cfg, {"runs": runs, "wall_s": time.time() - t0})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
