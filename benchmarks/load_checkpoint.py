"""Time and host memory of loading a full-size LingBot expert (fp32 shards) into bf16 on the GPU.

The checkpoint is one LingBot-World Base-Cam expert (18.54B params, 74.2 GB fp32) in the official layout: the
state dict split into 8 shards of about equal size, ``diffusion_pytorch_model-0000k-of-00008.safetensors`` +
``diffusion_pytorch_model.safetensors.index.json``, random fp32 values. The full-size bf16 model (37 GB) is
allocated on the GPU, and exactly the code path of ``load_model`` (``load_weights_``: header checks, then shard by
shard through ``safe_open``, each fp32 tensor converted into its bf16 parameter) reads the shards into it.

Where the shards go. The GPU box's disk (64 GiB) holds about 6 of the 8 shards. ``--overflow-dir /dev/shm`` puts the
shards that do not fit on ``--dir``'s disk in that (RAM-backed) folder instead, symlinked into ``--dir`` so the
loader sees one ordinary folder; with ``--grow-tmpfs`` a tmpfs too small for them is remounted larger (root).
``--strict`` requires all 8 shards and loads them strictly, as a user's load is; it fails before writing anything
if they do not fit. Without it, as many shards as fit are written and loaded non-strictly, and the full-size time
is extrapolated (the old mode: ``--shards 1``).

Writing is fast because nothing is generated: every tensor is a window, at a name-dependent offset, of one random
fp32 buffer the size of the largest tensor, streamed into the file (no shard is materialised in memory, and the
loaded values can be checked bit-exactly). Measured on the CPU at small scale (512 MiB, a loaded 2-core machine):
``torch.randn`` generates 0.22 GB/s per core and ``safetensors.save_file`` needs the whole shard in memory, while
streaming windows runs at the speed of the write path (0.23 GB/s to that disk, 0.54 GB/s to /dev/shm there;
1.38 GB/s incl. fsync to the H100 box's disk). Shards are written by ``--write-threads`` threads.

What the JSON says:

* measured: GPU allocation time; the load of all written shards read cold (disk shards evicted from the page cache
  with ``posix_fadvise(DONTNEED)`` after an ``fsync``; tmpfs pages cannot be evicted, so shm shards are always
  resident) and warm (page cache hot); per location (``disk``, ``shm``) the same, loading only that location's
  shards; raw sequential read speed of one shard per location; peak host RSS growth (VmHWM, reset before each
  load) and the peak anonymous / file-backed / shmem split (sampled every 20 ms); a bit-exact check of sampled
  tensors. The shm shards also hold RAM outside the process (``meminfo``).
* extrapolated (only when fewer than 8 shards were written, labelled so): load time = allocation + measured
  seconds per byte x 74.2 GB; peak RSS scaled by largest shard / largest written shard.

Usage::

    # all 8 shards, strictly: 6 on the disk, 2 in /dev/shm (about 3-5 minutes on the H100 box)
    GIT_COMMIT=<hash> python3 -m benchmarks.load_checkpoint --strict --dir /root/ckpt --overflow-dir /dev/shm \\
        --grow-tmpfs --out "$OUT/load_checkpoint_h100_8shards.json"
    python -m benchmarks.load_checkpoint --dir /root/ckpt --shards 1   # old mode: 1 shard, extrapolated
    python -m benchmarks.load_checkpoint --quick --shards 8 --strict --overflow-dir /dev/shm --disk-shards 5  # CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import write_result
from world_model.checkpoints.build import build_dit
from world_model.checkpoints.saving import DIFFUSERS_LAYOUT, plan_shards
from world_model.config import WanDiTConfig

GB = 1e9
GIB = 2**30
NUM_SHARDS = 8
DISK_MARGIN = 4 * GIB  # left free on the disk
OVERFLOW_MARGIN = 1 * GIB  # left free in the overflow folder
OFFSET_RANGE = 1 << 20  # tensors are windows of one random buffer at name-dependent offsets below this
SEED = 1234
FULL = WanDiTConfig(control_dim=6)
QUICK = WanDiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=8, text_dim=256, control_dim=6)
# Load time over write time, from the H100 run (cold read ~1.06x, warm ~0.26x the write time of the same bytes):
# full cold + warm, per-location cold + warm and one raw read; used only to stop writing before the time runs out.
LOAD_OVER_WRITE = 3.0
FIXED_SECONDS = 30.0  # CUDA start, allocation, process start, clean-up


# -- placement -----------------------------------------------------------------------------------------------------
def plan_placement(
    shard_bytes: list[int],
    shards: int,
    disk_free: int,
    overflow_free: int | None = None,
    disk_shards: int | None = None,
    disk_margin: int = DISK_MARGIN,
    overflow_margin: int = OVERFLOW_MARGIN,
) -> list[str]:
    """Where each of the first ``shards`` shards goes: ``"disk"`` while it fits (and fewer than ``disk_shards`` are
    there), else ``"shm"`` (the overflow folder) while that fits. Stops at the first shard that fits nowhere, so the
    result may be shorter than ``shards``; the caller decides whether that is acceptable."""
    locations: list[str] = []
    used = {"disk": 0, "shm": 0}
    for size in shard_bytes[:shards]:
        on_disk = locations.count("disk")
        if (disk_shards is None or on_disk < disk_shards) and used["disk"] + size <= disk_free - disk_margin:
            where = "disk"
        elif overflow_free is not None and used["shm"] + size <= overflow_free - overflow_margin:
            where = "shm"
        else:
            break
        locations.append(where)
        used[where] += size
    return locations


def mount_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) of ``path``, from /proc/mounts (("?", "?") where unreadable)."""
    best = ("?", "?")
    target = str(path.resolve())
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mp = parts[1].replace("\\040", " ")
                inside = target == mp or target.startswith(mp.rstrip("/") + "/")
                if inside and (best[0] == "?" or len(mp) > len(best[0])):
                    best = (mp, parts[2])
    except OSError:
        pass
    return best


def grow_tmpfs(path: Path, need_free: int) -> dict:
    """Remount the tmpfs holding ``path`` so that ``need_free`` bytes are free (root only). Returns what happened."""
    mp, fstype = mount_of(path)
    usage = shutil.disk_usage(path)
    record = {"mount": mp, "fstype": fstype, "size_before": usage.total, "free_before": usage.free}
    if fstype != "tmpfs":
        return {**record, "error": f"{mp} is {fstype}, not tmpfs: not resized"}
    size_gib = -(-(usage.total - usage.free + need_free) // GIB)
    proc = subprocess.run(["mount", "-o", f"remount,size={size_gib}G", mp], capture_output=True, text=True)
    after = shutil.disk_usage(path)
    record.update(requested_gib=size_gib, size_after=after.total, free_after=after.free)
    if proc.returncode != 0:
        record["error"] = (proc.stderr or proc.stdout).strip()[-500:]
    return record


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


def raw_read_gbps(path: Path, cold: bool = True) -> float:
    """Sequential read speed of one file with plain 64 MiB reads (evicted first when ``cold``)."""
    if cold:
        evict(path)
    chunk = bytearray(64 << 20)
    t0, n = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(chunk):
            n += got
    return n / (time.perf_counter() - t0) / GB


# -- the load, in a fresh process ------------------------------------------------------------------------------------
RSS_KEYS = ("RssAnon", "RssFile", "RssShmem")


def _status() -> dict[str, int]:
    out = dict.fromkeys(("VmRSS", "VmHWM", *RSS_KEYS), 0)
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in out:
                out[key] = int(rest.split()[0]) * 1024
    return out


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable", "Cached", "Shmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


class RssSampler:
    """Peak anonymous, file-backed and shmem RSS, sampled every 20 ms in a thread (VmHWM only gives the total)."""

    def __init__(self) -> None:
        self.peak = dict.fromkeys(RSS_KEYS, 0)
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


def subset(info, files: set[Path]):
    """``info`` restricted to the shards in ``files`` (for a non-strict load of one location's shards)."""
    keep = tuple(f for f in info.files.files if f in files)
    return dataclasses.replace(
        info,
        files=dataclasses.replace(info.files, files=keep, weight_map=None),
        tensors={k: e for k, e in info.tensors.items() if e.file in files},
    )


def measure_load(model, info, strict: bool, evict_files: list[Path]) -> dict:
    """One ``load_weights_`` of ``info`` into ``model`` (after evicting ``evict_files``): time and host memory."""
    from world_model.checkpoints.loading import load_weights_

    for f in evict_files:
        evict(f)
    base = _status()
    reset = _reset_peak()
    with RssSampler() as sampler:
        report = load_weights_(model, info, strict=strict)
    end = _status()
    return {
        "seconds": report.seconds,
        "bytes_read": report.bytes_read,
        "gb_per_s": report.bytes_read / report.seconds / GB,
        "shards": len(info.files.files),
        "tensors_loaded": report.loaded,
        "tensors_not_loaded": len(report.missing),
        "peak_rss_growth_bytes": end["VmHWM"] - base["VmRSS"],
        "peak_rss_growth_exact": reset,  # False: VmHWM could not be reset, the growth is an upper bound
        "peak_rss_anon_growth_bytes": sampler.peak["RssAnon"] - base["RssAnon"],
        "peak_rss_file_backed_growth_bytes": sampler.peak["RssFile"] - base["RssFile"],
        "peak_rss_shmem_growth_bytes": sampler.peak["RssShmem"] - base["RssShmem"],
        "rss_after_bytes": end["VmRSS"],
    }


def worker(spec: dict) -> dict:
    """Allocate the full-size bf16 model on the device, then load the shards cold and warm, all and per location."""
    from world_model.checkpoints.loading import inspect_checkpoint

    device, folder, strict = spec["device"], Path(spec["dir"]), spec["strict"]
    cfg = WanDiTConfig(**{**spec["config"], "patch_size": tuple(spec["config"]["patch_size"])})
    cuda = device.startswith("cuda")
    if cuda:
        torch.zeros(1, device=device)  # CUDA context outside the measurement
    out = {"strict": strict, "meminfo_start": _meminfo()}
    model = build_dit(cfg, "meta", torch.bfloat16)
    t0 = time.perf_counter()
    model = model.to_empty(device=device)
    if cuda:
        torch.cuda.synchronize()
    out["alloc_seconds"] = time.perf_counter() - t0
    out["model_bf16_bytes"] = sum(p.numel() * 2 for p in model.parameters())
    info = inspect_checkpoint(folder)
    where = {folder / name: loc for name, loc in spec["locations"].items()}
    on_disk = [f for f in info.files.files if where[f] == "disk"]

    out["cold"] = measure_load(model, info, strict, on_disk)
    out["warm"] = measure_load(model, info, strict, [])
    out["meminfo_after_warm"] = _meminfo()
    per_location, full_seconds = {}, out["cold"]["seconds"] + out["warm"]["seconds"]
    locations = sorted(set(where.values()))
    if len(locations) > 1:
        for loc in locations:
            if time.time() + 1.2 * full_seconds > spec["deadline"]:
                per_location[loc] = {"skipped": "not enough time left before the deadline"}
                continue
            files = {f for f in info.files.files if where[f] == loc}
            part = subset(info, files)
            per_location[loc] = {
                "cold": measure_load(model, part, False, [f for f in files if loc == "disk"]),
                "warm": measure_load(model, part, False, []),
            }
    out["per_location"] = per_location
    if cuda:
        out["gpu_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    # Bit-exact spot check: sampled tensors equal the written fp32 windows rounded to bf16.
    buf = random_buffer(spec["max_numel"])
    state = model.state_dict()
    names = [n for n in spec["written_names"] if n in state]
    picks = sorted({names[0], names[-1], *names[:: max(1, len(names) // 8)]})
    ok = True
    for n in picks:
        p = state[n]
        want = buf[tensor_offset(n) : tensor_offset(n) + p.numel()].view(p.shape).to(torch.bfloat16)
        ok &= torch.equal(p.cpu(), want)
    out["spot_check"] = {"tensors": len(picks), "bit_exact": bool(ok)}
    return out


# -- driver ----------------------------------------------------------------------------------------------------------
def write_shards(
    jobs: list[tuple[int, Path, str]],
    plan: list[list[str]],
    shapes: dict[str, tuple[int, ...]],
    shard_bytes: list[int],
    buf: torch.Tensor,
    threads: int,
    may_continue,
) -> dict[int, dict]:
    """Write ``(k, path, location)`` jobs with ``threads`` threads; stop submitting when ``may_continue(done)``
    turns False. Returns ``{k: {"location", "seconds", "start", "end"}}`` of the shards written."""
    done: dict[int, dict] = {}

    def one(k: int, path: Path, loc: str) -> tuple[int, dict]:
        t0 = time.perf_counter()
        write_safetensors(path, plan[k], shapes, buf)
        t1 = time.perf_counter()
        return k, {"location": loc, "bytes": shard_bytes[k], "seconds": t1 - t0, "start": t0, "end": t1}

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(one, *job) for job in jobs]
        stopped = False
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            k, rec = fut.result()
            done[k] = rec
            if not stopped and not may_continue(done):
                stopped = True
                for f in futures:
                    f.cancel()  # only the ones not started yet
    return done


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="folder to write the checkpoint into, on the disk to measure (default: a temp one)")
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/load_checkpoint.json)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shards", type=int, default=None, help="shards to write, 1-8 (default 3; 8 if --strict)")
    ap.add_argument("--strict", action="store_true", help="all 8 shards, loaded strictly; fail early if they won't fit")
    ap.add_argument("--overflow-dir", help="put shards that do not fit on --dir's disk here (e.g. /dev/shm)")
    ap.add_argument("--grow-tmpfs", action="store_true", help="remount a too small tmpfs --overflow-dir larger (root)")
    ap.add_argument("--disk-shards", type=int, default=None, help="at most this many shards on --dir's disk")
    ap.add_argument("--write-threads", type=int, default=4, help="shards written at once")
    ap.add_argument("--time-budget", type=float, default=480.0, help="stop writing shards early to stay within (s)")
    ap.add_argument("--keep", action="store_true", help="keep the written checkpoint (default: delete it)")
    ap.add_argument("--reuse", action="store_true", help="reuse a checkpoint this script wrote in --dir before")
    ap.add_argument("--quick", action="store_true", help="tiny model on the CPU (smoke test)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return None

    t_start = time.perf_counter()
    deadline = time.time() + args.time_budget
    args.shards = args.shards or (NUM_SHARDS if args.strict else 3)
    if not 1 <= args.shards <= NUM_SHARDS:
        raise SystemExit(f"--shards must be between 1 and {NUM_SHARDS}")
    if args.strict and args.shards != NUM_SHARDS:
        raise SystemExit(f"--strict loads the whole model: it needs --shards {NUM_SHARDS}")
    cfg = QUICK if args.quick else FULL
    device = "cpu" if args.quick else args.device
    folder = Path(args.dir).resolve() if args.dir else Path(tempfile.mkdtemp(prefix="load_ckpt_"))
    out_path = args.out or (
        str(Path(tempfile.gettempdir()) / "load_checkpoint_quick.json")
        if args.quick
        else "benchmarks/results/load_checkpoint.json"
    )
    overflow = None
    if args.overflow_dir:  # one subfolder per --dir, so that --reuse finds its shards again
        overflow = Path(args.overflow_dir) / f"load_ckpt_{zlib.crc32(str(folder).encode()):08x}"

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_dit(cfg, "meta", torch.float32).state_dict().items()}
    plan = plan_shards([(k, 4 * _numel(s)) for k, s in shapes.items()], num_shards=NUM_SHARDS)
    shard_bytes = [sum(4 * _numel(shapes[n]) for n in names) for names in plan]
    full_bytes = sum(shard_bytes)
    max_numel = max(_numel(s) for s in shapes.values())
    shard_name = lambda k: DIFFUSERS_LAYOUT.shard_name(k + 1, NUM_SHARDS)  # noqa: E731

    placement: dict = {"disk_dir": str(folder), "overflow_dir": str(overflow) if overflow else None}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "bench_meta.json"
        prev = json.loads(meta_path.read_text()) if args.reuse and meta_path.exists() else {}
        reused = (
            bool(prev)
            and prev.get("config") == cfg.to_official()
            and all((folder / shard_name(int(k))).is_file() for k in prev["locations"])
        )
        write: dict = {}
        if reused:
            locations = {int(k): v for k, v in prev["locations"].items()}
        else:
            for f in folder.glob("diffusion_pytorch_model*"):
                f.unlink()
            if overflow is not None:
                shutil.rmtree(overflow, ignore_errors=True)
                overflow.mkdir(parents=True)
            planned_locations = _place(args, folder, overflow, shard_bytes, placement)
            buf = random_buffer(max_numel)
            jobs = [
                (k, (folder if loc == "disk" else overflow) / shard_name(k), loc)
                for k, loc in enumerate(planned_locations)
            ]
            planned = sum(shard_bytes[: len(planned_locations)])
            t0 = time.perf_counter()

            def may_continue(done: dict[int, dict]) -> bool:
                if args.strict:  # all 8 shards or no result: a partial strict load would only fail later
                    return True
                elapsed = time.perf_counter() - t0
                rate = sum(r["bytes"] for r in done.values()) / max(elapsed, 1e-9)
                left = planned - sum(r["bytes"] for r in done.values())
                predicted = time.perf_counter() - t_start + (left + LOAD_OVER_WRITE * planned) / rate + FIXED_SECONDS
                if predicted > args.time_budget:
                    print(
                        f"time budget: predicted {predicted:.0f} s > {args.time_budget:.0f} s, stop writing", flush=True
                    )
                    return False
                return True

            done = write_shards(jobs, plan, shapes, shard_bytes, buf, args.write_threads, may_continue)
            del buf
            write = {
                "seconds": time.perf_counter() - t0,
                "threads": args.write_threads,
                "shards_planned": len(planned_locations),
                "how": "windows of one random fp32 buffer streamed with fsync (nothing generated per shard)",
            }
            write["gb_per_s_incl_fsync"] = sum(r["bytes"] for r in done.values()) / write["seconds"] / GB
            write["per_location"] = {}
            for loc in sorted({r["location"] for r in done.values()}):
                recs = [r for r in done.values() if r["location"] == loc]
                span = max(r["end"] for r in recs) - min(r["start"] for r in recs)
                nbytes = sum(r["bytes"] for r in recs)
                write["per_location"][loc] = {"shards": len(recs), "bytes": nbytes, "seconds": span}
                write["per_location"][loc]["gb_per_s"] = nbytes / span / GB
            locations = {k: done[k]["location"] for k in sorted(done)}
            for k, loc in locations.items():
                if loc == "shm":
                    (folder / shard_name(k)).symlink_to(overflow / shard_name(k))
            weight_map = {n: shard_name(k) for k in locations for n in plan[k]}
            index = {"metadata": {"total_size": sum(shard_bytes[k] for k in locations)}, "weight_map": weight_map}
            (folder / DIFFUSERS_LAYOUT.index_name).write_text(json.dumps(index))
            (folder / "config.json").write_text(json.dumps(cfg.to_official()))
            meta_path.write_text(json.dumps({"config": cfg.to_official(), "locations": locations}))

        written = sorted(locations)
        written_bytes = sum(shard_bytes[k] for k in written)
        names = [n for k in written for n in plan[k]]
        strict = args.strict and len(written) == NUM_SHARDS
        raw_read = {}
        for loc in sorted(set(locations.values())):
            first = folder / shard_name(min(k for k in written if locations[k] == loc))
            raw_read[loc] = raw_read_gbps(first, cold=loc == "disk")

        spec = {"device": device, "dir": str(folder), "max_numel": max_numel, "strict": strict, "deadline": deadline}
        spec["config"] = {k: v for k, v in cfg.to_official().items() if k not in ("_class_name", "model_type")}
        spec["written_names"] = names
        spec["locations"] = {shard_name(k): loc for k, loc in locations.items()}
        root = Path(__file__).resolve().parents[1]
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.load_checkpoint", "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
            cwd=root,
            timeout=max(60.0, deadline - time.time() + 120.0),
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"load worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        measured = json.loads(lines[-1][len("RESULT ") :])

        results = {
            "checkpoint": {
                "model": "LingBot-World Base-Cam expert" if not args.quick else "tiny (quick mode)",
                "params": sum(_numel(s) for s in shapes.values()),
                "tensors": len(shapes),
                "full_fp32_bytes": full_bytes,
                "full_shards": NUM_SHARDS,
                "shard_bytes": shard_bytes,
                "shards_written": len(written),
                "shard_locations": {shard_name(k): locations[k] for k in written},
                "written_bytes": written_bytes,
                "written_bytes_per_location": {
                    loc: sum(shard_bytes[k] for k in written if locations[k] == loc) for loc in sorted(raw_read)
                },
                "written_tensors": len(names),
                "reused_existing_files": bool(reused),
            },
            "placement": placement,
            "write": write,
            "raw_sequential_read_gb_per_s": raw_read,
            "measured": measured,
        }
        if args.strict and not strict:
            results["strict_fallback"] = f"only {len(written)} of {NUM_SHARDS} shards written: loaded non-strictly"
        if len(written) < NUM_SHARDS:
            scale = full_bytes / written_bytes
            largest_written = max(shard_bytes[k] for k in written)
            results["extrapolated_full_checkpoint"] = {
                "how": "allocation + measured load seconds x full_fp32_bytes / written_bytes (linear in bytes read); "
                "peak host RSS: the measured value (one shard mapped at a time, not growing with the shard count)",
                "cold_seconds": measured["alloc_seconds"] + measured["cold"]["seconds"] * scale,
                "warm_seconds": measured["alloc_seconds"] + measured["warm"]["seconds"] * scale,
                "peak_rss_growth_bytes": measured["cold"]["peak_rss_growth_bytes"] * max(shard_bytes) / largest_written,
                "largest_full_shard_bytes": max(shard_bytes),
                "largest_written_shard_bytes": largest_written,
            }
        results["total_benchmark_seconds"] = time.perf_counter() - t_start
        config = {
            "dir": str(folder),
            "overflow_dir": args.overflow_dir,
            "device": device,
            "shards": args.shards,
            "strict": args.strict,
            "disk_shards": args.disk_shards,
            "quick": args.quick,
            "dtype_on_disk": "float32",
            "dtype_loaded": "bfloat16",
            "dit_config": cfg.to_official(),
        }
        record = write_result(out_path, "load_checkpoint", device, config, results)
        print(_summary(results, out_path), flush=True)
        return record
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            if overflow is not None:
                shutil.rmtree(overflow, ignore_errors=True)


def _place(args, folder: Path, overflow: Path | None, shard_bytes: list[int], placement: dict) -> list[int]:
    """Plan where the shards go (growing a tmpfs overflow folder if asked); exits before writing if they won't fit."""
    disk_free = shutil.disk_usage(folder).free
    overflow_free = shutil.disk_usage(overflow).free if overflow is not None else None
    placement.update(disk_free_bytes=disk_free, overflow_free_bytes=overflow_free)
    if overflow is not None:
        placement["overflow_mount"] = dict(zip(("mount", "fstype"), mount_of(overflow)))
        if os.stat(overflow).st_dev == os.stat(folder).st_dev:
            raise SystemExit(f"--overflow-dir {overflow.parent} is on the same filesystem as {folder}: use /dev/shm")
    locations = plan_placement(shard_bytes, args.shards, disk_free, overflow_free, args.disk_shards)
    if len(locations) < args.shards and overflow is not None and args.grow_tmpfs:
        on_disk = len(plan_placement(shard_bytes, args.shards, disk_free, None, args.disk_shards))
        need = sum(shard_bytes[on_disk : args.shards]) + 2 * OVERFLOW_MARGIN
        placement["grow_tmpfs"] = grow_tmpfs(overflow, need)
        overflow_free = shutil.disk_usage(overflow).free
        placement["overflow_free_bytes"] = overflow_free
        locations = plan_placement(shard_bytes, args.shards, disk_free, overflow_free, args.disk_shards)
    placement["planned"] = locations
    if not locations or (args.strict and len(locations) < args.shards):
        where = f"; overflow {overflow}: {overflow_free / GB:.1f} GB free" if overflow is not None else ""
        raise SystemExit(
            f"only {len(locations)} of the {args.shards} shards ({max(shard_bytes) / GB:.1f} GB each at most) fit: "
            f"{folder}: {disk_free / GB:.1f} GB free (keeping {DISK_MARGIN / GIB:.0f} GiB){where}. "
            + (
                "Pass --overflow-dir /dev/shm (and --grow-tmpfs)."
                if overflow is None
                else "Free space or --grow-tmpfs."
            )
        )
    return locations


def _summary(results: dict, out_path: str) -> str:
    c, m = results["checkpoint"], results["measured"]

    def load(r: dict) -> str:
        return (
            f"{r['seconds']:.1f} s ({r['gb_per_s']:.2f} GB/s), peak RSS +{r['peak_rss_growth_bytes'] / GB:.2f} GB "
            f"(anon {r['peak_rss_anon_growth_bytes'] / GB:.2f}, file {r['peak_rss_file_backed_growth_bytes'] / GB:.2f},"
            f" shmem {r['peak_rss_shmem_growth_bytes'] / GB:.2f})"
        )

    lines = [
        f"wrote {c['shards_written']}/{c['full_shards']} shards ({c['written_bytes'] / GB:.1f} GB fp32) "
        f"{c['written_bytes_per_location']}; raw read GB/s {results['raw_sequential_read_gb_per_s']}",
        f"{'strict' if m['strict'] else 'non-strict'} load: alloc {m['alloc_seconds']:.2f} s",
        f"  cold: {load(m['cold'])}",
        f"  warm: {load(m['warm'])}",
    ]
    for loc, r in m["per_location"].items():
        for phase in ("cold", "warm"):
            lines.append(f"  {loc} {phase}: {load(r[phase])}" if phase in r else f"  {loc}: {r.get('skipped')}")
            if phase not in r:
                break
    lines.append(f"  bit-exact spot check: {m['spot_check']['bit_exact']}")
    if "extrapolated_full_checkpoint" in results:
        e = results["extrapolated_full_checkpoint"]
        lines.append(f"extrapolated to all 8 shards: cold {e['cold_seconds']:.1f} s, warm {e['warm_seconds']:.1f} s")
    return "\n".join(lines + [f"-> {out_path}"])


if __name__ == "__main__":
    main()
