"""The streaming generator: reproducible, bounded, and actually driven by its inputs."""

import pytest
import torch
from helpers import tiny_dit

from world_model.kv_cache import CacheConfig
from world_model.sampling import FewStepSchedule
from world_model.streaming import MASK_CHANNELS, StreamConfig, StreamingGenerator


def make(control_dim=7, block=1, first=1, seed=0, cache=None):
    model = tiny_dit(control_dim)
    cfg = StreamConfig(
        block_frames=block,
        first_block_frames=first,
        schedule=FewStepSchedule.self_forcing(),
        cache=cache or CacheConfig("rolling", window_frames=3, sink_frames=1),
    )
    return model, StreamingGenerator(model, cfg, seed=seed)


def inputs(model, b=2, hw=(4, 4), f=1):
    g = torch.Generator().manual_seed(3)
    first = torch.randn(b, 16, 1, *hw, generator=g)
    ctx = torch.randn(b, 5, model.cfg.text_dim, generator=g)
    ctrl = torch.randn(b, 7 * 64, f, *hw, generator=g)
    return first, ctx, ctrl


@pytest.mark.parametrize("block, first", [(1, 1), (3, 1), (3, 3)])
def test_shapes_and_determinism(block, first):
    model, gen = make(block=block, first=first)
    first_lat, ctx, ctrl = inputs(model, f=block)
    runs = []
    for _ in range(2):
        gen.prime(first_lat, ctx)
        runs.append(torch.cat([gen.step(ctrl) for _ in range(3)], dim=2))
    assert runs[0].shape == (2, 16, 3 * block, 4, 4)
    assert torch.equal(runs[0], runs[1])
    assert gen.frames_generated == [(1 if first == 1 else 0) + 3 * block] * 2
    gen.prime(first_lat, ctx, seeds=99)
    assert not torch.allclose(gen.step(ctrl), runs[0][:, :, :block])


def test_control_and_image_change_the_output():
    model, gen = make()
    first_lat, ctx, ctrl = inputs(model)
    gen.prime(first_lat, ctx)
    a = gen.step(ctrl)
    gen.prime(first_lat, ctx)
    b = gen.step(-ctrl)
    gen.prime(first_lat * 0, ctx)
    c = gen.step(ctrl)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_long_stream_constant_memory():
    model, gen = make()
    first_lat, ctx, ctrl = inputs(model, b=1, hw=(2, 2))
    gen.prime(first_lat, ctx)
    nbytes = gen.cache.nbytes
    for _ in range(60):
        out = gen.step(ctrl)
    assert torch.isfinite(out).all() and gen.cache.nbytes == nbytes and gen.frames_generated == [61]


def test_errors():
    model, gen = make()
    first_lat, ctx, ctrl = inputs(model)
    with pytest.raises(RuntimeError, match="prime"):
        gen.step(ctrl)
    with pytest.raises(ValueError, match="first_latent"):
        gen.prime(first_lat[:, :8], ctx)
    with pytest.raises(ValueError, match="first_block_frames"):
        StreamConfig(block_frames=3, first_block_frames=2)
    gen.prime(first_lat, ctx)
    with pytest.raises(ValueError, match="control"):
        gen.step(ctrl[:, :10])


@pytest.mark.parametrize("first", [1, 3])
def test_rows_are_independent_streams(first):
    """A row gives the same frames alone or in a batch, and restarting one row leaves the others untouched."""
    model, gen = make(block=3, first=first)
    first_lat, ctx, ctrl = inputs(model, b=3, f=3)
    gen.prime(first_lat, ctx, seeds=[5, 6, 7])
    batched = [gen.step(ctrl) for _ in range(3)]
    model1, single = make(block=3, first=first)
    single.prime(first_lat[1:2], ctx[1:2], seeds=[6])
    alone = [single.step(ctrl[1:2]) for _ in range(3)]
    for a, b in zip(batched, alone):
        assert torch.allclose(a[1:2], b, atol=1e-4)

    # Restart row 2 after two chunks of a fresh batch: rows 0, 1 continue, row 2 matches a fresh single stream.
    gen.prime(first_lat, ctx, seeds=[5, 6, 7])
    for _ in range(2):
        gen.step(ctrl)
    gen.prime_rows([2], first_lat[0:1], ctx[0:1], seeds=[11])
    after = gen.step(ctrl)
    assert torch.allclose(after[0:2], batched[2][0:2], atol=1e-4)
    single.prime(first_lat[0:1], ctx[0:1], seeds=[11])
    assert torch.allclose(after[2:3], single.step(ctrl[2:3]), atol=1e-4)


@pytest.mark.parametrize("first", [1, 3])
def test_image_condition_marks_frame_zero_only(first):
    """y = mask + latent: ones and the image latent on a stream's latent frame 0, the tail latent elsewhere.

    With the image written alone as context (first=1) no generated frame is frame 0; in the LingBot Fast layout
    (first=3) the first block regenerates frame 0 under the mask."""
    model, gen = make(block=3, first=first)
    first_lat, ctx, _ = inputs(model, b=2, f=3)
    gen.prime(first_lat, ctx, seeds=[1, 2])
    y = gen._y(3, [0, 1])
    mask, lat = y[:, :MASK_CHANNELS], y[:, MASK_CHANNELS:]
    tail = gen.tail_latent.expand(2, -1, 3, -1, -1)
    if first == 1:
        assert gen.frames_generated == [1, 1] and (mask == 0).all() and torch.equal(lat, tail)
        return
    assert gen.frames_generated == [0, 0]
    assert (mask[:, :, 0] == 1).all() and (mask[:, :, 1:] == 0).all()
    assert torch.equal(lat[:, :, :1], first_lat) and torch.equal(lat[:, :, 1:], tail[:, :, 1:])


def test_cache_written_by_the_last_denoising_pass_saves_one_pass_per_chunk():
    """``cache_write="last_pass"``: the same first chunk (the cache before it is the same), one DiT pass fewer per
    chunk, and later chunks that read other context (the last pass's noisy input) than the clean pass writes."""
    outs, calls = {}, {}
    for mode in ("clean", "last_pass"):
        model = tiny_dit(7)
        cfg = StreamConfig(
            block_frames=1, schedule=FewStepSchedule.self_forcing(), cache=CacheConfig("rolling", 3, 1),
            cache_write=mode,
        )  # fmt: skip
        gen = StreamingGenerator(model, cfg, seed=0)
        first_lat, ctx, ctrl = inputs(model)
        gen.prime(first_lat, ctx)
        counted = []
        model.register_forward_hook(lambda *_, seen=counted: seen.append(1))
        outs[mode] = [gen.step(ctrl) for _ in range(3)]
        calls[mode] = len(counted)
        assert gen.frames_generated == [4, 4]
    steps = len(FewStepSchedule.self_forcing().timesteps)
    assert calls == {"clean": 3 * (steps + 1), "last_pass": 3 * steps}
    assert torch.equal(outs["clean"][0], outs["last_pass"][0])
    assert not torch.allclose(outs["clean"][1], outs["last_pass"][1])
    with pytest.raises(ValueError, match="cache_write"):
        StreamConfig(cache_write="never")


def test_cache_write_travels_in_the_bundle_spec_and_old_specs_read_as_clean():
    import dataclasses

    from world_model import doom
    from world_model.bundle import spec_from_dict, spec_to_dict
    from world_model.world import WorldSpec

    spec = WorldSpec(doom.HEIGHT, doom.WIDTH, doom.FPS, doom.action_config(), doom.student_stream())
    fast = dataclasses.replace(spec, stream=dataclasses.replace(spec.stream, cache_write="last_pass"))
    assert spec_from_dict(spec_to_dict(fast)).stream.cache_write == "last_pass"
    d = spec_to_dict(spec)
    del d["stream"]["cache_write"]
    assert spec_from_dict(d).stream.cache_write == "clean"


@pytest.mark.parametrize("block, first", [(1, 1), (3, 3)])
def test_overlapped_cache_passes_give_the_same_latents(block, first):
    """``overlap=True`` queues every cache pass (on CPU: run at the next use of the cache): the same latents as the
    immediate passes, through restarts of single rows, teacher forcing and a re-prime with a pass still queued."""
    model = tiny_dit(7)
    first_lat, ctx, ctrl = inputs(model, b=3, f=block)
    runs = []
    for overlap in (False, True):
        cfg = StreamConfig(
            block_frames=block,
            first_block_frames=first,
            schedule=FewStepSchedule.self_forcing(),
            cache=CacheConfig("rolling", window_frames=3, sink_frames=1),
        )
        gen = StreamingGenerator(model, cfg, seed=5, overlap=overlap)
        out = []
        gen.prime(first_lat, ctx)
        if overlap and first == 1:
            assert gen._pending is not None  # the image's pass is queued, not run
        out.append(gen.step(ctrl))
        if first == 1:
            gen.prime_rows([1], first_lat[2:3] * 0.5, ctx[2:3], seeds=[11])
        out.append(gen.step(ctrl * 0.5))
        out.append(gen.step(-ctrl, context=out[-1] * 0.9 if first == 1 else None))  # teacher forcing
        out.append(gen.step(ctrl))
        counts = list(gen.frames_generated)
        gen.prime(first_lat, ctx, seeds=[1, 2, 3])  # a queued pass of the old streams is dropped, not run
        out.append(gen.step(ctrl))
        gen.flush()
        runs.append((torch.cat(out, dim=2), counts, gen.cache.nbytes))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]


def test_overlap_queues_the_pass_and_flush_runs_it():
    model, gen = make()
    gen.overlap = True
    first_lat, ctx, ctrl = inputs(model)
    gen.prime(first_lat, ctx)
    gen.step(ctrl)
    assert gen._pending is not None and gen.frames_generated == [2, 2]  # counted when queued
    gen.flush()
    assert gen._pending is None
    gen.reset()
    assert gen._pending is None and not gen.primed
