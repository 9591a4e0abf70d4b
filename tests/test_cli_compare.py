"""copynce-fast compare: score on stdout, a PNG of the documented size, JSON maps, clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from copynce_fast.cli import main
from copynce_fast.viz.compare import canvas_size


def _image(path, seed, size=(70, 90)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind, label", [("descriptor", "descriptor cosine"), ("matcher", "copy probability")])
def test_compare_writes_png_and_prints_score(tmp_path, capsys, kind, label):
    a = _image(tmp_path / "a.png", 0)
    b = tmp_path / "crop.png"
    with Image.open(a) as im:
        im.crop((10, 5, 60, 55)).save(b)  # the query is a crop of the reference
    out, js = tmp_path / "pair.png", tmp_path / "pair.json"
    assert main(["compare", str(b), str(a), "--out", str(out), "--json", str(js), "--random-init", "--kind", kind,
                 "--arch", "vit_tiny", "--img-size", "64", "--panel", "100", "--lines", "4", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"{label}: ")
    score = float(printed.split(": ")[1])
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == canvas_size(100) == (216, 130)
    data = json.loads(js.read_text())
    assert data["kind"] == kind and data["score"] == pytest.approx(score, abs=1e-6)
    assert np.asarray(data["query_entropy"]).shape == (4, 4)
    assert len(data["matches"]) <= 4


def test_identical_images_descriptor_cosine_is_one(tmp_path, capsys):
    a = _image(tmp_path / "a.png", 1)
    assert main(["compare", str(a), str(a), "--out", str(tmp_path / "o.png"), "--random-init", "--arch",
                 "vit_tiny", "--img-size", "32"]) == 0
    assert float(capsys.readouterr().out.split(": ")[1]) == pytest.approx(1.0, abs=1e-5)


def test_compare_errors_name_the_bad_input(tmp_path, capsys):
    a = _image(tmp_path / "a.png", 1)
    missing = tmp_path / "missing.jpg"
    assert main(["compare", str(missing), str(a), "--out", str(tmp_path / "o.png"), "--random-init"]) == 1
    assert "query: no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"xx")
    assert main(["compare", str(a), str(broken), "--out", str(tmp_path / "o.png"), "--random-init"]) == 1
    err = capsys.readouterr().err
    assert "reference" in err and str(broken) in err and "cannot decode" in err
    assert main(["compare", str(a), str(a), "--out", str(tmp_path / "o.png")]) == 1
    assert "--weights" in capsys.readouterr().err
