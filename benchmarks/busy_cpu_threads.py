"""The README's first command on a busy CPU: torch's default threads vs the env's default (``--threads auto``).

    python -m benchmarks.busy_cpu_threads                       # idle and beside 1 CPU burner, both thread settings
    python -m benchmarks.busy_cpu_threads --steps 8 --burners 1 --out benchmarks/results/busy_cpu_threads_cpu2.json

Each run is a fresh ``python -m lingbot_env --model doom-untrained --headless --actions-preset tour --steps N
--record <tmp>.mp4 --threads T`` (the README command, cut to N steps), with ``T`` = ``torch`` (torch's own choice:
one thread per core) or ``auto`` (the default: half the cores, at most 4), on an idle machine and beside
``--burners`` processes that each spin one core (``while True: pass``), started before the run and killed after
it. The CLI's own per-step median and the wall time are recorded, with the load average before each run (a
shared machine has other load too).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result

BURNER = "while True: pass"
LINE = re.compile(
    r"(\d+) steps, (\d+) frames in ([\d.]+) s: ([\d.]+) steps/s, ([\d.]+) frames/s \(median step (\d+) ms\)"
)


def run_cli(threads: str, steps: int, burners: int, timeout: float) -> dict:
    procs = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(burners)]
    try:
        time.sleep(0.5 if burners else 0.0)  # let the burners take their cores
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            readme = ["--model", "doom-untrained", "--headless", "--actions-preset", "tour"]
            record = ["--steps", str(steps), "--record", str(Path(tmp) / "world.mp4"), "--threads", threads]
            cmd = [sys.executable, "-m", "lingbot_env", *readme, *record]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    m = LINE.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return {
        "threads_arg": threads,
        "burners": burners,
        "load_avg_1min_before": load,
        "steps": int(m.group(1)),
        "median_step_ms": float(m.group(6)),
        "steps_per_s": float(m.group(4)),
        "render_seconds": float(m.group(3)),
        "wall_seconds_with_load": wall,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="env steps per run (the CLI reports their median)")
    ap.add_argument("--burners", type=int, default=1, help="CPU-burning processes beside the busy runs")
    ap.add_argument("--threads", default="torch,auto", help="comma-separated --threads values to compare")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle runs")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run at most")
    ap.add_argument("--out", default="benchmarks/results/busy_cpu_threads_cpu2.json")
    args = ap.parse_args(argv)
    import torch

    from lingbot_env.resolve import default_num_threads

    runs = []
    for burners in ([0] if not args.no_idle else []) + [args.burners]:
        for threads in args.threads.split(","):
            r = run_cli(threads, args.steps, burners, args.timeout)
            print(
                f"burners={burners} --threads {threads}: median {r['median_step_ms']:.0f} ms/step "
                f"({r['steps_per_s']:.2f} steps/s; load {r['load_avg_1min_before']:.2f})",
                flush=True,
            )
            runs.append(r)
    config = {
        "command": "python -m lingbot_env --model doom-untrained --headless --actions-preset tour "
        f"--steps {args.steps} --record <tmp>/world.mp4 --threads <T>",
        "steps": args.steps,
        "burners": args.burners,
        "burner": BURNER,
        "torch_default_threads": torch.get_num_threads(),
        "auto_threads": default_num_threads(),
    }
    record = write_result(args.out, "busy_cpu_threads", "cpu", config, runs)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
