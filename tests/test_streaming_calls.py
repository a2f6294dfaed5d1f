"""What one streaming step calls: control prepared once, 4 denoising passes then one t=0 cache-writing pass,
context prepared once per prime, fresh noise for every re-noising."""

import torch
from helpers import tiny_dit

from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import StreamConfig, StreamingGenerator


def _spy(gen):
    dit = gen.dit
    log = {"forward": [], "control": 0, "context": 0, "noise": []}
    forward, prep_control, prep_context, noise = dit.forward, dit.prepare_control, dit.prepare_context, gen._noise

    def fwd(x, t, *args, **kwargs):
        log["forward"].append((x.clone(), t.clone(), kwargs.get("write_cache", False), kwargs.get("attention")))
        return forward(x, t, *args, **kwargs)

    def ctl(*a, **k):
        log["control"] += 1
        return prep_control(*a, **k)

    def ctx(*a, **k):
        log["context"] += 1
        return prep_context(*a, **k)

    def nz(*a, **k):
        out = noise(*a, **k)
        log["noise"].append(out.clone())
        return out

    dit.forward, dit.prepare_control, dit.prepare_context, gen._noise = fwd, ctl, ctx, nz
    return log


def _reset(log):
    log["forward"].clear()
    log["noise"].clear()
    log["control"] = log["context"] = 0


@torch.no_grad()
def test_step_call_pattern():
    model = tiny_dit(7)
    schedule = FewStepSchedule.lingbot_fast()
    assert len(schedule.timesteps) == 4
    gen = StreamingGenerator(model, StreamConfig(2, 1, schedule, CacheConfig("rolling", 4, 1)), seed=0)
    log = _spy(gen)
    g = torch.Generator().manual_seed(0)
    b, hw = 2, (4, 4)
    first = torch.randn(b, 16, 1, *hw, generator=g)
    ctx = torch.randn(b, 5, model.cfg.text_dim, generator=g)

    gen.prime(first, ctx)
    assert log["context"] == 1
    # prime writes the image frame into the cache: one pass at t = 0
    assert [(w, float(t.abs().max())) for _, t, w, _ in log["forward"]] == [(True, 0.0)]
    _reset(log)

    for _ in range(2):
        ctrl = torch.randn(b, 7 * 64, 2, *hw, generator=g)
        gen.step(ctrl)
        assert log["control"] == 1
        assert log["context"] == 0
        calls = log["forward"]
        assert len(calls) == 5
        assert all(a == "streaming" for *_, a in calls)
        assert [w for _, _, w, _ in calls] == [False] * 4 + [True]
        ts = [t.reshape(-1) for _, t, _, _ in calls]
        for t, want in zip(ts[:4], schedule.timesteps):
            assert torch.allclose(t, torch.full_like(t, want))
        assert torch.equal(ts[4], torch.zeros_like(ts[4]))
        # the first pass sees the initial noise; four draws, each different
        noise = log["noise"]
        assert len(noise) == 4
        assert torch.equal(calls[0][0], noise[0])
        for i in range(4):
            for j in range(i + 1, 4):
                assert not torch.allclose(noise[i], noise[j])
        _reset(log)

    gen.prime(first, ctx)
    assert log["context"] == 1 and log["control"] == 0
