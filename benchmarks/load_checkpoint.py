"""Time and host memory of loading a full-size LingBot expert (fp32 shards on disk) into bf16 on the GPU.

The checkpoint is one LingBot-World Base-Cam expert (18.54B params, 74.2 GB fp32) in the official layout: the
state dict split into 8 shards of about equal size, ``diffusion_pytorch_model-0000k-of-00008.safetensors`` +
``diffusion_pytorch_model.safetensors.index.json``, random fp32 values.

The whole expert does not fit a 64 GiB disk, so only the first ``--shards`` of the 8 full-size shards are written
(default 3: 27.8 GB, the global layers and blocks 0-14) and the index names just those. The full-size bf16 model
(37 GB) is allocated on the GPU, and exactly the code path of ``load_model`` (``load_weights_``: header checks, then
shard by shard through ``safe_open``, each fp32 tensor converted into its bf16 parameter) reads those shards into it
(non-strict, since the other shards are absent). What the JSON says:

* measured: GPU allocation time, load time and throughput of the written shards read cold (evicted from the page
  cache with ``posix_fadvise(DONTNEED)`` after an ``fsync``) and warm (page cache hot), raw sequential disk read
  speed, peak host RSS growth (VmHWM, reset before each load; plus the peak file-backed / anonymous split sampled
  every 20 ms), a bit-exact check of sampled tensors.
* extrapolated (labelled so): the full 8-shard load time = allocation + measured seconds per byte x 74.2 GB.
  Peak host RSS does not grow with the shard count (one shard is mapped at a time), so the full-size figure is the
  measured one, scaled by largest shard / largest written shard (the 8 shards are within 3.1% of each other,
  and shard 3 is one of the two largest).

Usage::

    python -m benchmarks.load_checkpoint --dir /tmp/lingbot_ckpt --out benchmarks/results/load_checkpoint_h100.json
    python -m benchmarks.load_checkpoint --quick            # tiny model on the CPU, a few MB (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import write_result
from world_model.checkpoints.build import build_dit
from world_model.checkpoints.saving import DIFFUSERS_LAYOUT, plan_shards
from world_model.config import WanDiTConfig

GB = 1e9
OFFSET_RANGE = 1 << 20  # tensors are windows of one random buffer at name-dependent offsets below this
SEED = 1234
FULL = WanDiTConfig(control_dim=6)
QUICK = WanDiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=8, text_dim=256, control_dim=6)


# -- writing -------------------------------------------------------------------------------------------------------
def random_buffer(numel: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(numel + OFFSET_RANGE, generator=g)


def tensor_offset(name: str) -> int:
    return zlib.crc32(name.encode()) % OFFSET_RANGE


def write_safetensors(path: Path, names: list[str], shapes: dict[str, tuple[int, ...]], buf: torch.Tensor) -> int:
    """Stream an fp32 safetensors file whose tensors are windows of ``buf`` (no shard is materialised in memory)."""
    header, pos = {"__metadata__": {"format": "pt"}}, 0
    for n in names:
        size = 4 * _numel(shapes[n])
        header[n] = {"dtype": "F32", "shape": list(shapes[n]), "data_offsets": [pos, pos + size]}
        pos += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    arr = buf.numpy()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for n in names:
            off = tensor_offset(n)
            f.write(memoryview(arr[off : off + _numel(shapes[n])]))
        f.flush()
        os.fsync(f.fileno())
    return path.stat().st_size


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def evict(path: Path) -> None:
    """Drop a (synced) file from the page cache so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def raw_read_gbps(path: Path) -> float:
    """Sequential read speed of one evicted file with plain 64 MiB reads."""
    evict(path)
    chunk = bytearray(64 << 20)
    t0, n = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(chunk):
            n += got
    return n / (time.perf_counter() - t0) / GB


# -- the load, in a fresh process ------------------------------------------------------------------------------------
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


class RssSampler:
    """Peak anonymous and file-backed RSS, sampled every 20 ms in a thread (VmHWM only gives the total)."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            s = _status()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s[k])
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def worker(spec: dict) -> dict:
    """Allocate the full-size bf16 model on the device, then load the written shards cold and warm."""
    from world_model.checkpoints.loading import inspect_checkpoint, load_weights_

    device, folder = spec["device"], Path(spec["dir"])
    cfg = WanDiTConfig(**{**spec["config"], "patch_size": tuple(spec["config"]["patch_size"])})
    cuda = device.startswith("cuda")
    if cuda:
        torch.zeros(1, device=device)  # CUDA context outside the measurement
    model = build_dit(cfg, "meta", torch.bfloat16)
    t0 = time.perf_counter()
    model = model.to_empty(device=device)
    if cuda:
        torch.cuda.synchronize()
    alloc_s = time.perf_counter() - t0
    info = inspect_checkpoint(folder)
    out = {"alloc_seconds": alloc_s, "model_bf16_bytes": sum(p.numel() * 2 for p in model.parameters())}
    files = list(info.files.files)
    for phase in ("cold", "warm"):
        if phase == "cold":
            for f in files:
                evict(f)
        base = _status()
        reset = _reset_peak()
        with RssSampler() as sampler:
            report = load_weights_(model, info, strict=False)
        end = _status()
        out[phase] = {
            "seconds": report.seconds,
            "bytes_read": report.bytes_read,
            "gb_per_s": report.bytes_read / report.seconds / GB,
            "tensors_loaded": report.loaded,
            "tensors_not_on_disk": len(report.missing),
            "peak_rss_growth_bytes": end["VmHWM"] - base["VmRSS"],
            "peak_rss_growth_exact": reset,  # False: VmHWM could not be reset, the growth is an upper bound
            "peak_rss_anon_growth_bytes": sampler.peak["RssAnon"] - base["RssAnon"],
            "peak_rss_file_backed_growth_bytes": sampler.peak["RssFile"] - base["RssFile"],
            "rss_after_bytes": end["VmRSS"],
        }
    if cuda:
        out["gpu_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    # Bit-exact spot check: sampled tensors equal the written fp32 windows rounded to bf16.
    buf = random_buffer(spec["max_numel"])
    state = model.state_dict()
    names = [n for n in spec["written_names"] if n in state]
    picks = sorted({names[0], names[-1], *names[:: max(1, len(names) // 6)]})
    ok = True
    for n in picks:
        p = state[n]
        want = buf[tensor_offset(n) : tensor_offset(n) + p.numel()].view(p.shape).to(torch.bfloat16)
        ok &= torch.equal(p.cpu(), want)
    out["spot_check"] = {"tensors": len(picks), "bit_exact": bool(ok)}
    return out


# -- driver ----------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="folder to write the checkpoint into (needs ~10 GB free per shard)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/load_checkpoint.json)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shards", type=int, default=3, help="how many of the 8 full-size shards to write (1-8)")
    ap.add_argument("--time-budget", type=float, default=420.0, help="stop writing shards early to stay within (s)")
    ap.add_argument("--keep", action="store_true", help="keep the written checkpoint (default: delete it)")
    ap.add_argument("--reuse", action="store_true", help="reuse a checkpoint this script wrote in --dir before")
    ap.add_argument("--quick", action="store_true", help="tiny model on the CPU in a temp folder (smoke test)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    t_start = time.perf_counter()
    cfg = QUICK if args.quick else FULL
    device = "cpu" if args.quick else args.device
    folder = Path(args.dir or tempfile.mkdtemp(prefix="load_ckpt_")) if not args.quick else Path(tempfile.mkdtemp())
    out_path = args.out or (
        str(Path(tempfile.gettempdir()) / "load_checkpoint_quick.json")
        if args.quick
        else "benchmarks/results/load_checkpoint.json"
    )
    if not 1 <= args.shards <= 8:
        raise SystemExit("--shards must be between 1 and 8")

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_dit(cfg, "meta", torch.float32).state_dict().items()}
    plan = plan_shards([(k, 4 * _numel(s)) for k, s in shapes.items()], num_shards=8)
    shard_bytes = [sum(4 * _numel(shapes[n]) for n in names) for names in plan]
    full_bytes = sum(shard_bytes)
    max_numel = max(_numel(s) for s in shapes.values())

    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "bench_meta.json"
    write = {}
    reused = args.reuse and meta_path.exists() and json.loads(meta_path.read_text()).get("config") == cfg.to_official()
    if reused:
        written = json.loads(meta_path.read_text())["shards_written"]
    else:
        free = shutil.disk_usage(folder).free
        fits = int((free - 4 * 2**30) // max(shard_bytes))
        want = min(args.shards, fits)
        if want < 1:
            raise SystemExit(
                f"{folder}: {free / GB:.1f} GB free, one {max(shard_bytes) / GB:.1f} GB shard does not fit"
            )
        for f in folder.glob("diffusion_pytorch_model*"):
            f.unlink()
        buf = random_buffer(max_numel)
        weight_map, written, t0 = {}, 0, time.perf_counter()
        for k in range(want):
            fname = DIFFUSERS_LAYOUT.shard_name(k + 1, 8)
            write_safetensors(folder / fname, plan[k], shapes, buf)
            weight_map.update(dict.fromkeys(plan[k], fname))
            written += 1
            elapsed = time.perf_counter() - t_start
            per_shard = (time.perf_counter() - t0) / written
            # Reading cold costs about what writing did; keep room for two loads and a raw read of one shard.
            if k + 1 < want and elapsed + per_shard * (1 + 2.5 * (written + 1)) > args.time_budget:
                print(f"time budget: stopping after {written} shards ({per_shard:.1f} s per shard)", flush=True)
                break
        write = {
            "seconds": time.perf_counter() - t0,
            "gb_per_s_incl_fsync": sum(shard_bytes[:written]) / (time.perf_counter() - t0) / GB,
            "shards_requested": args.shards,
            "shards_that_fit_on_disk": fits,
        }
        del buf
        index = {"metadata": {"total_size": sum(shard_bytes[:written])}, "weight_map": weight_map}
        (folder / DIFFUSERS_LAYOUT.index_name).write_text(json.dumps(index))
        (folder / "config.json").write_text(json.dumps(cfg.to_official()))
        meta_path.write_text(json.dumps({"config": cfg.to_official(), "shards_written": written}))
    written_bytes = sum(shard_bytes[:written])
    names = [n for names in plan[:written] for n in names]
    first_shard = folder / DIFFUSERS_LAYOUT.shard_name(1, 8)
    disk_gbps = raw_read_gbps(first_shard)

    spec = {"device": device, "dir": str(folder), "config": cfg.to_official(), "max_numel": max_numel}
    spec["written_names"] = names
    spec["config"] = {k: v for k, v in spec["config"].items() if k not in ("_class_name", "model_type")}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.load_checkpoint", "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"load worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    measured = json.loads(lines[-1][len("RESULT ") :])

    scale = full_bytes / written_bytes
    largest_written = max(shard_bytes[:written])
    results = {
        "checkpoint": {
            "model": "LingBot-World Base-Cam expert" if not args.quick else "tiny (quick mode)",
            "params": sum(_numel(s) for s in shapes.values()),
            "tensors": len(shapes),
            "full_fp32_bytes": full_bytes,
            "full_shards": 8,
            "shard_bytes": shard_bytes,
            "shards_written": written,
            "written_bytes": written_bytes,
            "written_tensors": len(names),
            "reused_existing_files": bool(reused),
        },
        "write": write,
        "disk_raw_sequential_read_gb_per_s": disk_gbps,
        "measured": measured,
        "extrapolated_full_checkpoint": {
            "how": "allocation + measured load seconds x full_fp32_bytes / written_bytes (linear in bytes read); "
            "peak host RSS: the measured value (one shard mapped at a time, not growing with the shard count)",
            "cold_seconds": measured["alloc_seconds"] + measured["cold"]["seconds"] * scale,
            "warm_seconds": measured["alloc_seconds"] + measured["warm"]["seconds"] * scale,
            "peak_rss_growth_bytes": measured["cold"]["peak_rss_growth_bytes"] * (max(shard_bytes) / largest_written),
            "largest_full_shard_bytes": max(shard_bytes),
            "largest_written_shard_bytes": largest_written,
        },
        "total_benchmark_seconds": time.perf_counter() - t_start,
    }
    config = {
        "dir": str(folder),
        "device": device,
        "shards": args.shards,
        "quick": args.quick,
        "dtype_on_disk": "float32",
        "dtype_loaded": "bfloat16",
        "dit_config": cfg.to_official(),
    }
    write_result(out_path, "load_checkpoint", device, config, results)
    m, e = measured, results["extrapolated_full_checkpoint"]
    print(
        f"wrote {written}/8 shards ({written_bytes / GB:.1f} GB fp32); raw disk read {disk_gbps:.2f} GB/s\n"
        f"measured: alloc {m['alloc_seconds']:.2f} s; cold load {m['cold']['seconds']:.1f} s "
        f"({m['cold']['gb_per_s']:.2f} GB/s), warm {m['warm']['seconds']:.1f} s ({m['warm']['gb_per_s']:.2f} GB/s); "
        f"peak host RSS growth {m['cold']['peak_rss_growth_bytes'] / GB:.2f} GB cold "
        f"(file-backed {m['cold']['peak_rss_file_backed_growth_bytes'] / GB:.2f}, "
        f"anon {m['cold']['peak_rss_anon_growth_bytes'] / GB:.2f}); bit-exact {m['spot_check']['bit_exact']}\n"
        f"extrapolated to all 8 shards ({full_bytes / GB:.1f} GB): cold {e['cold_seconds']:.1f} s, "
        f"warm {e['warm_seconds']:.1f} s\n-> {out_path}"
    )
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
