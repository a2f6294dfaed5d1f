"""What every benchmark records next to its numbers: device, commit, software, time."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch


def git_commit() -> str:
    """``GIT_COMMIT`` from the environment when set (the GPU box runs a copy of the tree without git), else git's."""
    env = os.environ.get("GIT_COMMIT", "").strip()
    if env and env != "unknown":
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GIT_COMMIT", "unknown")


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    else:
        info.update(cpu=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads())
    return info


def write_result(path: str | Path, name: str, device: str, config: dict[str, Any], results: Any) -> dict[str, Any]:
    record = {
        "benchmark": name,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
        "device": device_info(device),
        "config": config,
        "results": results,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    return record


def sync(device: str | torch.device) -> None:
    """Wait for the GPU's queued work (a no-op off CUDA), so that a host timer measures what ran."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def cuda_time_ms(fn, warmup: int = 2, repeat: int = 5) -> list[float]:
    """Per-call milliseconds with CUDA events (synchronising host timer elsewhere)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times
