"""The video-pair picture: size, segment boxes where the segments are, pooling of big matrices, bad input."""
import numpy as np
import pytest
from PIL import Image

from copynce_fast.video.segments import Match
from copynce_fast.viz.video import _pool, plot_video_pair


def frames(n, step=0.5):
    return np.stack([np.arange(n) * step, np.arange(1, n + 1) * step], axis=1)


def red_pixels(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.convert("RGB")).astype(int)
    return np.argwhere((a[..., 0] > 230) & (a[..., 1] < 80) & (a[..., 2] < 80))


def test_segment_box_lands_on_its_cells(tmp_path):
    sim = np.zeros((40, 60), np.float32)
    sim[10:22, 20:32] = np.eye(12)
    early, late = Match("Q", "R", 1, 3, 1, 3, 0.9), Match("Q", "R", 15, 19, 25, 29, 0.8)
    a = Image.open(plot_video_pair(tmp_path / "a.png", sim, frames(40), frames(60), [early]))
    b = Image.open(plot_video_pair(tmp_path / "b.png", sim, frames(40), frames(60), [late]))
    assert a.size == (760, 640)
    ya, xa = red_pixels(a).mean(0)
    yb, xb = red_pixels(b).mean(0)
    assert xb > xa + 200 and yb > ya + 200  # later in both videos: right and down, by about 24/30 and 16/20


def test_big_matrices_are_max_pooled(tmp_path):
    sim = np.zeros((3000, 2500), np.float32)
    sim[np.arange(2500), np.arange(2500)] = 1.0  # a thin diagonal survives max pooling
    pooled, fq, fr = _pool(sim, 1000)
    assert (fq, fr) == (3, 3) and pooled.shape == (1000, 834)
    assert pooled[np.arange(833), np.arange(833)].min() == 1.0
    plot_video_pair(tmp_path / "big.png", sim[:1200, :1100], frames(1200, 1.0), frames(1100, 1.0))  # pooled by 2


def test_bad_shapes_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        plot_video_pair(tmp_path / "x.png", np.zeros((3, 4)), frames(3), frames(5))
    with pytest.raises(ValueError, match="query_ts"):
        plot_video_pair(tmp_path / "x.png", np.zeros((3, 4)), np.zeros((3, 3)), frames(4))
