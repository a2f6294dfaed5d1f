"""What the load-time integrity checks cost: a synthetic fp32 sharded DiT checkpoint loaded into a bf16 model.

    python -m benchmarks.load_integrity                      # ~0.5 GB fp32 in 4 shards, CPU, warm page cache
    python -m benchmarks.load_integrity --layers 24 --dim 1024 --device cuda

``load_dit(..., integrity=m)`` for ``m`` in ``none`` (no check), ``finite`` (every tensor's sum on the target
device, one host sync per shard: what official releases get, since they record no digests) and ``sha256`` (every
file hashed against ``SHA256SUMS`` before the first copy: what the project's own checkpoints get). Each mode is
timed ``--repeat`` times after one warm-up load, so the files are in the page cache and the numbers are the
checks' cost, not the disk's. JSON (device, commit, config) to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/load_integrity_<dev>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from world_model.checkpoints import build_dit, load_dit, save_checkpoint
    from world_model.config import WanDiTConfig

    cfg = WanDiTConfig(
        dim=args.dim, ffn_dim=4 * args.dim, num_heads=args.dim // 64, num_layers=args.layers, text_dim=1024
    )
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_dit(cfg, "cpu", torch.float32)
        saved = save_checkpoint(model, Path(tmp) / "dit", num_shards=args.shards, dtype=torch.float32)
        nbytes = sum(f.stat().st_size for f in saved.files)
        params = sum(p.numel() for p in model.parameters())
        del model
        load_dit(Path(tmp) / "dit", device=args.device, integrity="none")  # warm the page cache
        for mode in ("none", "finite", "sha256"):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                m = load_dit(Path(tmp) / "dit", device=args.device, dtype=torch.bfloat16, integrity=mode)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                del m
            results[mode] = {"seconds_median": statistics.median(times), "seconds": times}
    base = results["none"]["seconds_median"]
    for mode in ("finite", "sha256"):
        r = results[mode]
        r["extra_seconds"] = r["seconds_median"] - base
        r["extra_percent"] = 100 * r["extra_seconds"] / base
        r["check_gb_per_s"] = nbytes / 1e9 / r["extra_seconds"] if r["extra_seconds"] > 0 else None
    config = {
        "dit": {"dim": cfg.dim, "ffn_dim": cfg.ffn_dim, "num_layers": cfg.num_layers, "params": params},
        "checkpoint_bytes": nbytes,
        "shards": len(saved.files),
        "stored_dtype": "float32",
        "loaded_dtype": "bfloat16",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "page_cache": "warm",
    }
    out = args.out or f"benchmarks/results/load_integrity_{'cpu' if args.device == 'cpu' else 'cuda'}.json"
    record = write_result(out, "load_integrity", args.device, config, results)
    print(f"{nbytes / 1e9:.2f} GB fp32 in {len(saved.files)} shards -> bf16 on {args.device}:")
    for mode, r in results.items():
        extra = f" (+{r['extra_seconds']:.3f} s, +{r['extra_percent']:.1f}%)" if mode != "none" else ""
        print(f"  integrity={mode:7s} {r['seconds_median']:.3f} s{extra}")
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
