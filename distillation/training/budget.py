"""Run-time budget: a training job ends cleanly (checkpoint written) before the device call that runs it does."""

from __future__ import annotations

import time


class TimeBudget:
    """``expired()`` once ``max_minutes`` have passed since construction (never, when None)."""

    def __init__(self, max_minutes: float | None) -> None:
        self.start = time.monotonic()
        self.limit = None if max_minutes is None else max_minutes * 60.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed >= self.limit


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
