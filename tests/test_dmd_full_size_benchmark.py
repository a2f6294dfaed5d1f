"""The one-GPU full-size DMD iteration benchmark, at a tiny shape on the CPU: it runs the trainer's own losses on
one shared frozen base with LoRA adapters for the student and the critic, and reports what it measured."""

import json
from argparse import Namespace

import pytest
import torch

from benchmarks import dmd_full_size


@pytest.mark.parametrize("window", [0, 1])
def test_one_dmd_iteration_on_a_shared_base_with_adapters(tmp_path, window):
    args = Namespace(
        shape="tiny",
        frames=3,
        window=window,
        height=32,
        width=48,
        batch_size=2,
        rank=4,
        critic_steps=2,
        guidance=3.0,
        cache_window=2,
        iterations=2,
        device="cpu",
    )
    result = dmd_full_size.run(args)
    cfg = dmd_full_size.SHAPES["tiny"]
    d, f = cfg.dim, cfg.ffn_dim
    per_block = 8 * 4 * (d + d) + 2 * 4 * (d + f)  # q, k, v, o of both attentions + the two FFN linears
    assert result["adapter_params"] == 2 * cfg.num_layers * per_block  # student + critic, nothing else trains
    assert len(result["iterations"]) == 2
    for rec in result["iterations"]:
        assert rec["dmd_loss"] > 0 and torch.isfinite(torch.tensor(rec["critic_loss"]))
        assert rec["iteration_s"] == rec["generator_s"] + rec["critic_s"] > 0
    plan = result["memory_plan_gib"]
    assert plan["frozen_base"] > 0 and plan["kv_cache_window"] == 3 * plan["kv_cache_per_latent_frame"]


def test_the_command_writes_its_json(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    monkeypatch.setattr(
        "sys.argv", ["dmd_full_size", "--shape", "tiny", "--iterations", "1", "--device", "cpu", "--out", str(out)]
    )
    dmd_full_size.main()
    rec = json.loads(out.read_text())
    assert rec["config"]["shape"] == "tiny" and rec["results"]["iterations"][0]["generator_s"] > 0
