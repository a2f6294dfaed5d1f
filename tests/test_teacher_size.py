"""A teacher of another size than the student: grown from an export without changing its output, trained,
exported, and loaded back through the same loaders and the evaluation harness."""

import dataclasses
import json

import pytest
import torch
from helpers import tiny_vae_export
from test_training import source, teacher_cfg

from distillation import teacher, train_teacher
from world_model.config import WanDiTConfig
from world_model.dit import WanDiT
from world_model.dit_grow import deepen_dit, old_block_slots, widen_dit

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=3, in_dim=36, out_dim=16, text_dim=32, text_len=16)


def tiny_inputs(cfg: WanDiTConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, 3, 12, 16, generator=g)
    t = torch.tensor([700.0, 200.0])
    ctx = torch.randn(2, 5, cfg.text_dim, generator=g)
    y = torch.randn(2, 20, 3, 12, 16, generator=g)
    control = torch.randn(2, cfg.control_dim * 64, 3, 12, 16, generator=g)
    return x, t, ctx, y, control


def trained_like(model: WanDiT) -> WanDiT:
    """Non-zero everywhere (a fresh WanDiT zeroes its head and camera layers, which would hide a wrong copy)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("layers", [3, 4, 7])
def test_a_deepened_dit_computes_what_it_was_grown_from(layers):
    torch.manual_seed(0)
    cfg = WanDiTConfig(control_dim=7, **TINY)
    model = trained_like(WanDiT(cfg)).eval()
    deep = deepen_dit(model, layers).eval()
    assert deep.cfg.num_layers == layers and deep.cfg.dim == cfg.dim
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(deep(*inputs), model(*inputs), rtol=0, atol=1e-5)
    # The trained blocks are there, in order, and the new ones are not copies of them.
    slots = old_block_slots(3, layers)
    assert slots == sorted(slots) and slots[0] == 0 and len(set(slots)) == 3
    for i, j in enumerate(slots):
        assert torch.equal(deep.blocks[j].self_attn.q.weight, model.blocks[i].self_attn.q.weight)
    fresh = [i for i in range(layers) if i not in slots]
    assert all(deep.blocks[i].self_attn.o.weight.abs().sum() == 0 for i in fresh)


def test_the_new_blocks_learn_from_the_first_step():
    torch.manual_seed(0)
    cfg = WanDiTConfig(control_dim=7, **TINY)
    deep = deepen_dit(trained_like(WanDiT(cfg)), 5)
    deep(*tiny_inputs(cfg)).square().mean().backward()
    new = deep.blocks[old_block_slots(3, 5)[0] + 1]
    for layer in (new.self_attn.o, new.cross_attn.o, new.ffn[2], new.cam_scale_layer):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_a_dit_cannot_be_cut():
    with pytest.raises(ValueError, match="deepen a DiT of 3 layers"):
        deepen_dit(WanDiT(WanDiTConfig(control_dim=7, **TINY)), 2)


def test_a_deeper_teacher_trains_from_an_export_exports_its_size_and_loads_in_the_harness(tmp_path):
    from distillation.evaluation.models import model_from_spec

    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "small", vae, max_steps=1), source)
    small = tmp_path / "small" / "export"
    # lr 0: the deepened teacher's weights stay as grown, so its export must compute what the small one does.
    deep_cfg = teacher_cfg(tmp_path / "deep", vae, max_steps=2, init_from=str(small), num_layers=10, lr=0.0)
    train_teacher.train(deep_cfg, source)
    deep = tmp_path / "deep" / "export"
    assert json.loads((deep / "config.json").read_text())["num_layers"] == 10
    a, _, _ = teacher.load_teacher_export(small)
    b, _, step = teacher.load_teacher_export(deep)
    assert b.cfg.num_layers == 10 and len(b.blocks) == 10 and step == 2
    inputs = tiny_inputs(a.cfg)
    inputs = (*inputs[:2], torch.randn(2, 5, a.cfg.text_dim), *inputs[3:])
    with torch.no_grad():
        torch.testing.assert_close(b(*inputs), a(*inputs), rtol=0, atol=1e-4)
    # The resumed run keeps its size: the checkpoint holds 10 layers, read back as such.
    result = train_teacher.train(dataclasses.replace(deep_cfg, max_steps=3), source)
    assert result["step"] == 3
    harness = model_from_spec(f"teacher:{deep}:{vae}")
    assert len(harness.dit.blocks) == 10
    with torch.no_grad():
        torch.testing.assert_close(harness.dit(*inputs), a(*inputs), rtol=0, atol=1e-4)


def test_an_export_grows_by_whole_factors_and_layers_but_never_shrinks(tmp_path):
    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "small", vae, max_steps=1), source)
    small = str(tmp_path / "small" / "export")
    config = train_teacher.teacher_config
    with pytest.raises(ValueError, match="whole factor"):
        config(teacher_cfg(tmp_path / "w", vae, init_from=small, dim=384))
    with pytest.raises(ValueError, match="whole factor"):
        config(teacher_cfg(tmp_path / "w", vae, init_from=small, dim=512, num_heads=4))  # heads must double too
    with pytest.raises(ValueError, match="whole factor"):
        config(teacher_cfg(tmp_path / "w", vae, init_from=small, dim=128))
    with pytest.raises(ValueError, match="deepened, not cut"):
        config(teacher_cfg(tmp_path / "c", vae, init_from=small, num_layers=4))
    wide = config(teacher_cfg(tmp_path / "g", vae, init_from=small, dim=512, num_layers=12))
    assert (wide.dim, wide.num_heads, wide.ffn_dim, wide.num_layers) == (512, 8, 2048, 12)
    fresh = config(teacher_cfg(tmp_path / "f", vae, dim=64, num_heads=2, ffn_dim=128))
    assert (fresh.dim, fresh.num_heads, fresh.ffn_dim, fresh.num_layers) == (64, 2, 128, 8)
    with pytest.raises(ValueError, match="divisible"):
        config(teacher_cfg(tmp_path / "h", vae, dim=64, num_heads=3))


def test_a_wider_deeper_teacher_starts_from_an_export_with_its_output(tmp_path):
    vae = tiny_vae_export(tmp_path / "vae")
    train_teacher.train(teacher_cfg(tmp_path / "small", vae, max_steps=1), source)
    small = tmp_path / "small" / "export"
    grown = teacher_cfg(tmp_path / "big", vae, init_from=str(small), dim=512, num_layers=10, widen_noise=0.0, lr=0.0)
    train_teacher.train(dataclasses.replace(grown, max_steps=2), source)
    a, _, _ = teacher.load_teacher_export(small)
    b, _, _ = teacher.load_teacher_export(tmp_path / "big" / "export")
    assert (b.cfg.dim, b.cfg.num_heads, b.cfg.num_layers) == (512, 8, 10)
    x, t, _, y, control = tiny_inputs(a.cfg)
    ctx = torch.randn(2, 5, a.cfg.text_dim)
    with torch.no_grad():
        torch.testing.assert_close(b(x, t, ctx, y, control), a(x, t, ctx, y, control), rtol=0, atol=2e-3)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_a_widened_dit_computes_what_it_was_grown_from(factor):
    torch.manual_seed(0)
    cfg = WanDiTConfig(control_dim=7, **TINY)
    model = trained_like(WanDiT(cfg)).eval()
    wide = widen_dit(model, factor).eval()
    assert (wide.cfg.dim, wide.cfg.num_heads, wide.cfg.ffn_dim) == (32 * factor, 2 * factor, 64 * factor)
    assert wide.cfg.head_dim == cfg.head_dim
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(wide(*inputs), model(*inputs), rtol=0, atol=1e-5)


def test_widening_noise_breaks_the_tie_between_copies_and_stays_close():
    torch.manual_seed(0)
    cfg = WanDiTConfig(control_dim=7, **TINY)
    model = trained_like(WanDiT(cfg)).eval()
    inputs = tiny_inputs(cfg)
    with torch.no_grad():
        ref = model(*inputs)
        out = widen_dit(model, 2, noise=1e-3).eval()(*inputs)
    err = (out - ref).norm() / ref.norm()
    assert 0 < err < 1e-2
    # Without noise the two copies of a block's FFN get the same gradient, so they could never part.
    wide = widen_dit(model, 2)
    wide(*inputs).square().mean().backward()
    g = wide.blocks[0].ffn[0].weight.grad
    torch.testing.assert_close(g[:64], g[64:])
    noisy = widen_dit(model, 2, noise=1e-3)
    noisy(*inputs).square().mean().backward()
    g = noisy.blocks[0].ffn[0].weight.grad
    assert not torch.allclose(g[:64], g[64:])


def test_widening_refuses_a_fractional_factor():
    with pytest.raises(ValueError, match="whole factor"):
        widen_dit(WanDiT(WanDiTConfig(control_dim=7, **TINY)), 1.5)
