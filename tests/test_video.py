"""MP4 writing: frames round-trip through ffmpeg, and a machine without imageio-ffmpeg hears so up front."""

import imageio.v2 as imageio
import numpy as np
import pytest

import lingbot_env.video as video
from distillation import evaluate


def test_mp4_writer_writes_frames_that_read_back(tmp_path):
    frames = np.zeros((5, 32, 48, 3), np.uint8)
    frames[:, :, :24] = 200
    w = video.mp4_writer(tmp_path / "a.mp4", 10, macro_block_size=2)
    for f in frames:
        w.append_data(f)
    w.close()
    back = np.stack(list(imageio.get_reader(str(tmp_path / "a.mp4"), format="FFMPEG").iter_data()))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 8


def test_without_imageio_ffmpeg_the_writer_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(video, "mp4_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        video.mp4_writer(tmp_path / "a.mp4", 10)


def test_harness_without_imageio_ffmpeg_drops_mp4s_before_running(monkeypatch, capsys):
    """Said before any work: no MP4s; the --videos clips stay kept for the contact sheet (a PNG)."""
    monkeypatch.setattr(evaluate, "mp4_available", lambda: False)
    ap = evaluate.build_parser()
    args = ap.parse_args(["--model", "real", "--videos", "3"])
    evaluate.check_args(ap, args)
    assert args.videos == 3 and args.no_stability_video
    err = capsys.readouterr().err
    assert "imageio-ffmpeg" in err and "contact sheet" in err
    monkeypatch.setattr(evaluate, "mp4_available", lambda: True)
    args = ap.parse_args(["--model", "real", "--videos", "3"])
    evaluate.check_args(ap, args)
    assert args.videos == 3 and not args.no_stability_video
