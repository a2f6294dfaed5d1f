"""InteractiveWorld: the engine under the Gym env, on tiny random models."""

import pytest
import torch
from helpers import tiny_world


def test_reset_step_shapes_and_determinism():
    world = tiny_world(batch_size=2)
    img = torch.rand(2, 3, 32, 48) * 2 - 1
    runs = []
    for _ in range(2):
        first = world.reset(img, ["a corridor", "a door"], seeds=[1, 2])
        assert first.shape == (2, 1, 32, 48, 3) and first.dtype == torch.uint8
        frames = [world.step(torch.tensor([[1, 0, 0, 0, 0.5, 0], [0, 1, 0, 0, 0, 0]]))[0] for _ in range(3)]
        runs.append(torch.cat(frames, 1))
    assert runs[0].shape == (2, 12, 32, 48, 3)
    assert torch.equal(runs[0], runs[1])
    _, timing = world.step(torch.zeros(2, 6))
    assert set(timing) == {"generate_ms", "decode_ms", "step_ms"}


def test_overlapped_cache_pass_gives_the_same_frames():
    """``overlap_cache_pass`` reorders work (the cache pass beside the decode), never changes a frame: switched on
    mid-episode, through a row restart and teacher forcing."""
    img = torch.rand(2, 3, 32, 48) * 2 - 1
    act = torch.tensor([[1, 0, 0, 0, 0.5, 0], [0, 0, 0, 1, -0.5, 0.2]])
    runs = []
    for overlap in (False, True):
        world = tiny_world(batch_size=2)
        world.reset(img, ["x", "y"], seeds=[1, 2])
        frames = [world.step(act)[0]]
        world.overlap_cache_pass = overlap
        frames.append(world.step(act)[0])
        world.reset(img[1:], ["y"], seeds=[9], rows=[0])
        frames += [world.step(-act)[0], world.step(act, context_latents=torch.zeros(2, 16, 1, 4, 6))[0]]
        frames.append(world.step(act)[0])
        runs.append(torch.cat(frames, 1))
        assert world.overlap_cache_pass is overlap
    assert torch.equal(runs[0], runs[1])


def test_row_restart_matches_fresh_world():
    world = tiny_world(batch_size=2)
    img = torch.rand(2, 3, 32, 48) * 2 - 1
    act = torch.tensor([[1, 0, 0, 0, 0.5, 0], [0, 0, 0, 1, -0.5, 0.2]])
    world.reset(img, ["x", "y"], seeds=[1, 2])
    world.step(act)
    world.reset(img[1:], ["y"], seeds=[9], rows=[0])  # row 0 restarts with row 1's image
    batched, _ = world.step(act)
    single = tiny_world(batch_size=1)
    single.reset(img[1:], ["y"], seeds=[9])
    alone, _ = single.step(act[:1])
    assert (batched[0].int() - alone[0].int()).abs().max() <= 1


def test_bad_actions_and_order():
    world = tiny_world(batch_size=1)
    with pytest.raises(RuntimeError, match="reset"):
        world.step(torch.zeros(1, 6))
    world.reset(torch.zeros(1, 3, 32, 48), ["x"])
    with pytest.raises(ValueError, match="actions must be"):
        world.step(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="images must be"):
        world.reset(torch.zeros(1, 3, 30, 48), ["x"])


def test_bundle_round_trip(tmp_path):
    import numpy as np

    from world_model.bundle import load_world, save_world

    world = tiny_world(batch_size=1)
    start = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    save_world(tmp_path / "w", world, start_image=start, notes={"trained": False}, dtype=torch.float32)
    loaded = load_world(tmp_path / "w", dtype=torch.float32)
    assert np.array_equal(loaded.start_image, start) and loaded.notes == {"trained": False}
    assert loaded.spec == world.spec
    img = torch.rand(1, 3, 32, 48) * 2 - 1
    act = torch.tensor([[1, 0, 0, 0, 0.3, 0.0]])
    outs = []
    for w in (world, loaded):
        w.reset(img, ["a room"], seeds=[3])
        outs.append(w.step(act)[0])
    assert torch.equal(outs[0], outs[1])


def test_load_world_errors(tmp_path):
    from world_model.bundle import DEFAULT_BUNDLE, WorldNotAvailableError, load_world

    if not (DEFAULT_BUNDLE / "world.json").exists():
        with pytest.raises(WorldNotAvailableError, match="not trained and shipped yet"):
            load_world(None)
    with pytest.raises(WorldNotAvailableError, match="not a folder here nor a known preset"):
        load_world("no-such-model")
    with pytest.raises(WorldNotAvailableError, match="has no weights in this package"):
        load_world("lingbot-world-fast")
    with pytest.raises(ValueError, match="neither a world bundle"):
        load_world(tmp_path)


def test_untrained_doom_world_runs_and_says_so():
    from world_model import doom
    from world_model.bundle import load_world

    with pytest.warns(UserWarning, match="RANDOM weights"):
        world = load_world(doom.UNTRAINED_NAME)
    assert world.start_image.shape == (doom.HEIGHT, doom.WIDTH, 3) and world.notes == {"trained": False}
    img = torch.from_numpy(world.start_image.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1  # it is read-only
    world.reset(img, ["a dark corridor"])
    frames, _ = world.step(torch.tensor([[1, 0, 0, 0, 0.5, 0.0]]))
    assert frames.shape == (1, 4, doom.HEIGHT, doom.WIDTH, 3)


def test_world_size_must_be_a_multiple_of_16():
    from world_model.world import WorldSpec

    for h, w in ((40, 48), (32, 56)):
        with pytest.raises(ValueError, match=f"world size {h}x{w} must be a multiple of 16"):
            WorldSpec(h, w)
    assert WorldSpec(32, 48).frames_per_step == 4 * WorldSpec(32, 48).stream.block_frames  # sizes that fit pass


def test_doom_shipped_weights_fit_the_40_mib_budget():
    """What the embedded default ships in bf16: the DiT, the VAE encoder, the light decoder, the text encoder."""
    from world_model import doom
    from world_model.checkpoints.text_encoders import SmallTextEncoder
    from world_model.dit import WanDiT
    from world_model.vae import LightDecoder, WanVAE, is_encoder_key

    with torch.device("meta"):
        vae = WanVAE(doom.vae_config())
        parts = {
            "dit": sum(p.numel() for p in WanDiT(doom.dit_config()).parameters()),
            "vae_encoder": sum(p.numel() for n, p in vae.state_dict().items() if is_encoder_key(n)),
            "light": sum(p.numel() for p in LightDecoder(doom.light_decoder_config()).parameters()),
            "text": sum(p.numel() for p in SmallTextEncoder(doom.text_encoder_config()).parameters()),
        }
    assert 2 * sum(parts.values()) <= 40 * 2**20, parts


def test_teacher_forcing_with_the_worlds_own_latents_is_free_running():
    """``step(context_latents=...)`` writes the given latents as context: given the latents the world generated
    itself, it is the free-running world; given others, the next step changes (cache and decoder both use them)."""
    img = torch.rand(1, 3, 32, 48) * 2 - 1
    acts = [torch.tensor([[1, 0, 0, 0, 0.3, 0.0]]), torch.tensor([[0, 0, 0, 1, -0.3, 0.2]])]
    free, forced, other = (tiny_world(batch_size=1) for _ in range(3))
    latents, out = [], {"free": [], "forced": [], "other": []}
    step = free.generator.step
    free.generator.step = lambda *a, **k: latents.append(step(*a, **k)) or latents[-1]
    for w in (free, forced, other):
        w.reset(img, ["a room"], seeds=[3])
    for i, a in enumerate(acts):
        out["free"].append(free.step(a)[0])
        out["forced"].append(forced.step(a, context_latents=latents[i])[0])
        out["other"].append(other.step(a, context_latents=torch.zeros_like(latents[i]))[0])
    assert all(torch.equal(x, y) for x, y in zip(out["free"], out["forced"]))
    assert torch.equal(out["other"][0], out["free"][0])  # the context only acts on later steps
    assert not torch.equal(out["other"][1], out["free"][1])
    with pytest.raises(ValueError, match="context latents must be"):
        forced.step(acts[0], context_latents=latents[0][:, :, :, :2])
