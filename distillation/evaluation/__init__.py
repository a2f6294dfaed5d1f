"""The evaluation harness: score any world model against the real game (ViZDoom) on held-out maps.

    python -m distillation.evaluate --model <bundle | teacher:<export>:<vae export> | real | noise | tiny-random>
        --clips 100 --horizon 16 --out eval_dir    # (one command)

Modules (one job each):

- ``game``: the ground truth. Clips start from a real frame on a held-out map and are played in a *fresh game
  process* per clip, so the same (map, seed, prefix, actions) always gives the same frames;
- ``patterns``: scripted action patterns (forward, turns, strafes, looks, mixes);
- ``models``: the protocol of a world model under test and its adapters (causal streaming world, bidirectional
  teacher, the real game replayed, noise);
- ``replay``: replay clips in the model and in the game with the same actions; PSNR / SSIM per horizon step;
- ``probe``: the inverse-dynamics probe (controllability: does the model do what the keys say?);
- ``stability``: long rollouts of causal models (1,000 steps): drift of brightness, contrast, PSNR;
- ``plots``, ``report``: JSON report, PNG plots, side-by-side MP4s and a contact sheet.

Frame alignment everywhere (the data engine's): a clip of ``n`` actions has ``1 + 4n`` frames; frame 0 is the
start frame; action ``i`` (0-based) is held for frames ``4i+1 .. 4i+4``, which make *horizon step* ``i + 1``.
Horizon step 0 is frame 0 alone (for a generated world: its reconstruction of the start frame).
"""
