"""copynce-fast extract: folders with a corrupt file, missing inputs, resume == one-shot, list / DISC21 sources."""
import numpy as np
import pytest
from PIL import Image

from copynce_fast.cli import main
from copynce_fast.search.features import load_features

MODEL = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "16", "--workers", "0",
         "--no-progress", "--batch-size", "2"]


def make_images(folder, names, seed=0, size=(40, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
    return folder


def test_corrupt_file_is_skipped_counted_and_named(tmp_path, capsys):
    src = make_images(tmp_path / "imgs", ["a.png", "b.jpg", "c.png"])
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "f.npz"
    assert main(["extract", str(src), "--out", str(out), *MODEL]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped {src / 'broken.jpg'}: " in err  # named with its reason
    assert "3 extracted, 1 skipped" in err
    feats = load_features(out)
    assert sorted(feats.ids.tolist()) == ["a", "b", "c"]
    assert feats.features.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(feats.features, axis=1), 1.0, rtol=1e-5)
    assert not (tmp_path / "f.npz.parts").exists()  # consolidated and cleaned up


def test_missing_folder_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "does_not_exist"
    assert main(["extract", str(missing), "--out", str(tmp_path / "f.npz"), *MODEL]) != 0
    err = capsys.readouterr().err
    assert err.startswith("copynce-fast extract: error:") and str(missing) in err


def test_missing_weights_file_is_named(tmp_path, capsys):
    src = make_images(tmp_path / "imgs", ["a.png"])
    ckpt = tmp_path / "no_such.pt"
    assert main(["extract", str(src), "--out", str(tmp_path / "f"), "--weights", str(ckpt)]) == 1
    assert str(ckpt) in capsys.readouterr().err


def test_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "f"), *MODEL]) == 1
    assert "no images found" in capsys.readouterr().err


@pytest.mark.parametrize("out_name", ["feats", "feats.npz"])
def test_interrupted_then_resumed_equals_one_shot(tmp_path, out_name, capsys):
    src = make_images(tmp_path / "imgs", [f"im{i}.png" for i in range(7)])
    one_shot = tmp_path / "one" / out_name
    assert main(["extract", str(src), "--out", str(one_shot), *MODEL]) == 0
    resumed = tmp_path / "two" / out_name
    assert main(["extract", str(src), "--out", str(resumed), "--max-images", "3", *MODEL]) == 0
    assert "stopped early" in capsys.readouterr().err
    partial = load_features(resumed.with_name(resumed.name + ".parts") if out_name.endswith(".npz") else resumed)
    assert len(partial.ids) == 3
    assert main(["extract", str(src), "--out", str(resumed), *MODEL]) == 0
    assert "3 already stored, 4 extracted" in capsys.readouterr().err
    a, b = load_features(one_shot), load_features(resumed)
    assert a.ids.tolist() == b.ids.tolist() == [f"im{i}" for i in range(7)]
    np.testing.assert_allclose(a.features, b.features, atol=1e-6)
    # a third run has nothing left to do
    assert main(["extract", str(src), "--out", str(resumed), *MODEL]) == 0
    assert "7 already stored, 0 extracted" in capsys.readouterr().err


def test_resume_with_other_weights_is_refused(tmp_path, capsys):
    src = make_images(tmp_path / "imgs", ["a.png", "b.png"])
    out = tmp_path / "f"
    assert main(["extract", str(src), "--out", str(out), *MODEL]) == 0
    assert main(["extract", str(src), "--out", str(out), *MODEL, "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert "existing features were made differently" in err and "seed1" in err


def test_file_list_and_disc21_split(tmp_path):
    root = tmp_path / "DISC21"
    make_images(root / "query_images", ["Q00001.jpg", "Q25000.jpg", "Q25001.jpg", "Q50000.jpg"])
    make_images(root / "reference_images", ["R000000.jpg", "R000001.jpg"])
    out = tmp_path / "dev.npz"
    assert main(["extract", str(root), "--split", "dev", "--out", str(out), *MODEL]) == 0
    assert load_features(out).ids.tolist() == ["Q25000", "Q25001"]

    listing = tmp_path / "list.txt"
    listing.write_text("# two references\nDISC21/reference_images/R000001.jpg\n\nDISC21/query_images/Q00001.jpg\n")
    out2 = tmp_path / "list.npz"
    assert main(["extract", str(listing), "--out", str(out2), *MODEL]) == 0
    assert load_features(out2).ids.tolist() == ["R000001", "Q00001"]

    csv_list = tmp_path / "isc_query.csv"
    csv_list.write_text("uuid,path\nQ25000,query_images/Q25000.jpg\nQX,query_images/Q50000.jpg\n")
    out3 = tmp_path / "csv.npz"
    assert main(["extract", str(csv_list), "--root", str(root), "--out", str(out3), *MODEL]) == 0
    feats3 = load_features(out3)
    assert feats3.ids.tolist() == ["Q25000", "QX"]
    # same image, same model: the same descriptor whatever the source listing
    dev = load_features(out)
    np.testing.assert_allclose(feats3.features[0], dev.features[0], atol=1e-6)


def test_duplicate_ids_in_a_folder_are_an_error(tmp_path, capsys):
    make_images(tmp_path / "imgs" / "x", ["same.png"])
    make_images(tmp_path / "imgs" / "y", ["same.jpg"])
    assert main(["extract", str(tmp_path / "imgs"), "--out", str(tmp_path / "f"), *MODEL]) == 1
    assert "share the id 'same'" in capsys.readouterr().err
