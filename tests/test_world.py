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
