"""A whole release root (expert pair + Wan2.1_VAE.pth + umT5 .pth + tokenizer) loads into working parts."""

import pytest
import torch
from helpers import clip_inputs, tiny_config, tiny_dit

transformers = pytest.importorskip("transformers")

from test_text_encoders import TINY, build_tokenizer, to_wan  # noqa: E402

from world_model.checkpoints import (  # noqa: E402
    CheckpointError,
    ExpertPair,
    ExpertSpec,
    Preset,
    SamplingDefaults,
    register_preset,
    save_model,
    unregister_preset,
)
from world_model.checkpoints.presets import WAN_FILES  # noqa: E402
from world_model.checkpoints.release import load_release, load_text_encoder  # noqa: E402
from world_model.checkpoints.text_encoders import umt5_config  # noqa: E402

T5 = {**TINY, "d_model": 4096}  # the DiT's text_dim is umT5's width


def write_vae_and_text_encoder(root):
    """The non-DiT files of a release root: a tiny ``Wan2.1_VAE.pth``, a tiny umT5 (width 4096, as the DiT's
    text_dim expects) as Wan's ``.pth`` and a word-level tokenizer under ``google/umt5-xxl``. Returns (vae, t5);
    load the umT5 with ``config=umt5_config(**T5)``."""
    from world_model.vae import VAEConfig, WanVAE

    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=8))
    torch.save(vae.state_dict(), root / "Wan2.1_VAE.pth")
    t5 = transformers.UMT5EncoderModel(umt5_config(**T5)).eval()
    torch.save(to_wan(t5.state_dict()), root / "models_t5_umt5-xxl-enc-bf16.pth")
    build_tokenizer(root / "google" / "umt5-xxl")
    return vae, t5


@pytest.fixture
def release_root(tmp_path):
    cfg = tiny_config(6, text_dim=4096)
    preset = Preset(
        "test-release",
        (ExpertSpec("high", cfg, "high_noise_model"), ExpertSpec("low", cfg, "low_noise_model")),
        SamplingDefaults("unipc", 4, 10.0, 5.0, boundary_t=947.0),
        sizes=((64, 64),),
        fps=16,
        files=dict(WAN_FILES),
    )
    register_preset(preset)
    pair = ExpertPair(tiny_dit(6, seed=1, text_dim=4096), tiny_dit(6, seed=2, text_dim=4096), 947.0)
    save_model(pair, tmp_path, preset, num_shards=2, dtype=torch.float32)
    vae, t5 = write_vae_and_text_encoder(tmp_path)
    yield tmp_path, preset, pair, vae, t5
    unregister_preset(preset.name)


def test_load_release(release_root):
    root, preset, pair, vae, t5 = release_root
    rel = load_release(root, preset, dtype=torch.float32, text_encoder_kwargs={"config": umt5_config(**T5)})
    assert isinstance(rel.dit, ExpertPair)
    assert all(torch.equal(a, b) for a, b in zip(pair.high.state_dict().values(), rel.dit.high.state_dict().values()))
    assert rel.vae.state_dict().keys() == vae.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), rel.vae.state_dict().values()))
    ctx = rel.text_encoder.encode(["the red door opens"])[0]
    assert ctx.shape == (5, 4096)
    x, y, _, ctrl = clip_inputs(rel.dit.high, batch=1, frames=1, hw=(2, 2))
    with torch.no_grad():
        v = rel.dit(x, torch.tensor([980.0]), ctx[None].float(), y, ctrl)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_release_files_are_checked(release_root):
    root, preset, *_ = release_root
    (root / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(CheckpointError, match=r"Wan2.1_VAE.pth: missing; preset 'test-release' expects its vae there"):
        load_release(root, preset, text_encoder=False)
    assert load_release(root, preset, vae=False, text_encoder=False).vae is None
    sampling = SamplingDefaults("euler", 2, 3.0)
    small = Preset("x", (ExpertSpec("model", tiny_config(None)),), sampling, ((64, 64),), 8, text_encoder="small")
    with pytest.raises(ValueError, match="'small' text encoder, which has no release file"):
        load_text_encoder(root, small)
