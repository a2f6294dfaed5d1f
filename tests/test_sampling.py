"""Flow-matching schedules and solvers against an ODE whose exact solution is known."""

import pytest
import torch

from world_model.sampling import FewStepSchedule, guided, sample_euler, sample_unipc, shift_sigma, sigma_schedule

MU, SD = 2.0, 0.5


def gaussian_velocity(x, t):
    """Exact flow velocity when the data are N(MU, SD^2): x_sigma = (1 - sigma) MU + std(sigma) z."""
    sig = (t / 1000).view(-1, *[1] * (x.ndim - 1)).double()
    std = torch.sqrt((1 - sig) ** 2 * SD**2 + sig**2)
    z = (x.double() - (1 - sig) * MU) / std
    return -MU + ((-(1 - sig) * SD**2 + sig) / std) * z


def errors(solver, steps, shift=1.0):
    noise = torch.randn(2048, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = solver(gaussian_velocity, noise, sigma_schedule(steps, shift))
    return (out.double() - (MU + SD * noise)).abs().max().item()


def test_unipc_is_second_order_and_beats_euler():
    e40, e80 = errors(sample_euler, 40), errors(sample_euler, 80)
    u40, u80 = errors(sample_unipc, 40), errors(sample_unipc, 80)
    assert 1.7 < e40 / e80 < 2.3  # first order
    assert u40 / u80 > 3.0  # second order
    assert u40 < e40 / 5


def test_shift_and_schedule():
    s = sigma_schedule(4, shift=3.0)
    assert s[0] == 1 and s[-1] == 0 and torch.all(s[:-1] > s[1:])
    assert shift_sigma(0.5, 3.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="num_steps"):
        sigma_schedule(0)


def test_few_step_schedules():
    fast = FewStepSchedule.lingbot_fast().timesteps
    assert fast[0] == pytest.approx(1000) and [round(t) for t in fast[1:]] == [979, 947, 825]
    assert FewStepSchedule.self_forcing().timesteps == pytest.approx((1000, 937.5, 833.333, 625), abs=1e-2)
    with pytest.raises(ValueError, match="decreasing"):
        FewStepSchedule((500.0, 900.0))


def test_few_step_sampler_is_exact_for_a_perfect_denoiser():
    """If the model knows x0, any schedule returns x0 whatever the noise draws."""
    x0 = torch.randn(3, 5)

    def v(x, t):
        sig = (t / 1000).view(-1, 1)
        return (x - x0) / sig  # noise - x0, given x = (1 - sig) x0 + sig noise

    out = FewStepSchedule.self_forcing().sample(v, torch.randn(3, 5), torch.Generator().manual_seed(1))
    assert torch.allclose(out, x0, atol=1e-5)


def test_guidance():
    cond = lambda x, t: torch.ones_like(x)
    uncond = lambda x, t: torch.zeros_like(x)
    assert guided(cond, uncond, 5.0)(torch.zeros(2), torch.zeros(2)).tolist() == [5.0, 5.0]
    assert guided(cond, None, 5.0) is cond
    # Guided only inside the interval of noise levels: t = 1000 * sigma.
    limited = guided(cond, uncond, 5.0, interval=(0.6, 1.0))
    at = {sigma: limited(torch.zeros(2), torch.full((2,), 1000.0 * sigma)).tolist() for sigma in (0.9, 0.6, 0.3)}
    assert at == {0.9: [5.0, 5.0], 0.6: [5.0, 5.0], 0.3: [1.0, 1.0]}
