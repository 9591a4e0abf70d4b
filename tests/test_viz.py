"""Pictures (copynce_fast.viz): matplotlib PNGs of the promised size that show the data, drawn headless without
touching the user's pyplot backend."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from copynce_fast.viz.curves import PALETTE, bar_chart, plot_lines, plot_pr_curve
from copynce_fast.viz.pairs import TracedPair, save_pairs


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(int)


def _has_colour(img: np.ndarray, rgb) -> int:
    return int((img == np.array(rgb)).all(-1).sum())


def _is_matplotlib_png(path) -> bool:
    with Image.open(path) as im:
        return "matplotlib" in im.info.get("Software", "").lower()


def test_loss_curves_png(tmp_path):
    steps = np.arange(0, 500, 5)
    series = {"total": (steps, 5 * np.exp(-steps / 200) + 1), "copynce": (steps, 2 * np.exp(-steps / 100) + 0.5)}
    path = plot_lines(tmp_path / "loss.png", series, size=(640, 480), title="losses", xlabel="step", ylabel="loss")
    img = _pixels(path)
    assert img.shape == (480, 640, 3)
    # one colour per series, in palette order, each painting a real curve (not a speck)
    assert _has_colour(img, PALETTE[0]) > 300 and _has_colour(img, PALETTE[1]) > 300
    assert _has_colour(img, PALETTE[2]) == 0  # no third series
    assert (img == 255).all(-1).mean() > 0.5  # mostly white background, i.e. not a blank or black canvas
    with pytest.raises(ValueError, match="size"):
        plot_lines(tmp_path / "x.png", series, size=(100, 100))
    with pytest.raises(ValueError, match="curves"):
        plot_lines(tmp_path / "x.png", {"bad": (np.zeros(3), np.zeros(4))})


def test_pr_curve_png_is_matplotlib_and_tracks_the_curve(tmp_path):
    recall = np.linspace(0, 1, 200_000)  # as many points as a real PR curve: must still render
    precision = 1 - recall ** 2
    path = plot_pr_curve(tmp_path / "pr.png", (recall, precision), size=(500, 400), title="μAP 0.67")
    assert _is_matplotlib_png(path)
    img = _pixels(path)
    assert img.shape == (400, 500, 3)
    # The painted curve goes down: in the plot's left part its pixels sit higher (smaller row) than on the right.
    rows, cols = np.nonzero((img == np.array(PALETTE[0])).all(-1))
    assert len(rows) > 500
    left, right = rows[cols < np.percentile(cols, 20)], rows[cols > np.percentile(cols, 80)]
    assert left.mean() < right.mean() - 100


def test_bar_chart_groups_and_labels(tmp_path):
    rows = [{"op": op, "impl": impl, "ms": ms} for op, impl, ms in
            [("copynce", "eager", 3.0), ("copynce", "triton", 0.3), ("overlap", "eager", 2.0),
             ("overlap", "triton", 0.2), ("overlap", "compiled", None)]]
    path = bar_chart(tmp_path / "b.png", rows, category="op", value="ms", series="impl", log_scale=True,
                     size=(640, 360), title="example")
    img = _pixels(path)
    assert img.shape == (360, 640, 3)
    eager, triton = _has_colour(img, PALETTE[0]), _has_colour(img, PALETTE[1])
    assert eager > triton > 0  # taller bars (log axis) paint more pixels; the None row is skipped
    assert _has_colour(img, PALETTE[2]) == 0
    with pytest.raises(ValueError, match="value"):
        bar_chart(tmp_path / "c.png", rows, category="op", value="nope")
    with pytest.raises(ValueError, match="rows"):
        bar_chart(tmp_path / "c.png", [], category="op", value="ms")


def test_pairs_picture(tmp_path):
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=g)
    r = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
    counts = torch.zeros(6, 5, dtype=torch.int32)  # 2x3 query patches of 16 px, 2x2 reference patches
    counts[:, 0] = 256
    counts[5] = 0
    counts[5, -1] = 256  # the last query patch has no correspondence
    path = save_pairs([TracedPair(q, r, counts, 16, "pair 0"), TracedPair(q, r, counts, 16, "pair 1")],
                      tmp_path / "pairs.png", scale=2)
    img = _pixels(path)
    assert img.shape == (2 * (2 * 32 + 26 + 10), 2 * (48 + 12 + 32), 3)
    with pytest.raises(ValueError, match="pairs"):
        save_pairs([], tmp_path / "none.png")


def test_json_writer_is_strict(tmp_path):
    from copynce_fast.utils.jsonio import write_json

    path = write_json(tmp_path / "a" / "r.json", {"b": np.float32(0.5), "a": [np.nan, np.inf], "p": tmp_path})
    text = path.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')  # sorted keys
    assert json.loads(text) == {"a": [None, None], "b": 0.5, "p": str(tmp_path)}


def test_drawing_leaves_the_users_backend_alone(tmp_path):
    """viz never imports pyplot nor calls matplotlib.use: a user's backend (here svg) and figures survive."""
    code = f"""
import matplotlib
import sys
import numpy as np
from copynce_fast.viz import plot_pr_curve, plot_lines
plot_pr_curve({str(tmp_path / 'p.png')!r}, (np.linspace(0, 1, 5), np.ones(5)))
plot_lines({str(tmp_path / 'l.png')!r}, (np.arange(3), np.arange(3)))
assert "matplotlib.pyplot" not in sys.modules, "viz imported pyplot"
print(matplotlib.get_backend())
"""
    env = {"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"
    assert (tmp_path / "p.png").is_file() and (tmp_path / "l.png").is_file()
