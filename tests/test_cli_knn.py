"""`copynce-fast knn`: the hard-negative table finds planted duplicates, in the trainer's image order."""
import numpy as np
from PIL import Image

from copynce_fast.cli import main


def test_knn_table_pairs_planted_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    imgs = tmp_path / "train"
    imgs.mkdir()
    for i in range(4):
        a = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(imgs / f"a{i}.png")
        Image.fromarray(a).save(imgs / f"b{i}.png")  # an exact duplicate: must be the nearest neighbour
    feats, table = tmp_path / "f.npz", tmp_path / "knn.npy"
    assert main(["extract", str(imgs), "--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "16",
                 "--out", str(feats), "--no-progress", "--workers", "0"]) == 0
    assert main(["knn", str(feats), "--source", str(imgs), "--k", "2", "--out", str(table), "--backend", "torch"]) == 0
    knn = np.load(table)
    names = sorted(p.stem for p in imgs.iterdir())  # the folder source's order
    assert knn.shape == (8, 2)
    for i, n in enumerate(names):
        twin = ("b" if n[0] == "a" else "a") + n[1:]
        assert names[knn[i, 0]] == twin


def test_knn_names_missing_features(tmp_path, capsys):
    assert main(["knn", str(tmp_path / "nope.npz"), "--source", str(tmp_path), "--out", str(tmp_path / "k.npy")]) == 1
    assert "nope.npz" in capsys.readouterr().err


def test_scripts_are_thin_entry_points_to_the_cli():
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    for script in sorted(scripts.glob("*.py")):
        out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and f"copynce-fast {script.stem}" in out.stdout, script.name
