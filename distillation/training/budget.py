"""Run-time budget: a training job ends cleanly (checkpoint written) before the device call that runs it does."""

from __future__ import annotations

import time


class TimeBudget:
    """``expired()`` once ``max_minutes`` have passed since construction (never, when None)."""

    def __init__(self, max_minutes: float | None) -> None:
        self.start = time.monotonic()
        self.limit = None if max_minutes is None else max_minutes * 60.0
        self._mark = (0.0, 0)  # (elapsed seconds, step) of the last rate reading

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed >= self.limit

    def steps_per_s(self, step: int) -> float:
        """Training steps per second since the previous reading or ``mark``."""
        t0, s0 = self._mark
        now = self.elapsed
        self._mark = (now, step)
        return (step - s0) / max(now - t0, 1e-9)

    def mark(self, step: int) -> None:
        """Start the rate clock at ``step`` (a resumed run starts above 0)."""
        self._mark = (self.elapsed, step)


class JsonlLog:
    """Append-only JSON-lines log (one record per logging step), safe to reopen after a resume."""

    def __init__(self, path) -> None:
        import json
        from pathlib import Path

        self._json = json
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record) -> None:
        with open(self.path, "a") as f:
            f.write(self._json.dumps(record) + "\n")


def learning_rate(base: float, step: int, *, warmup: int, budget: TimeBudget, cooldown: float, start: int = 0) -> float:
    """Linear warm-up over ``warmup`` steps from ``start`` (where the optimizer began fresh), then flat, then a
    linear cool-down to 5% over the last ``cooldown`` fraction of the time budget. The time budget, not a step
    count, ends a run on the GPU box, and a short run gains most from ending at a low rate."""
    lr = base * min(1.0, (step + 1 - start) / max(warmup, 1))
    if cooldown > 0 and budget.limit:
        left = max(0.0, 1.0 - budget.elapsed / budget.limit)
        lr *= max(0.05, min(1.0, left / cooldown))
    return lr
