"""DiT speed: ms per streaming pass and FPS of the streaming loop, random bf16 weights.

Per preset: one streaming chunk = ``steps`` denoising passes + 1 cache pass over ``block`` latent frames
(4 video frames each), KV cache rolling over ``window`` latent frames. Usage::

    python -m benchmarks.dit_stream --device cuda --out out/dit.json            # 1.3B- and LingBot-shaped, 480x832
    python -m benchmarks.dit_stream --quick                                     # tiny CPU smoke run
    python -m benchmarks.dit_stream --long 200 --long-shapes wan-1.3b         # + 200 chunks: is ms/chunk flat?
    python -m benchmarks.dit_stream --device cuda --fp8 --compile             # fp8 block linears (Hopper / Ada)

``--fp8`` applies ``world_model.fp8.quantize_linears_fp8_`` before timing: the blocks' attention q/k/v/o and FFN
linears become fp8 (per-row weight scales, per-token activation scales, ``torch._scaled_mm`` on compute capability
>= 8.9, a float32 emulation elsewhere); the time embedding, norms and head stay bf16.

Every shape also records which SDPA backend its attention ran on (``sdpa_backend``: the ``aten`` SDPA ops and
top attention kernels of one profiled pass, and which ``sdpa_kernel`` backends accept the pass's shapes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch

from benchmarks.common import cuda_time_ms, write_result
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT, flops_per_token
from world_model.fp8 import quantize_linears_fp8_
from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig, StreamingGenerator

SHAPES = {
    "wan-1.3b": WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, in_dim=16),
    "lingbot-18.5b": WanDiTConfig(control_dim=6),
    "tiny": WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, control_dim=6, text_dim=32, text_len=8),
}


def random_model(cfg: WanDiTConfig, device: str, dtype: torch.dtype) -> WanDiT:
    with torch.device("meta"):
        model = WanDiT(cfg)
    model = model.to(dtype).to_empty(device=device)  # cast on meta: fp32 would not fit the GPU
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def bench_shape(name: str, height: int, width: int, args) -> dict:
    device, dtype = args.device, torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    t_start = time.time()
    cfg = SHAPES[name]
    model = random_model(cfg, device, dtype)
    fp8_layers = quantize_linears_fp8_(model) if args.fp8 else 0
    if args.compile:
        model.compile()
    h, w = height // 8, width // 8
    g = torch.Generator(device=device).manual_seed(0)
    first = torch.randn(1, 16, 1, h, w, device=device, generator=g)
    ctx = torch.randn(1, min(64, cfg.text_len), cfg.text_dim, device=device, generator=g, dtype=dtype)
    schedule = FewStepSchedule(FewStepSchedule.lingbot_fast().timesteps[: args.steps])
    scfg = StreamConfig(
        block_frames=args.block,
        first_block_frames=args.block,
        schedule=schedule,
        cache=CacheConfig("rolling", window_frames=args.window, sink_frames=0),
    )
    gen = StreamingGenerator(model, scfg, seed=0)
    control = None
    if cfg.control_dim:
        control = torch.randn(1, cfg.control_dim * 64, args.block, h, w, device=device, generator=g)
    gen.prime(first, ctx)
    # Fill the window so the timed chunks attend to a full cache.
    for _ in range(-(-args.window // args.block) + 1):
        gen.step(control)
    chunk_ms = cuda_time_ms(lambda: gen.step(control), warmup=1, repeat=args.repeat)
    long = (
        long_run(gen, control, args.long, device, args.long_max_s)
        if args.long and name in (args.long_shapes or SHAPES)
        else None
    )

    # One denoising pass on its own, against the full cache (what the DiT costs per call).
    x = torch.randn(1, 16, args.block, h, w, device=device, generator=g)
    y = gen._y(args.block, tuple(range(gen.batch_size)))  # rows, not frame counts (per-row streams)
    t = torch.full((1,), 900.0, device=device)
    ctrl = None if control is None else model.prepare_control(control)
    with torch.no_grad():
        pass_ms = cuda_time_ms(
            lambda: model(x, t, gen.context, y, ctrl, attention="streaming", kv_cache=gen.cache), 1, args.repeat
        )
        ctrl_ms = cuda_time_ms(lambda: model.prepare_control(control), 1, 3) if control is not None else [0.0]
        backend = sdpa_backend(
            lambda: model(x, t, gen.context, y, ctrl, attention="streaming", kv_cache=gen.cache),
            device,
            q_shape=(1, cfg.num_heads, args.block * (h // 2) * (w // 2), cfg.dim // cfg.num_heads),
            kv_len=(args.block + args.window) * (h // 2) * (w // 2),
            dtype=dtype,
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x, t, gen.context, y, ctrl, attention="streaming", kv_cache=gen.cache)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
    tokens = args.block * (h // 2) * (w // 2)
    kv = tokens + args.window * (h // 2) * (w // 2)
    tflop = flops_per_token(cfg, kv) * tokens / 1e12
    video_frames = 4 * args.block
    med_chunk, med_pass = statistics.median(chunk_ms), statistics.median(pass_ms)
    res = {
        "shape": name,
        "compiled": args.compile,
        "fp8_linears": fp8_layers,
        "resolution": f"{height}x{width}",
        "params": sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()),
        "ms_per_pass": med_pass,
        "ms_per_chunk": med_chunk,
        "ms_control_features_per_chunk": statistics.median(ctrl_ms),
        "passes_per_chunk": args.steps + 1,
        "video_frames_per_chunk": video_frames,
        "fps_dit_only": video_frames / (med_chunk / 1e3),
        "tflop_per_pass": tflop,
        "tflop_per_s": tflop / (med_pass / 1e3),
        "kv_cache_gib": gen.cache.nbytes / 2**30,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "raw_chunk_ms": chunk_ms,
        "raw_pass_ms": pass_ms,
        "sdpa_backend": backend,
        "long": long,
        "wall_s": time.time() - t_start,
    }
    return res


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def long_run(gen: StreamingGenerator, control, chunks: int, device: str, max_s: float = 0.0) -> dict:
    """``chunks`` more chunks through the rolling cache, each timed on its own (host clock, CUDA-synchronised);
    stops early after ``max_s`` seconds when that is > 0.

    With a rolling cache the work per chunk is constant, so the last decile should take as long as the first."""
    _sync(device)
    ms: list[float] = []
    t_end = time.perf_counter() + max_s if max_s > 0 else float("inf")
    while len(ms) < chunks and time.perf_counter() < t_end:
        t0 = time.perf_counter()
        gen.step(control)
        _sync(device)
        ms.append((time.perf_counter() - t0) * 1e3)
    requested, chunks = chunks, len(ms)
    n = max(1, chunks // 10)
    first, last = statistics.median(ms[:n]), statistics.median(ms[-n:])
    return {
        "chunks": chunks,
        "requested_chunks": requested,
        "stopped_by_time_limit": chunks < requested,
        "decile_chunks": n,
        "first_decile_median_ms": first,
        "last_decile_median_ms": last,
        "last_over_first": last / first,
        "median_ms": statistics.median(ms),
        "max_ms": max(ms),
        "frames_generated": gen.frames_generated[0],
        "kv_cache_gib_end": gen.cache.nbytes / 2**30,
        "per_chunk_ms": [round(v, 3) for v in ms],
    }


# aten SDPA op -> backend (these names are the same on CPU and CUDA, eager and Inductor).
_SDPA_OPS = {
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash_cpu",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}
_KERNEL_WORDS = ("flash", "fmha", "cudnn", "attention", "attn", "sdpa", "softmax", "mha")


def sdpa_backend(fn, device: str, q_shape: tuple[int, ...], kv_len: int, dtype: torch.dtype) -> dict:
    """Which SDPA backend ``fn`` (one DiT pass) really runs on.

    ``ops``: aten SDPA ops seen in a profiled call (what the dispatcher chose); ``kernels``: the top CUDA kernels
    whose names look like attention (cuDNN / flash / fmha ...); ``accepts``: whether each backend alone, through
    ``torch.nn.attention.sdpa_kernel``, runs an unmasked SDPA of the streaming pass's shapes."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    _sync(device)
    with torch.no_grad(), profile(activities=activities) as prof:
        fn()
        _sync(device)
    ops: Counter[str] = Counter()
    kernels = []
    for e in prof.key_averages():
        if e.key in _SDPA_OPS:
            ops[_SDPA_OPS[e.key]] += e.count
        dev_us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        is_kernel = device.startswith("cuda") and dev_us and not e.key.startswith("aten::")
        if is_kernel and any(w in e.key.lower() for w in _KERNEL_WORDS):
            kernels.append({"name": e.key[:200], "count": e.count, "ms": dev_us / 1e3})
    kernels.sort(key=lambda k: -k["ms"])

    b, heads, length, head_dim = q_shape  # laid out [B, L, H, D] and transposed, as world_model.attention.sdpa does
    q = torch.randn(b, length, heads, head_dim, device=device, dtype=dtype).transpose(1, 2)
    kv = torch.randn(b, kv_len, heads, head_dim, device=device, dtype=dtype).transpose(1, 2)
    accepts = {}
    for name in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
        if not hasattr(SDPBackend, name):
            continue
        if name == "MATH" and device.startswith("cuda"):  # always there; its score matrix could OOM the 18.5B run
            accepts["math"] = "not probed on CUDA"
            continue
        try:
            with torch.no_grad(), sdpa_kernel(getattr(SDPBackend, name)):
                torch.nn.functional.scaled_dot_product_attention(q, kv, kv)
            _sync(device)
            accepts[name.lower()] = True
        except RuntimeError as err:
            accepts[name.lower()] = (str(err).splitlines() or [type(err).__name__])[0][:160]
    return {
        "used": sorted(ops, key=lambda k: -ops[k])[0] if ops else None,
        "ops": dict(ops),
        "kernels": kernels[:6],
        "accepts": accepts,
    }


def check_flex(device: str) -> dict:
    """Flex block-causal attention == masked SDPA on the GPU (the CPU tests cover only the SDPA path)."""
    from world_model.attention import BlockCausalAttention
    from world_model.rope import Rope3D

    rope = Rope3D(64)
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(2, 7 * 130, 4, 64, device=device, generator=g, dtype=torch.bfloat16) for _ in range(3))
    flex = BlockCausalAttention(rope, 7, (10, 13), 3, torch.device(device), use_flex=True)(0, q, k, v)
    ref = BlockCausalAttention(rope, 7, (10, 13), 3, torch.device(device), use_flex=False)(0, q, k, v)
    err = ((flex.float() - ref.float()).norm() / ref.float().norm()).item()
    return {"flex_vs_sdpa_rel_err": err, "ok": err < 2e-2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", nargs="+", default=["wan-1.3b", "lingbot-18.5b"], choices=list(SHAPES))
    ap.add_argument("--resolution", default="480x832", help="HxW in pixels")
    ap.add_argument("--block", type=int, default=3, help="latent frames per chunk")
    ap.add_argument("--steps", type=int, default=4, help="denoising passes per chunk (+1 cache pass)")
    ap.add_argument("--window", type=int, default=6, help="rolling KV window in latent frames")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="WanDiT.compile(): fuse the fp32 pointwise work")
    ap.add_argument("--fp8", action="store_true", help="fp8 attention/FFN linears (world_model.fp8) before timing")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of one pass")
    ap.add_argument("--long", type=int, default=0, metavar="N", help="also stream N chunks timed one by one")
    ap.add_argument("--long-max-s", type=float, default=0.0, help="stop each --long run after this many s (0: never)")
    ap.add_argument(
        "--long-shapes", nargs="+", choices=list(SHAPES), help="shapes that get the --long run (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="tiny model at 64x64 on the CPU (smoke test)")
    ap.add_argument("--out", default="benchmarks/results/dit_stream.json")
    args = ap.parse_args()
    if args.quick:
        args.shapes, args.resolution, args.device, args.repeat = ["tiny"], "64x64", "cpu", 2
    height, width = (int(v) for v in args.resolution.split("x"))
    results = []
    t0 = time.time()
    for name in args.shapes:
        r = bench_shape(name, height, width, args)
        results.append(r)
        if args.device.startswith("cuda"):  # the model is gone with bench_shape's frame
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        print(
            f"{name:>14} {r['resolution']}: {r['ms_per_pass']:.1f} ms/pass, {r['ms_per_chunk']:.1f} ms/chunk, "
            f"{r['fps_dit_only']:.2f} FPS (DiT only), {r['tflop_per_s']:.0f} TFLOP/s, "
            f"SDPA {r['sdpa_backend']['used']}, {r['wall_s']:.0f} s",
            flush=True,
        )
        if r["long"]:
            lr = r["long"]
            print(
                f"{'':>14} long {lr['chunks']} chunks: first decile {lr['first_decile_median_ms']:.1f} ms, "
                f"last {lr['last_decile_median_ms']:.1f} ms (x{lr['last_over_first']:.3f}), max {lr['max_ms']:.1f}",
                flush=True,
            )
    extra = {"flex_check": check_flex(args.device)} if args.device.startswith("cuda") else {}
    cfg = {k: v for k, v in vars(args).items() if k != "out"}
    write_result(args.out, "dit_stream", args.device, cfg, {"shapes": results, **extra, "wall_s": time.time() - t0})
    print("wrote", args.out, extra)


if __name__ == "__main__":
    main()
