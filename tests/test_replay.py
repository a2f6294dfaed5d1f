"""The device replay buffer that lets small models train faster than the game workers play."""

import itertools

import pytest
import torch
from test_training import small_source, tracked, vae_cfg

from distillation import train_vae
from distillation.training.replay import ReplayBuffer, replayed_video_stream


def numbered(closed):
    try:
        for k in itertools.count():
            yield {"x": torch.full((2, 3), float(k)), "name": [f"{k}a", f"{k}b"]}
    finally:
        closed.append(True)


def test_replay_holds_the_latest_examples_and_closes_its_source():
    closed: list[bool] = []
    replay = ReplayBuffer(numbered(closed), capacity=6, device="cpu", transform=lambda b: dict(b))
    replay.refill(min_size=6)
    assert replay.size == 6 and replay.seen >= 6
    drawn = replay.sample(50, torch.Generator().manual_seed(0))
    assert drawn["x"].shape == (50, 3)
    for x, name in zip(drawn["x"], drawn["name"]):  # tensor rows and list entries stay paired
        assert name.startswith(str(int(x[0])))
    while replay.seen < 20:  # the ring keeps only the newest ``capacity``
        replay.refill(min_size=6)
    held = {int(v) for v in replay.store["x"][:, 0].tolist()}
    assert min(held) >= replay.seen // 2 - 3
    replay.close()
    assert closed == [True] and not replay._thread.is_alive()


def test_replay_rejects_an_empty_capacity_or_reuse_below_one():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(iter(()), capacity=0, device="cpu", transform=dict)
    with pytest.raises(ValueError, match="reuse"):
        ReplayBuffer(iter(()), capacity=4, device="cpu", transform=dict, reuse=0.5)


def test_replay_reuse_caps_what_is_stored_per_example_drawn():
    import time

    replay = ReplayBuffer(numbered([]), capacity=64, device="cpu", transform=lambda b: dict(b), reuse=4)
    gen = torch.Generator().manual_seed(0)
    replay.refill(min_size=2)
    for _ in range(20):
        time.sleep(0.01)  # the source always has batches waiting: only the cap holds storing back
        replay.refill(min_size=2)
        replay.sample(8, gen)
    # 152 drawn before the last refill at reuse 4 -> 38 stored, give or take a batch of 2 (uncapped: ~160)
    assert replay.drawn == 160 and 38 <= replay.seen <= 38 + 4
    replay.close()


def test_vae_trains_from_the_replay_and_stops_the_source(tmp_path):
    closed: list[str] = []
    result = train_vae.train(vae_cfg(tmp_path, max_steps=3, replay_clips=8), tracked(small_source, closed))
    assert result["step"] == 3 and torch.isfinite(torch.tensor(result["val_psnr"]))
    assert "train" in closed
    assert (tmp_path / "export" / "vae_encoder.safetensors").exists()


def test_replayed_clips_are_played_clips_some_mirrored_and_closing_stops_the_source():
    closed: list[bool] = []
    played: list[torch.Tensor] = []

    def clips():
        try:
            for k in itertools.count():
                video = torch.randint(0, 1000, (2, 3, 5, 4, 6), generator=torch.Generator().manual_seed(k)).float()
                played.extend(video)  # integers below 2048: exact through the fp16 store
                yield {"video": video}
        finally:
            closed.append(True)

    stream = replayed_video_stream(clips(), capacity=8, batch_size=4, device="cpu", seed=0)
    drawn = torch.cat([next(stream) for _ in range(10)])
    assert drawn.shape == (40, 3, 5, 4, 6) and drawn.dtype == torch.float32
    as_played = [any(torch.equal(c, p) for p in played) for c in drawn]
    flipped = [any(torch.equal(c.flip(-1), p) for p in played) for c in drawn]
    assert all(a or f for a, f in zip(as_played, flipped))
    assert 0 < sum(flipped) < 40  # mirrored at random
    stream.close()
    assert closed == [True]
