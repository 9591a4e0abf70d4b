"""Skipped images: every unusable file named with a reason free of object reprs (on stderr when few, in a
skipped.txt beside the output when many), the count in the final line of each command and in the run's logs."""
import json

import numpy as np
import pytest
from PIL import Image

from copynce_fast.cli import main

RUN = ["--workers", "0", "--no-progress"]
TINY = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "8"]



def _broken_folder(folder, good=6, bad_copies=1):
    """``good`` readable images and ``bad_copies`` x 4 unusable ones (not an image, empty, truncated, too small)."""
    import io
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(folder / f"ok{i}.jpg")
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    for c in range(bad_copies):
        (folder / f"text{c}.jpg").write_text("hello")
        (folder / f"empty{c}.png").write_bytes(b"")
        (folder / f"trunc{c}.jpg").write_bytes(jpeg.getvalue()[:300])
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"tiny{c}.png")
    return folder


def _assert_clean(reason):
    assert " at 0x" not in reason and "np.str_" not in reason and "<" not in reason, reason


def test_a_few_skipped_images_are_each_named_on_stderr_with_the_count_in_the_final_line(tmp_path, capsys):
    folder = _broken_folder(tmp_path / "imgs")
    out = tmp_path / "f.npz"
    assert main(["extract", str(folder), "--out", str(out), *TINY, *RUN]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    named = [line for line in err if line.startswith("copynce-fast extract: warning: skipped ")]
    assert sorted(line.split()[4].rstrip(":") for line in named) == sorted(
        str(folder / n) for n in ("text0.jpg", "empty0.png", "trunc0.jpg", "tiny0.png"))
    for line in named:
        _assert_clean(line)
    assert "4 skipped" in err[-1] and not (tmp_path / "f.npz.skipped.txt").exists()


def test_many_skipped_images_are_listed_in_skipped_txt_beside_the_output(tmp_path, capsys):
    folder = _broken_folder(tmp_path / "imgs", good=3, bad_copies=6)  # 24 unusable files
    out = tmp_path / "feats"
    assert main(["extract", str(folder), "--out", str(out), *TINY, *RUN]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    listing = out / "skipped.txt"
    assert not [line for line in err if "skipped " in line and "tiny" in line]  # not one line per file
    assert f"24 skipped (listed in {listing})" in err[-1]
    rows = [line.split("\t") for line in listing.read_text().splitlines()[1:]]
    assert len(rows) == 24 and all(len(r) == 2 and r[1] for r in rows)
    for _, reason in rows:
        _assert_clean(reason)


def test_training_counts_skipped_images_in_its_final_line_log_and_listing(tmp_path, capsys):
    folder = _broken_folder(tmp_path / "imgs")  # 6 good, 4 unusable: one epoch of batch 2 visits all
    run = tmp_path / "run"
    argv = ["train", "--preset", "demo", "--data.source", str(folder), "--data.synthetic_images=0",
            "--data.batch_size=2", "--model.img_size=32", "--model.dim=16", "--run.max_steps=5",
            "--run.eval_after=false", "--run.out_dir", str(run), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert f"4 images skipped (listed in {run / 'skipped.txt'})" in out[-1], out[-1]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_images"] == 4
    listed = [line.split("\t") for line in (run / "skipped.txt").read_text().splitlines()[1:]]
    assert sorted(p for p, _ in listed) == sorted(str(folder / n) for n in
                                                   ("text0.jpg", "empty0.png", "trunc0.jpg", "tiny0.png"))
    for _, reason in listed:
        _assert_clean(reason)


def test_knn_skips_images_extract_skipped_and_counts_them(tmp_path, capsys):
    folder = _broken_folder(tmp_path / "imgs")
    feats, table = tmp_path / "f.npz", tmp_path / "knn.npy"
    assert main(["extract", str(folder), "--out", str(feats), *TINY, *RUN]) == 0
    capsys.readouterr()
    assert main(["knn", str(feats), "--source", str(folder), "--k", "2", "--out", str(table),
                 "--backend", "torch"]) == 0
    assert "4 images skipped" in capsys.readouterr().err.strip().splitlines()[-1]
    names = sorted(p.name for p in folder.iterdir())
    bad = {k for k, n in enumerate(names) if not n.startswith("ok")}
    knn = np.load(table)
    assert knn.shape == (10, 2) and not bad & set(knn.ravel().tolist())  # never a neighbour


def test_decoder_reasons_hold_no_object_reprs():
    from copynce_fast.data.decode import BadImage, decode_bytes
    for data in (b"hello", b""):
        with pytest.raises(BadImage) as e:
            decode_bytes(data)
        _assert_clean(str(e.value))
        assert str(e.value).startswith("not an image")


def test_rescore_names_unusable_images_and_counts_them_and_the_dropped_pairs(tmp_path, capsys):
    folder = _broken_folder(tmp_path / "imgs")
    candidates = tmp_path / "cands.csv"
    candidates.write_text("query_id,reference_id,score\nok0,ok1,0.9\ntext0,ok1,0.8\nok2,tiny0,0.7\nok3,ok4,0.6\n")
    out = tmp_path / "rescored.csv"
    assert main(["rescore", str(candidates), "--query-images", str(folder), "--reference-images", str(folder),
                 "--out", str(out), "--random-init", "--arch", "vit_tiny", "--img-size", "32", *RUN]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    named = sorted(line.split()[4].rstrip(":") for line in err if " warning: skipped " in line)
    assert named == sorted([str(folder / "text0.jpg"), str(folder / "tiny0.png")])
    assert err[-1].endswith("; 2 images skipped, 2 pairs dropped"), err[-1]
    assert len(out.read_text().splitlines()) == 3  # header + the two readable pairs
