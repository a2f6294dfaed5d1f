"""LoRA adapters (``distillation.training.lora``) and the DMD stage's ``--critic-lora`` / ``--student-lora``, on the
tiny models of ``test_dmd`` (CPU)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import clip_inputs, tiny_dit
from test_dmd import conditions_set, tiny_teacher
from torch import nn

from distillation.dmd import train as dmd
from distillation.dmd.common import Parallel
from distillation.dmd.models import load_teacher, make_critic, make_student
from distillation.teacher import load_export_dit
from distillation.training.checkpoint import CheckpointFormatError, load_checkpoint
from distillation.training.cli import parse_config
from distillation.training.lora import (
    DEFAULT_TARGETS,
    LoRALinear,
    LoRASpec,
    LoRAState,
    add_lora,
    base_fingerprint,
    load_lora_,
    load_lora_export_,
    lora_modules,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    save_lora,
    shared_copy,
)
from world_model.dit import WanDiT


def randomize_adapters_(model: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    """Nonzero ``B`` (and a new ``A``): an adapter that changes its layer, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def forward(model: WanDiT, seed: int = 0) -> torch.Tensor:
    x, y, ctx, ctrl = clip_inputs(model, batch=2, frames=2, seed=seed)
    with torch.no_grad():
        return model(x, torch.tensor([300.0, 700.0]), ctx, y, ctrl)


# -- the module ---------------------------------------------------------------------------------------------------
def test_a_fresh_adapter_is_the_base_exactly():
    base = nn.Linear(8, 6)
    x = torch.randn(4, 3, 8)
    lin = LoRALinear(base, rank=2, alpha=4.0)
    assert lin.base is base and not any(p.requires_grad for p in base.parameters())
    assert torch.equal(lin(x), base(x)) and lin.lora_A.abs().sum() > 0 and lin.lora_B.abs().sum() == 0
    model = tiny_dit(control_dim=7)
    ref = forward(model)
    adapted = shared_copy(model)
    params = add_lora(adapted, rank=4)
    assert len(lora_modules(adapted)) == model.cfg.num_layers * len(DEFAULT_TARGETS)
    assert len(params) == 2 * len(lora_modules(adapted))
    assert torch.equal(forward(adapted), ref)


def test_lora_gradients_are_full_finetunings_restricted_to_the_adapter_subspace():
    """With ``W' = W + s B A``: ``dL/dB = s G A^T`` and ``dL/dA = s B^T G`` where ``G = dL/dW'`` is the gradient
    full fine-tuning would take at the same weights."""
    torch.manual_seed(0)
    base = nn.Linear(8, 6).double()
    lin = LoRALinear(base, rank=3, alpha=6.0)  # scale 2
    lin.double()
    with torch.no_grad():
        lin.lora_B.normal_()  # nonzero B: otherwise dL/dA is 0 whatever the formula
    x, target = torch.randn(5, 8, dtype=torch.double), torch.randn(5, 6, dtype=torch.double)
    ((lin(x) - target) ** 2).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None  # the base stays frozen

    w = (base.weight + lin.delta().double()).detach().requires_grad_(True)  # full fine-tuning at the same weights
    ((F.linear(x, w, base.bias) - target) ** 2).sum().backward()
    g, a, b, s = w.grad, lin.lora_A.detach(), lin.lora_B.detach(), lin.scale
    assert s == 2.0
    torch.testing.assert_close(lin.lora_B.grad, s * g @ a.T)
    torch.testing.assert_close(lin.lora_A.grad, s * b.T @ g)


def test_merge_lora_gives_the_adapted_outputs_and_leaves_the_shared_base():
    model = tiny_dit(control_dim=7)
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = shared_copy(model)
    add_lora(adapted, rank=4, alpha=8.0)
    randomize_adapters_(adapted)
    out = forward(adapted)
    assert not torch.allclose(out, forward(model))
    merged = merge_lora(shared_copy(adapted))
    assert not lora_modules(merged) and lora_modules(adapted)  # the copy merged, the original still adapted
    torch.testing.assert_close(forward(merged), out, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, plain[k]) for k, v in model.state_dict().items())  # no base weight was written
    fresh = WanDiT(model.cfg)
    fresh.load_state_dict(merged.state_dict())  # strict: an ordinary WanDiT with the official names
    torch.testing.assert_close(forward(fresh.eval()), out, rtol=1e-5, atol=1e-5)


def test_add_and_load_refuse_what_does_not_fit():
    model = tiny_dit()
    with pytest.raises(ValueError, match=r"self_atn\.q.*match no nn.Linear"):
        add_lora(shared_copy(model), 4, targets=("self_atn.q",))
    with pytest.raises(ValueError, match="reads its weight directly"):
        add_lora(shared_copy(model), 4, targets=("time_embedding.0",))
    a, b = shared_copy(model), shared_copy(model)
    add_lora(a, 4)
    add_lora(b, 2, targets=("ffn.0", "ffn.2", "self_attn.q", "head.head"))
    with pytest.raises(ValueError) as err:
        load_lora_(a, lora_state_dict(b))
    msg = str(err.value)
    assert "missing" in msg and "blocks.0.cross_attn.k.lora_A" in msg and "unexpected ['head.head.lora_A'" in msg
    assert "shape mismatches (given, model)" in msg and "'blocks.0.ffn.0.lora_A': ((2, 64), (4, 64))" in msg
    before = {k: v.clone() for k, v in lora_state_dict(a).items()}
    with pytest.raises(ValueError):
        load_lora_(a, {**lora_state_dict(b), **before})
    assert all(torch.equal(v, before[k]) for k, v in lora_state_dict(a).items())  # nothing was copied


def test_adapters_of_another_base_are_refused(tmp_path):
    one, two = tiny_teacher(tmp_path / "one", seed=0), tiny_teacher(tmp_path / "two", seed=1)
    fp1, fp2 = base_fingerprint(one), base_fingerprint(two)
    assert fp1 != fp2 and fp1 == base_fingerprint(one)
    model = tiny_dit(control_dim=7)
    add_lora(model, 4)
    spec = LoRASpec(4, 4.0, DEFAULT_TARGETS, fp1, str(one))
    save_lora(randomize_adapters_(model), tmp_path / "adapters", spec, {"step": 3})
    other = copy.deepcopy(model)
    randomize_adapters_(other, seed=5)
    with pytest.raises(ValueError, match=f"trained on the base {one}.*this run's base is {two}"):
        load_lora_export_(other, tmp_path / "adapters", dataclasses.replace(spec, base=fp2, base_name=str(two)))
    with pytest.raises(ValueError, match="rank, alpha, targets"):
        load_lora_export_(other, tmp_path / "adapters", dataclasses.replace(spec, alpha=8.0))
    assert load_lora_export_(other, tmp_path / "adapters", spec)["step"] == 3  # the same base: loads
    assert all(torch.equal(v, lora_state_dict(model)[k]) for k, v in lora_state_dict(other).items())
    # a checkpoint part refuses adapters of another base too
    state = LoRAState(model, spec).state_dict()
    with pytest.raises(ValueError, match="the checkpoint's adapters were trained on the base"):
        LoRAState(other, dataclasses.replace(spec, base=fp2)).load_state_dict(state)
    with pytest.raises(ValueError, match="full weights"):
        LoRAState(other, spec).load_state_dict(model.state_dict())


def test_ema_shares_the_frozen_base_and_averages_the_adapters():
    from distillation.training.ema import EMA

    model = tiny_dit().requires_grad_(False)
    add_lora(model, 4)
    ema = EMA(model, decay=0.5, share_frozen=True)
    lin, avg = model.blocks[0].ffn[0], ema.model.blocks[0].ffn[0]
    assert avg.base.weight is lin.base.weight and ema.model.head.head.weight is model.head.head.weight
    assert avg.lora_B is not lin.lora_B
    old = avg.lora_B.clone()
    randomize_adapters_(model)
    ema.update(model, step=100)
    torch.testing.assert_close(avg.lora_B, 0.5 * old + 0.5 * lin.lora_B.detach())


# -- DMD ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    teacher, init = tiny_teacher(root / "teacher"), tiny_teacher(root / "init", seed=2)  # init: as an ode-init export
    return dict(teacher=teacher, init=init, cond=conditions_set(root / "cond", n=6, steps=4))


def dmd_cfg(world, out: Path, **kw) -> dmd.DMDConfig:
    base = dict(
        teacher=str(world["teacher"]), conditions=str(world["cond"]), out=str(out), batch_size=2, val_every=0,
        log_every=1, checkpoint_every=1, device="cpu", window_frames=4, window=3, rollout_frames=3, critic_steps=2,
        critic_lora=4, critic_lr=1e-3,
    )  # fmt: skip
    return dmd.DMDConfig(**{**base, **kw})


def test_the_lora_critic_shares_the_teacher_whose_own_forward_stays_adapter_free(world):
    teacher = load_teacher(world["teacher"], "cpu")
    before = {k: v.clone() for k, v in teacher.dit.state_dict().items()}
    ref = forward(teacher.dit)
    critic = make_critic(teacher, make_student(teacher), lora=4)
    assert critic.blocks[0].self_attn.q.base.weight is teacher.dit.blocks[0].self_attn.q.weight  # shared, not copied
    assert critic.head.head.weight is teacher.dit.head.head.weight
    assert [p for p in critic.parameters() if p.requires_grad] == lora_parameters(critic)
    assert torch.equal(forward(critic), ref)  # a fresh adapter critic is the teacher
    opt = torch.optim.Adam(lora_parameters(critic), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        x, y, ctx, ctrl = clip_inputs(critic, batch=2, frames=2)
        critic(x, torch.tensor([300.0, 700.0]), ctx, y, ctrl).square().mean().backward()
        opt.step()
    assert not torch.allclose(forward(critic), ref)
    assert not lora_modules(teacher.dit) and torch.equal(forward(teacher.dit), ref)  # the real score is unchanged
    assert all(torch.equal(v, before[k]) for k, v in teacher.dit.state_dict().items())
    # a critic on the student's weights shares them when they are frozen (a LoRA student), copies them otherwise
    frozen, trained = make_student(teacher).requires_grad_(False), make_student(teacher)
    assert make_critic(teacher, frozen, "student", lora=4).head.head.weight is frozen.head.head.weight
    copied = make_critic(teacher, trained, "student", lora=4).head.head.weight
    assert (
        copied is not trained.head.head.weight and not copied.requires_grad and trained.head.head.weight.requires_grad
    )


def test_dmd_with_critic_lora_end_to_end_and_its_small_export(world, tmp_path, monkeypatch):
    seen = {}

    def load(folder, device):
        seen["teacher"] = t = load_teacher(folder, device)
        seen["before"] = {k: v.clone() for k, v in t.dit.state_dict().items()}
        return t

    monkeypatch.setattr(dmd, "load_teacher", load)
    result = dmd.train(dmd_cfg(world, tmp_path, max_steps=2))
    assert result["step"] == 2
    teacher = seen["teacher"]
    assert all(torch.equal(v, seen["before"][k]) for k, v in teacher.dit.state_dict().items())
    ckpt = load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")
    adapters = ckpt["critic"]["adapters"]
    assert adapters and all(k.endswith((".lora_A", ".lora_B")) for k in adapters)
    assert len(ckpt["opt_critic"]["state"]) == len(adapters)  # only the adapters were optimised
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if k.endswith("lora_B"))  # ... and they moved
    critic_dir = tmp_path / "dmd" / "critic"
    assert sorted(p.name for p in critic_dir.iterdir()) == ["SHA256SUMS", "lora.json", "lora.safetensors"]
    size = sum(p.stat().st_size for p in critic_dir.iterdir())
    teacher_size = sum(p.stat().st_size for p in Path(world["teacher"]).glob("diffusion_pytorch_model*"))
    assert size < 0.3 * teacher_size, (size, teacher_size)
    assert (tmp_path / "dmd" / "export" / "config.json").exists()  # the student exports as without LoRA

    # --critic-from takes the adapter export: into an adapter critic as it is, into a full critic merged
    dmd.train(dmd_cfg(world, tmp_path / "again", max_steps=0, critic_from=str(critic_dir)))
    again = load_checkpoint(tmp_path / "again" / "dmd" / "checkpoint.pt")["critic"]["adapters"]
    assert all(torch.equal(v, adapters[k]) for k, v in again.items())
    dmd.train(dmd_cfg(world, tmp_path / "full", max_steps=0, critic_lora=0, critic_from=str(critic_dir)))
    full = load_checkpoint(tmp_path / "full" / "dmd" / "checkpoint.pt")["critic"]
    adapted = make_critic(teacher, teacher.dit, lora=4)
    load_lora_(adapted, adapters)
    for k, v in merge_lora(adapted).state_dict().items():
        torch.testing.assert_close(full[k], v, rtol=0, atol=0, msg=k)
    # ... but a full critic export cannot start an adapter critic
    with pytest.raises(ValueError, match="holds a full critic.*adapter export"):
        dmd.train(dmd_cfg(world, tmp_path / "no", max_steps=0, critic_from=str(tmp_path / "full" / "dmd" / "critic")))
    # adapters trained on another teacher are refused, naming both
    other = tiny_teacher(tmp_path / "other_teacher", seed=3)
    with pytest.raises(ValueError, match=f"trained on the base {world['teacher']}.*base is {other}"):
        dmd.train(dmd_cfg(world, tmp_path / "other", max_steps=0, teacher=str(other), critic_from=str(critic_dir)))
    # and so is resuming the checkpoint on another teacher
    with pytest.raises(CheckpointFormatError, match="trained on the base"):
        dmd.train(dmd_cfg(world, tmp_path, max_steps=3, teacher=str(other)))


@pytest.mark.parametrize(
    "lora",
    [
        dict(critic_lora=4),
        dict(critic_lora=4, student_lora=2, lr=1e-2),
        dict(critic_lora=4, critic_init="student", init_from="init"),  # the critic's base: reloaded on the resume
        dict(critic_lora=4, student_lora=2, critic_init="student", init_from="init", lr=1e-2),
    ],
)
def test_dmd_lora_resume_after_a_kill_is_bit_exact(world, tmp_path, lora):
    lora = {**lora, **({"init_from": str(world["init"])} if "init_from" in lora else {})}
    straight = dmd_cfg(world, tmp_path / "a", max_steps=3, **lora)
    dmd.train(straight)
    killed = dmd_cfg(world, tmp_path / "b", max_steps=2, **lora)
    dmd.train(killed)  # stops at step 2 as a kill after the step-2 checkpoint would
    dmd.train(dataclasses.replace(killed, max_steps=3))
    a, b = (load_checkpoint(tmp_path / x / "dmd" / "checkpoint.pt") for x in "ab")
    for part in ("student", "critic", "ema"):
        x, y = (c[part]["adapters"] if "adapters" in c[part] else c[part] for c in (a, b))
        assert list(x) == list(y) and all(torch.equal(x[k], y[k]) for k in x), part
    for part in ("opt_student", "opt_critic"):
        x, y = a[part]["state"], b[part]["state"]
        assert all(torch.equal(x[i][n], y[i][n]) for i in x for n in x[i]), part


def test_student_lora_exports_a_full_student_and_leaves_the_shared_teacher(world, tmp_path, monkeypatch):
    seen = {}

    def load(folder, device):
        seen["teacher"] = t = load_teacher(folder, device)
        return t

    monkeypatch.setattr(dmd, "load_teacher", load)
    dmd.train(dmd_cfg(world, tmp_path, max_steps=2, student_lora=4, lr=1e-2, ema=0.0))
    ckpt = load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")
    assert all(k.endswith((".lora_A", ".lora_B")) for k in ckpt["student"]["adapters"])
    assert all(k.endswith((".lora_A", ".lora_B")) for k in ckpt["ema"]["adapters"])
    teacher = load_teacher(world["teacher"], "cpu")
    assert all(torch.equal(v, teacher.dit.state_dict()[k]) for k, v in seen["teacher"].dit.state_dict().items())
    student = WanDiT(teacher.dit.cfg)
    load_export_dit(tmp_path / "dmd" / "export", student)  # strict: a plain WanDiT, as bundles want
    # ema 0: the export is the student's adapters merged into the teacher's weights (bf16)
    adapted = make_student(teacher, share=True)
    add_lora(adapted, 4)
    load_lora_(adapted, ckpt["ema"]["adapters"])
    merged = merge_lora(adapted).state_dict()
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, merged[k].to(torch.bfloat16).float(), rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, teacher.dit.state_dict()[k]) for k, v in merged.items())


def test_lora_with_fsdp_is_refused_clearly(world, tmp_path, monkeypatch):
    monkeypatch.setattr(
        dmd, "init_parallel", lambda device, mode: (Parallel(0, 2, "fsdp", "cpu"), torch.device(device))
    )
    with pytest.raises(NotImplementedError, match="not supported with --critic-lora"):
        dmd.train(dmd_cfg(world, tmp_path, max_steps=1, parallel="fsdp"))


def test_lora_flags_on_the_command_line():
    cfg = parse_config(dmd.DMDConfig, None, ["--critic-lora", "8", "--lora-alpha", "16", "--lora-targets", "ffn.0"])
    assert (cfg.critic_lora, cfg.student_lora, cfg.lora_alpha, dmd.lora_targets(cfg)) == (8, 0, 16.0, ("ffn.0",))
    assert dmd.lora_targets(dmd.DMDConfig()) == DEFAULT_TARGETS
