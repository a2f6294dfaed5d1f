"""Flow-matching schedules and samplers (docs/official_models.md §8).

``x_sigma = (1 - sigma) * x0 + sigma * noise``; the model predicts ``v = noise - x0`` and is called with
``t = 1000 * sigma``. A shift ``s`` spends more steps at high noise: ``sigma' = s * sigma / (1 + (s - 1) * sigma)``.

* :func:`sample_euler` and :class:`UniPC` (order 2, bh2, data prediction) integrate the probability-flow ODE for the
  bidirectional teacher, with classifier-free guidance through :func:`guided`.
* :class:`FewStepSchedule` is the student's short list of timesteps: denoise to ``x0``, re-noise with fresh noise to
  the next timestep, and so on (LingBot Fast's grid indices and Self-Forcing's warped list are both expressible).

A *velocity function* here is ``fn(x, t) -> v`` with ``t`` a float tensor ``[B]`` in [0, 1000].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    return shift * sigma / (1 + (shift - 1) * sigma)


def sigma_schedule(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """``num_steps + 1`` float64 sigmas from 1 down to 0 (uniform in the unshifted sigma, then shifted)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), shift)


def guided(
    cond: VelocityFn, uncond: VelocityFn | None, scale: float, interval: tuple[float, float] | None = None
) -> VelocityFn:
    """Classifier-free guidance ``uncond + g * (cond - uncond)``; ``scale == 1`` or no ``uncond`` skips it.

    ``interval = (lo, hi)`` guides only at noise levels ``lo <= sigma <= hi`` and runs ``cond`` alone elsewhere
    (guidance in a limited interval, Kynkaanniemi et al. 2024: the layout and motion are set at high noise, and
    guiding the low-noise steps mostly over-sharpens)."""
    if uncond is None or scale == 1.0:
        return cond

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if interval is not None and not interval[0] <= float(t.max()) / NUM_TRAIN_TIMESTEPS <= interval[1]:
            return cond(x, t)
        u = uncond(x, t)
        return u + scale * (cond(x, t) - u)

    return fn


def switch_experts(high: VelocityFn, low: VelocityFn, boundary_t: float) -> VelocityFn:
    """Wan2.2 / LingBot Base's two experts: ``high`` while ``t >= boundary_t`` (947 for LingBot), else ``low``."""

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return high(x, t) if float(t.max()) >= boundary_t else low(x, t)

    return fn


def _t(sigma: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), NUM_TRAIN_TIMESTEPS * sigma, device=x.device, dtype=torch.float32)


def sample_euler(fn: VelocityFn, noise: torch.Tensor, sigmas: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """First-order ODE solve from ``sigmas[0]`` to ``sigmas[-1]``: ``x += (sigma_next - sigma) * v``."""
    x = noise.float()
    for i in tqdm(range(len(sigmas) - 1), disable=not progress, desc="euler"):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (s_next - s) * fn(x, _t(s, x)).float()
    return x


class UniPC:
    """UniPC multistep solver, order 2 (bh2 variant) in data (x0) prediction, for flow matching.

    Each step: a predictor extrapolates from the last two x0 predictions; after the model is evaluated at the new
    point, a corrector refines that point with the new x0 (one model call per step, like Euler). With flow matching
    ``alpha = 1 - sigma`` and ``lambda = log(alpha / sigma)``. The last step is first order and lands on x0.
    """

    def __init__(self, sigmas: torch.Tensor, order: int = 2) -> None:
        if order not in (1, 2):
            raise ValueError("UniPC order must be 1 or 2")
        self.sigmas = [float(s) for s in sigmas]
        self.order = order

    @staticmethod
    def _lambda(sigma: float) -> float:
        if sigma <= 0:
            return math.inf
        if sigma >= 1:
            return -math.inf
        return math.log(1 - sigma) - math.log(sigma)

    def _update(
        self,
        x: torch.Tensor,
        m0: torch.Tensor,
        s0: float,
        s_t: float,
        prev: tuple[torch.Tensor, float] | None,
        m_t: torch.Tensor | None,
    ) -> torch.Tensor:
        """From ``x`` at ``s0`` (x0 estimate ``m0``) to ``s_t``. ``prev`` = (x0 estimate, sigma) one step back for the
        second-order term; ``m_t`` = x0 estimate at ``s_t`` for the corrector."""
        if s_t <= 0:
            return m0 if m_t is None else m_t
        if prev is not None and not math.isfinite(self._lambda(prev[1])):
            prev = None  # a step back at sigma = 1 has lambda = -inf: no usable second-order information
        alpha_t = 1 - s_t
        h = self._lambda(s_t) - self._lambda(s0)
        hh = -h
        h_phi_1 = math.expm1(hh)  # e^{-h} - 1
        b_h = h_phi_1  # bh2
        h_phi_k = h_phi_1 / hh - 1  # phi_2 term
        x_t = (s_t / s0) * x - alpha_t * h_phi_1 * m0
        # Coefficients of the order-2 terms solve R rho = b with b_i = h_phi_k(i) * i! / B_h.
        b1 = h_phi_k / b_h
        if m_t is None:  # predictor
            if prev is None:
                return x_t
            m1, s1 = prev
            rk = (self._lambda(s1) - self._lambda(s0)) / h
            d1 = (m1 - m0) / rk
            return x_t - alpha_t * b_h * 0.5 * d1
        # corrector
        d1_t = m_t - m0
        if prev is None:
            return x_t - alpha_t * b_h * 0.5 * d1_t
        m1, s1 = prev
        rk = (self._lambda(s1) - self._lambda(s0)) / h
        d1 = (m1 - m0) / rk
        # R = [[1, 1], [rk, 1]], b = [b1, b2]; b2 = (h_phi_k / hh - 1/2) * 2 / B_h
        b2 = (h_phi_k / hh - 0.5) * 2 / b_h
        rho = torch.linalg.solve(
            torch.tensor([[1.0, 1.0], [rk, 1.0]], dtype=torch.float64), torch.tensor([b1, b2], dtype=torch.float64)
        )
        return x_t - alpha_t * b_h * (float(rho[0]) * d1 + float(rho[1]) * d1_t)

    def sample(
        self,
        fn: VelocityFn,
        noise: torch.Tensor,
        progress: bool = False,
        callback: Callable[[int, float, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Integrate from ``noise`` at ``sigmas[0]`` to ``sigmas[-1]``. ``callback(i, sigma_i, x)`` sees the state
        at every noise level of the list but the last (after its correction), e.g. to store ODE trajectories."""
        sig = self.sigmas
        n = len(sig) - 1
        x = noise.float()
        history: list[tuple[torch.Tensor, float]] = []  # (x0 estimate, sigma), newest last
        last_x: torch.Tensor | None = None
        for i in tqdm(range(n), disable=not progress, desc="unipc"):
            s = sig[i]
            m = x - s * fn(x, _t(s, x)).float()  # x0 prediction
            if last_x is not None:  # correct the point we just predicted, using the new x0 estimate
                prev = history[-2] if len(history) >= 2 and self.order == 2 else None
                x = self._update(last_x, history[-1][0], history[-1][1], s, prev, m)
            if callback is not None:
                callback(i, s, x)
            history.append((m, s))
            history = history[-2:]
            order = min(self.order, len(history), n - i)  # warm up, and finish first-order
            prev = history[-2] if order == 2 else None
            last_x = x
            x = self._update(x, m, s, sig[i + 1], prev, None)
        return x


def sample_unipc(fn: VelocityFn, noise: torch.Tensor, sigmas: torch.Tensor, progress: bool = False) -> torch.Tensor:
    return UniPC(sigmas).sample(fn, noise, progress)


SOLVERS = {"euler": sample_euler, "unipc": sample_unipc}


@dataclass(frozen=True)
class FewStepSchedule:
    """Timesteps (in [0, 1000], decreasing) of a few-step student; one denoise + re-noise per entry."""

    timesteps: tuple[float, ...]

    def __post_init__(self) -> None:
        ts = self.timesteps
        if not ts or any(not 0 < t <= NUM_TRAIN_TIMESTEPS for t in ts) or list(ts) != sorted(ts, reverse=True):
            raise ValueError(f"few-step timesteps must be decreasing values in (0, 1000], got {ts}")

    @property
    def sigmas(self) -> tuple[float, ...]:
        return tuple(t / NUM_TRAIN_TIMESTEPS for t in self.timesteps)

    @classmethod
    def from_grid(cls, indices: Sequence[int], grid_size: int = 1000, shift: float = 10.0) -> FewStepSchedule:
        """Pick ``indices`` of a ``grid_size``-step shifted grid (LingBot Fast: [0, 179, 358, 679], shift 10)."""
        grid = shift_sigma(1.0 - torch.arange(grid_size, dtype=torch.float64) / grid_size, shift)
        return cls(tuple(float(grid[i]) * NUM_TRAIN_TIMESTEPS for i in indices))

    @classmethod
    def warped(cls, timesteps: Sequence[float], shift: float) -> FewStepSchedule:
        """Shift a list of timesteps (Self-Forcing: [1000, 750, 500, 250] with shift 5 -> 1000, 937.5, 833.3, 625)."""
        return cls(tuple(float(shift_sigma(t / NUM_TRAIN_TIMESTEPS, shift)) * NUM_TRAIN_TIMESTEPS for t in timesteps))

    @classmethod
    def lingbot_fast(cls) -> FewStepSchedule:
        return cls.from_grid([0, 179, 358, 679], grid_size=1000, shift=10.0)

    @classmethod
    def self_forcing(cls) -> FewStepSchedule:
        return cls.warped([1000, 750, 500, 250], shift=5.0)

    def sample(
        self,
        fn: VelocityFn,
        noise: torch.Tensor,
        generator: torch.Generator | None = None,
        noise_fn: Callable[[], torch.Tensor] | None = None,
        exit_step: int | None = None,
        finish: bool = False,
    ) -> torch.Tensor:
        """Denoise ``noise`` (taken to sit at ``timesteps[0]``) to a clean ``x0`` estimate. Fresh noise for each
        re-noising comes from ``noise_fn()`` if given (e.g. one generator per batch row), else from ``generator``.

        ``exit_step`` (training a student, Self-Forcing): stop at that denoising step and return its ``x0``; only
        that pass records gradients (when grad mode is on), the ones before it run without. None runs them all.
        ``finish``: after the exit step, go on to the last step without gradients (their ``x0`` is dropped), so
        that ``fn`` sees every pass inference makes and the noise draws are inference's: for a caller whose
        last pass has an effect of its own (it writes the KV cache with ``cache_write="last_pass"``)."""
        x = noise.float()
        sig = self.sigmas
        stop = len(sig) - 1 if exit_step is None else exit_step
        if not 0 <= stop < len(sig):
            raise ValueError(f"exit_step must be in [0, {len(sig) - 1}], got {exit_step}")
        end = len(sig) - 1 if finish else stop
        grad = torch.is_grad_enabled()
        for i, s in enumerate(sig[: end + 1]):
            with torch.set_grad_enabled(grad and i == stop):
                x0_i = x - s * fn(x, _t(s, x)).float()
            if i == stop:
                x0 = x0_i
            if i < end:
                if noise_fn is not None:
                    fresh = noise_fn().to(x)
                else:
                    fresh = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = (1 - sig[i + 1]) * x0_i.detach() + sig[i + 1] * fresh
        return x0
