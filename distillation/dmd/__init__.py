"""Distil the bidirectional teacher into the few-step, block-causal, KV-cached student that the env streams.

    python -m distillation.dmd conditions --vae checkpoints/doom_vae --clips 2048 --steps 16   # CPU: game + VAE
    python -m distillation.dmd conditions --split val --real-latents --clips 64 --steps 8 --out runs/dmd/val
    python -m distillation.dmd ode-pairs --teacher checkpoints/doom_teacher                    # GPU from here on
    python -m distillation.dmd ode-init --val-conditions runs/dmd/val --max-minutes 3
    python -m distillation.dmd dmd --val-conditions runs/dmd/val --max-minutes 5
    python -m distillation.dmd export                                                          # the default world

Stages (each resumable from ``--out``, runnable alone, ``--help`` lists its knobs):

* ``conditions`` (:mod:`.conditions`): real start latents, real actions and captions from the game;
* ``ode-pairs`` (:mod:`.pairs`): the teacher's many-step trajectories at the student's noise levels;
* ``ode-init`` (:mod:`.ode_init`): the student regresses onto them, streaming with teacher-forced context;
* ``dmd`` (:mod:`.train`): distribution matching on the student's own rollouts (Self-Forcing);
* ``export`` (:mod:`.export`): a world bundle (by default the embedded default world).

The core (:mod:`.losses`, :mod:`.rollout`, :mod:`.models`) knows no Doom constant: teacher, student and critic are
any :class:`~world_model.dit.WanDiT` configs. ``torchrun --nproc_per_node N -m distillation.dmd <stage>`` runs
the training stages data-parallel: replicas with gradients averaged (``--parallel ddp``, small models) or FSDP2
shards (``--parallel fsdp``, large models), the same update either way (see :mod:`.common`).
"""
