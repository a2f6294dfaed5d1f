"""AgentView: small, gray, stacked frames for policies, the same arrays in single, vector and SB3 envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from lingbot_env.agent_view import AgentView


class Frames(gym.Env):
    """Random 8 x 12 RGB frames; episodes of ``length`` steps."""

    observation_space = spaces.Box(0, 255, (8, 12, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int = 3) -> None:
        self.length, self.t = length, 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, (8, 12, 3), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 0.0, self.t >= self.length, False, {}


def test_frames_are_block_means_and_luma():
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    small = AgentView(size=(6, 4)).frames(x)
    blocks = x.reshape(2, 4, 2, 6, 2, 3).astype(np.float64).mean((2, 4))
    assert small.shape == (2, 4, 6, 3) and np.abs(small - blocks).max() <= 0.5 + 1e-9
    gray = AgentView(gray=True).frames(x)
    luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert gray.shape == (2, 8, 12, 1) and np.abs(gray[..., 0] - luma).max() <= 0.5 + 1e-4
    assert AgentView().frames(x) is x  # the identity view copies nothing
    assert AgentView(size=(6, 4), gray=True).frame_space(Frames.observation_space).shape == (4, 6, 1)


def test_parse_and_record_round_trip_and_bad_views_are_refused():
    view = AgentView.parse("64x48", gray=True, stack=4)
    assert view == AgentView((64, 48), True, 4) and AgentView.from_dict(view.to_dict()) == view
    assert AgentView.from_dict(None).is_identity and AgentView.parse(None).is_identity
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        AgentView.parse("64")
    with pytest.raises(ValueError, match="stack"):
        AgentView(stack=0)
    with pytest.raises(ValueError, match="uint8 image"):
        AgentView(gray=True).frame_space(spaces.Box(0, 1, (4,), np.float32))


def test_single_env_reader_and_vec_frame_stack_see_the_same_arrays():
    """Across an episode end: Gymnasium's wrappers on one env, the reader fed raw frames, and SB3's VecFrameStack
    over the vector path all give the same observations (zeros before the first frame, oldest first)."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import DummyVecEnv

    view = AgentView(size=(6, 4), gray=True, stack=3)
    wrapped, raw = view.wrap(Frames()), Frames()
    venv = view.stack_sb3(DummyVecEnv([lambda: view.wrap(Frames(), stack=False)]))
    assert wrapped.observation_space == view.observation_space(Frames.observation_space)
    assert venv.observation_space.shape == (4, 6, 3)
    eyes = view.reader()
    venv.seed(5)
    got_v = venv.reset()[0]
    got_w, got_r = wrapped.reset(seed=5)[0], eyes(raw.reset(seed=5)[0])
    assert not got_w[..., :2].any()  # nothing seen before the first frame
    for t in range(7):  # two episode ends (length 3)
        assert np.array_equal(got_w, got_r) and np.array_equal(got_w, got_v), t
        obs_v, _, dones, infos = venv.step(np.array([0]))
        obs_w, _, term, _, _ = wrapped.step(0)
        obs_r, _, _, _, _ = raw.step(0)
        got_v, got_w, got_r = obs_v[0], obs_w, eyes(obs_r)
        if term:  # an ended episode: SB3 hands back the next reset already; the others reset now
            assert dones[0] and np.array_equal(infos[0]["terminal_observation"], got_w)
            got_w, _ = wrapped.reset()
            eyes.reset()
            got_r = eyes(raw.reset()[0])


def test_vector_view_resizes_batched_frames():
    venv = AgentView(size=(6, 4)).wrap_vector(gym.vector.SyncVectorEnv([Frames, Frames]))
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (2, 4, 6, 3) and venv.single_observation_space.shape == (4, 6, 3)
    assert venv.step(np.array([0, 1]))[0].shape == (2, 4, 6, 3)
    assert AgentView(stack=4).wrap_vector(venv) is venv  # stacking is VecFrameStack's job there
