"""The harness's PNG charts: legends keep their labels whole when they fit, and never run off the image."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from distillation.evaluation.plots import Series, _fit, line_plot


def test_legend_labels_are_kept_whole_or_cut_to_fit():
    d = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = ImageFont.load_default()
    label = "real game, held-out maps (trained in the dream)"
    assert _fit(d, label, font, 10_000) == label  # room enough: the whole label (the old legend cut it at 22)
    cut = _fit(d, label, font, 80)
    assert cut.endswith("...") and len(cut) < len(label) and d.textlength(cut, font=font) <= 80


def test_line_plot_writes_a_chart_with_a_long_legend(tmp_path):
    out = tmp_path / "c.png"
    line_plot(out, [0, 1, 2], [Series("a label longer than twenty-two characters", [1.0, 2.0, 3.0])], "t", "x", "y")
    assert Image.open(out).size[0] > 0
