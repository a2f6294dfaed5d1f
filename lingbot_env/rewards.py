"""The reward protocol of the generated-world envs: what ``reward_fn`` and ``termination_fn`` are, and their hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RewardFn(Protocol):
    """What ``reward_fn`` is: ``reward_fn(obs, action, info) -> float``.

    ``obs`` uint8 [H, W, 3] (the step's last frame), ``action`` float32 [6] (as applied, after clipping), ``info``
    the step's info dict (``frames``, ``pose``, ...). ``termination_fn`` has the same shape and returns a bool.

    Optional hooks, for stateful and learned reward heads (the protocol later issues plug into):

    * ``reset(obs, info) -> None``: called at every episode start (``info`` is the reset info), e.g. to clear a
      novelty memory or to embed the start frame once.
    * ``batch(obs [N, H, W, 3], actions [N, 6], info) -> array [N]``: used by the vector env instead of N calls,
      so a learned head runs one batched forward pass; ``info`` holds arrays with a leading env dimension.
    """

    def __call__(self, obs: np.ndarray, action: np.ndarray, info: dict[str, Any]) -> float: ...


TerminationFn = Callable[[np.ndarray, np.ndarray, dict[str, Any]], bool]


def call_reset_hook(fn: Any, obs: np.ndarray, info: dict[str, Any]) -> None:
    hook = getattr(fn, "reset", None)
    if callable(hook):
        hook(obs, info)


class ExploreCells:
    """The exploration reward's bookkeeping: +1 the first time a position falls in a ``cell`` x ``cell`` square
    of the map (Doom map units). The real game env counts it per video frame from the engine's pose; the world's
    learned reward counts it from the poses its step heads integrate: one definition for both."""

    def __init__(self, cell: float = 64.0) -> None:
        if cell <= 0:
            raise ValueError(f"the explore cell must be > 0 map units, got {cell}")
        self.cell = float(cell)
        self.visited: set[tuple[int, int]] = set()

    def reset(self) -> None:
        self.visited = set()

    def visit(self, x: float, y: float) -> int:
        """1 if ``(x, y)`` is in a cell not visited before (and marks it), else 0."""
        key = (int(x // self.cell), int(y // self.cell))
        if key in self.visited:
            return 0
        self.visited.add(key)
        return 1
