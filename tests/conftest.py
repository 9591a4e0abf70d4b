"""Test setup: Triton runs in its CPU interpreter when there is no GPU (set before torch/triton import)."""
import os
import shutil

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

# One tolerance table (STYLE.md B6).
TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
}


def assert_close(actual, expected, dtype=torch.float32, **override):
    """allclose with the table's tolerance; on failure report max abs / rel diff and the worst index."""
    tol = {**TOL[dtype], **override}
    a, e = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    assert a.shape == e.shape, f"shape {tuple(a.shape)} != {tuple(e.shape)}"
    diff = (a - e).abs()
    bad = diff > tol["atol"] + tol["rtol"] * e.abs()
    if bad.any():
        idx = np.unravel_index(int(diff.argmax()), tuple(diff.shape)) if diff.dim() else ()
        rel = (diff / e.abs().clamp_min(1e-30)).max().item()
        raise AssertionError(f"not close: max abs diff {diff.max().item():.3e}, max rel diff {rel:.3e}, "
                             f"worst index {idx}: {a[idx].item()} vs {e[idx].item()}; {int(bad.sum())} bad")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture()
def make_images(tmp_path):
    """``make_images(shapes, name="imgs", ext="png", prefix="i")``: a folder of seeded random RGB images, one
    ``prefix{i}.{ext}`` per ``(height, width)`` in ``shapes``."""
    def make(shapes, name="imgs", ext="png", prefix="i"):
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i, (h, w) in enumerate(shapes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{prefix}{i}.{ext}")
        return folder
    return make
