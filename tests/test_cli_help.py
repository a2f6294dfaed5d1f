"""Every command's ``--help`` prints and exits 0 (argparse formats help strings lazily: a bare ``%`` in one
breaks ``--help`` alone, at the moment a user asks for it)."""

from __future__ import annotations

import contextlib
import io
import runpy
import sys

import pytest

COMMANDS = [
    "agents.evaluate",
    "agents.side_by_side",
    "agents.train_heads",
    "agents.train_ppo",
    "benchmarks.busy_cpu_threads",
    "benchmarks.collect_throughput",
    "benchmarks.dit_stream",
    "benchmarks.dmd_full_size",
    "benchmarks.env_full_size",
    "benchmarks.env_throughput",
    "benchmarks.i2v_condition_flops",
    "benchmarks.load_checkpoint",
    "benchmarks.load_integrity",
    "benchmarks.long_rollout",
    "benchmarks.teacher_diagnosis",
    "benchmarks.teacher_step",
    "benchmarks.vae_decode",
    "benchmarks.vae_step",
    "distillation.collect",
    "distillation.data_report",
    "distillation.evaluate",
    "distillation.evaluation.features",
    "distillation.train_light_decoder",
    "distillation.train_teacher",
    "distillation.train_vae",
    "examples.play",
    "examples.train_ppo_in_world",
    "lingbot_env",
    "tools.convert_legacy_checkpoint",
    "tools.training_states",
]  # fmt: skip  (distillation.dmd and its stages: tests/test_dmd.py)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints_and_exits_cleanly(module, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None) and "usage:" in out.getvalue()
