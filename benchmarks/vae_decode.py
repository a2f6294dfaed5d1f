"""Streaming decode cost per latent frame: the full Wan2.1 VAE decoder vs. the light decoder (random weights).

    python benchmarks/vae_decode.py --device cuda --out benchmarks/results/vae_decode_h100.json
    python benchmarks/vae_decode.py --device cpu --quick --out /tmp/vae.json     # smoke run, tiny size

Each decoder is driven exactly as the streaming world drives it: latent frame 0 alone (1 video frame), then
chunks of ``--chunks`` latent frames (4 video frames each) with the cache carried in an explicit state. Times are
CUDA-event times per chunk after warm-up, divided by the chunk's latent frames. FLOPs are counted once per model
with ``torch.utils.flop_counter`` on ``meta`` tensors (no compute) for one steady latent frame; efficiency is the
achieved FLOP rate over a dense bf16 GEMM measured on the same device (and over the nominal H100 SXM peak).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_result  # noqa: E402
from world_model.vae import (  # noqa: E402
    LightDecoder,
    LightDecoderConfig,
    StreamingDecoder,
    VAEConfig,
    WanVAE,
    count_parameters,
)

H100_SXM_BF16_DENSE_TFLOPS = 989.0
REFERENCE_TFLOP_PER_LATENT_FRAME = 4.35  # docs/official_models.md §11 (its 8.5 MFLOP/pixel gives ~13.6 at 480x832)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build(kind: str, dtype: torch.dtype, device: torch.device | str, args: argparse.Namespace) -> torch.nn.Module:
    if kind == "wan":
        model = WanVAE(VAEConfig(dim=args.vae_dim))
    else:
        model = LightDecoder(LightDecoderConfig(widths=args.light_widths, blocks_per_stage=args.light_blocks))
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def count_flops_per_latent_frame(kind: str, dtype: torch.dtype, h: int, w: int, args: argparse.Namespace) -> int:
    """FLOPs (2 per multiply-add) of one steady streaming step of one latent frame, counted on meta tensors."""
    with torch.device("meta"):
        model = build(kind, dtype, "meta", args)
        z = torch.zeros(1, 16, 1, h // 8, w // 8, dtype=dtype)
    with torch.no_grad():
        _, cache = model.decode_tensors(z, None)
        with FlopCounterMode(display=False) as counter:
            model.decode_tensors(z, cache)
    return int(counter.get_total_flops())


def measure_gemm_tflops(device: torch.device, dtype: torch.dtype, quick: bool) -> float | None:
    """Dense GEMM rate on this device: the practical ceiling the decoders are compared to."""
    if device.type != "cuda":
        return None
    n = 2048 if quick else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    reps = 5 if quick else 30
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        """Milliseconds for fn()."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def run_stream(
    model: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    h: int,
    w: int,
    chunk: int,
    warmup: int,
    timed: int,
    channels_last: bool,
    compile: bool,
) -> dict[str, Any]:
    """Stream random latents through ``model``; per-latent-frame milliseconds of the timed chunks."""
    timer = Timer(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def latents(frames: int) -> torch.Tensor:
        z = torch.randn(1, 16, frames, h // 8, w // 8, device=device, dtype=dtype, generator=gen)
        return z.contiguous(memory_format=torch.channels_last_3d) if channels_last else z

    stream = StreamingDecoder(model, compile=compile)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: list[torch.Tensor] = []
    with torch.no_grad():
        first_ms = timer(lambda: out.append(stream(latents(1))))
        assert out[-1].shape[2] == 1
        for _ in range(warmup):
            stream(latents(chunk))
        per_frame = []
        for _ in range(timed):
            z = latents(chunk)
            ms = timer(lambda z=z: out.append(stream(z)))
            assert out[-1].shape[2] == 4 * chunk
            out.clear()
            per_frame.append(ms / chunk)
    result = {
        "chunk_latent_frames": chunk,
        "channels_last_3d": channels_last,
        "compiled": compile,
        "first_latent_frame_ms": round(first_ms, 3),
        "ms_per_latent_frame_median": round(statistics.median(per_frame), 3),
        "ms_per_latent_frame_mean": round(statistics.fmean(per_frame), 3),
        "ms_per_latent_frame_min": round(min(per_frame), 3),
        "ms_per_latent_frame_all": [round(v, 3) for v in per_frame],
        "state_bytes": stream.state.nbytes(),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--quick", action="store_true", help="tiny size and few iterations (CPU smoke run)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--dtype", choices=sorted(DTYPES), help="default: bf16 on CUDA, fp32 on CPU (slow bf16 conv3d)")
    p.add_argument("--chunks", default="1,3", help="latent frames per streaming call to time, e.g. 1,3")
    p.add_argument("--warmup", type=int, default=2, help="chunks decoded before timing")
    p.add_argument("--timed", type=int, default=8, help="chunks timed per setting")
    p.add_argument("--vae-dim", type=int, default=96, help="Wan VAE base width (96 = the released model)")
    p.add_argument("--light-widths", default="256,128,64,64")
    p.add_argument("--light-blocks", type=int, default=3, help="light decoder blocks per stage (the Doom one: 2)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd steps (slow to start)")
    args = p.parse_args(argv)
    if args.quick:
        # A smoke run of every code path, not a measurement: small sizes and narrow models.
        args.height, args.width = 16, 16
        args.chunks, args.warmup, args.timed = "1,2", 1, 1
        args.vae_dim, args.light_widths = 8, "16,8,8,8"
    args.light_widths = tuple(int(c) for c in args.light_widths.split(",") if c)
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    h, w = args.height, args.width
    if h % 8 or w % 8:
        raise SystemExit(f"--height/--width must be multiples of 8, got {h}x{w}")
    chunks = [int(c) for c in args.chunks.split(",") if c]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()

    gemm = measure_gemm_tflops(device, dtype, args.quick)
    results: dict[str, Any] = {"dense_gemm_tflops": round(gemm, 1) if gemm else None}
    for kind in ("wan", "light"):
        flops = count_flops_per_latent_frame(kind, dtype, h, w, args)
        model = build(kind, dtype, device, args)
        formats = [False, True] if kind == "wan" else [False]
        if kind == "wan":
            model_cl = build(kind, dtype, device, args).to_channels_last()
        runs = []
        for channels_last in formats:
            for chunk in chunks:
                for compiled in [False, True] if args.compile else [False]:
                    m = model_cl if channels_last else model
                    try:
                        r = run_stream(m, device, dtype, h, w, chunk, args.warmup, args.timed, channels_last, compiled)
                    except Exception as e:  # a failed variant (e.g. compile) must not lose the others
                        r = {"chunk_latent_frames": chunk, "channels_last_3d": channels_last, "compiled": compiled,
                             "error": f"{type(e).__name__}: {e}"}  # fmt: skip
                    if "ms_per_latent_frame_median" in r:
                        rate = flops / (r["ms_per_latent_frame_median"] / 1e3) / 1e12
                        r["achieved_tflops"] = round(rate, 2)
                        r["video_fps_equivalent"] = round(4000.0 / r["ms_per_latent_frame_median"], 1)
                        if gemm:
                            r["fraction_of_dense_gemm"] = round(rate / gemm, 4)
                        if device.type == "cuda":
                            r["fraction_of_h100_nominal"] = round(rate / H100_SXM_BF16_DENSE_TFLOPS, 4)
                    runs.append(r)
                    print(f"{kind:5s} {r}", file=sys.stderr)
        results[kind] = {
            "parameters": count_parameters(model),
            "flop_per_latent_frame": flops,
            "tflop_per_latent_frame": round(flops / 1e12, 4),
            "mflop_per_output_pixel": round(flops / (4 * h * w) / 1e6, 3),
            "runs": runs,
        }
        del model
        if kind == "wan":
            del model_cl
        if device.type == "cuda":
            torch.cuda.empty_cache()

    best = {k: min((r["ms_per_latent_frame_median"] for r in results[k]["runs"] if "error" not in r), default=None)
            for k in ("wan", "light")}  # fmt: skip
    results["summary"] = {
        "wan_best_ms_per_latent_frame": best["wan"],
        "light_best_ms_per_latent_frame": best["light"],
        "speedup_light_vs_wan": round(best["wan"] / best["light"], 2) if best["wan"] and best["light"] else None,
        "flop_ratio_wan_over_light": round(
            results["wan"]["flop_per_latent_frame"] / results["light"]["flop_per_latent_frame"], 2
        ),
        "reference_tflop_per_latent_frame": REFERENCE_TFLOP_PER_LATENT_FRAME,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    config = {
        "height": h,
        "width": w,
        "dtype": args.dtype,
        "chunks": chunks,
        "warmup": args.warmup,
        "timed": args.timed,
        "quick": args.quick,
        "vae_dim": args.vae_dim,
        "light_widths": list(args.light_widths),
        "light_blocks": args.light_blocks,
        "weights": "random",
        "compile": args.compile,
        "cudnn_benchmark": device.type == "cuda",
    }
    record = write_result(args.out, "vae_decode", str(device), config, results)
    print(f"wrote {args.out}: {results['summary']}", file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
