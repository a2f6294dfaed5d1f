"""I2V condition: the fast builder equals encoding [image, F-1 fill frames] the slow way, and the prefix bound holds."""

from __future__ import annotations

import pytest
import torch
from test_vae import max_diff, random_vae, single_thread  # noqa: F401 (autouse fixture)

from world_model.vae import I2VConditionBuilder, i2v_condition_slow

TOL = 1e-5


def random_image(b: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("frames", [1, 5, 17, 33])
def test_fast_condition_equals_slow_encode(frames):
    vae = random_vae()
    image = random_image()
    builder = I2VConditionBuilder(vae)
    with torch.no_grad():
        fast = builder(image, frames)
        slow = i2v_condition_slow(vae, image, frames)
    t = 1 + (frames - 1) // 4
    assert fast.shape == (2, 20, t, 4, 4)
    assert torch.equal(fast[:, :4, 0], torch.ones_like(fast[:, :4, 0]))
    assert not fast[:, :4, 1:].any()
    assert max_diff(fast, slow) < TOL
    if frames == 33:
        stats = builder.last_stats
        # Full-resolution stages compute only the image-dependent prefix (3..19 frames), not all 33.
        assert stats.full_frames[:6] == [33] * 6 and max(stats.fast_frames[:6]) <= 19
        assert sum(stats.fast_frames) < 0.6 * sum(stats.full_frames)


def test_image_reaches_exactly_29_latent_frames_and_the_tail_is_cached():
    """Latent frames 0..28 depend on the image (so no latent can be pasted from a cache for F <= 113); from 29 on,
    every latent is the image-independent steady state, which the builder takes from its cache."""
    vae = random_vae()
    frames = 125  # 32 latent frames
    a, b = random_image(1, 16, 16, seed=1), random_image(1, 16, 16, seed=2)
    with torch.no_grad():
        slow_a = i2v_condition_slow(vae, a, frames)
        slow_b = i2v_condition_slow(vae, b, frames)
        per_frame = (slow_a - slow_b)[:, 4:].abs().amax(dim=(0, 1, 3, 4))
        assert (per_frame[:29] > 0).all()
        assert (per_frame[29:] == 0).all()

        builder = I2VConditionBuilder(vae)
        fast_a = builder(a, frames)
        assert max_diff(fast_a, slow_a) < TOL
        fast_b = builder(b, frames)  # second image: steady states come from the cache
        assert max_diff(fast_b, slow_b) < TOL
        assert builder.cached_resolutions == [(16, 16)]


def test_cache_per_resolution_and_weight_changes():
    vae = random_vae()
    builder = I2VConditionBuilder(vae)
    with torch.no_grad():
        builder(random_image(1, 16, 16), 9)
        builder(random_image(1, 32, 24), 9)
        assert sorted(builder.cached_resolutions) == [(16, 16), (32, 24)]
        image = random_image(1, 16, 16, seed=5)
        before = builder(image, 9)
        vae.encoder.conv1.weight.mul_(1.5)  # in-place update bumps the version counter: cache is rebuilt
        after = builder(image, 9)
        assert builder.cached_resolutions == [(16, 16)]
        assert max_diff(after, i2v_condition_slow(vae, image, 9)) < TOL
        assert max_diff(after, before) > 1e-3


def test_fill_value_and_errors():
    vae = random_vae()
    image = random_image(1, 16, 16)
    with torch.no_grad():
        black = I2VConditionBuilder(vae, fill_value=-1.0)(image, 9)
        assert max_diff(black, i2v_condition_slow(vae, image, 9, fill_value=-1.0)) < TOL
        assert max_diff(black, I2VConditionBuilder(vae)(image, 9)) > 1e-3
    builder = I2VConditionBuilder(vae)
    with pytest.raises(ValueError, match=r"num_frames has 10 frames.*4n\+1"):
        builder(image, 10)
    with pytest.raises(ValueError, match=r"uint8"):
        builder(((image + 1) * 127.5).to(torch.uint8), 9)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*permute"):
        builder(image.permute(0, 2, 3, 1), 9)
    with pytest.raises(ValueError, match=r"multiples of 8"):
        builder(random_image(1, 20, 16), 9)
