"""``python -m distillation.dmd STAGE [--flags]``: see ``distillation.dmd`` and ``STAGE --help``."""

from __future__ import annotations

import sys

from distillation.training.cli import parse_config

STAGES = ("conditions", "ode-pairs", "ode-init", "dmd", "export")
USAGE = f"""usage: python -m distillation.dmd {{{",".join(STAGES)}}} [--help] [flags]

Distil the bidirectional teacher into the 4-step block-causal student, stage by stage (each resumes from --out):
  conditions  real start latents + actions + captions from the game (CPU is enough)
  ode-pairs   the teacher's many-step ODE trajectories at the student's noise levels (GPU)
  ode-init    the causal student regresses onto them (GPU)
  dmd         distribution matching distillation on the student's own rollouts (GPU)
  export      the student as a world bundle (default: the embedded default world)
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    stage, rest = argv[0], argv[1:]
    if stage == "conditions":
        from distillation.dmd import conditions as m

        m.build(parse_config(m.ConditionsConfig, m.__doc__, rest))
    elif stage == "ode-pairs":
        from distillation.dmd import pairs as m

        m.build(parse_config(m.PairsConfig, m.__doc__, rest))
    elif stage == "ode-init":
        from distillation.dmd import ode_init as m

        m.train(parse_config(m.ODEInitConfig, m.__doc__, rest))
    elif stage == "dmd":
        from distillation.dmd import train as m

        m.train(parse_config(m.DMDConfig, m.__doc__, rest))
    elif stage == "export":
        from distillation.dmd import export as m

        m.export_bundle(parse_config(m.ExportConfig, m.__doc__, rest))
    else:
        sys.exit(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}\n\n{USAGE}")


if __name__ == "__main__":
    main()
