"""The decode benchmark runs end to end (CPU, --quick) and writes the fields the README table needs."""

from __future__ import annotations

import json

from test_vae import single_thread  # noqa: F401 (autouse fixture)

from benchmarks.vae_decode import main


def test_vae_decode_benchmark_quick_cpu(tmp_path):
    out = tmp_path / "vae.json"
    main(["--device", "cpu", "--quick", "--chunks", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["benchmark"] == "vae_decode" and record["commit"]
    results = record["results"]
    for kind in ("wan", "light"):
        assert results[kind]["flop_per_latent_frame"] > 0
        runs = results[kind]["runs"]
        assert runs and all("error" not in r for r in runs), runs
        assert all(r["ms_per_latent_frame_median"] > 0 for r in runs)
    assert {r["channels_last_3d"] for r in results["wan"]["runs"]} == {False, True}
    assert results["summary"]["flop_ratio_wan_over_light"] > 1


def test_i2v_condition_flops_benchmark_quick(tmp_path):
    from benchmarks.i2v_condition_flops import main as i2v_main

    out = tmp_path / "i2v.json"
    i2v_main(["--quick", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["benchmark"] == "i2v_condition_flops" and record["commit"]
    run = record["results"]["runs"][0]
    assert run["frames"] == 17 and run["y_shape"] == [1, 20, 5, 4, 4]
    assert 0 < run["fast_flop"] < run["slow_flop"]
