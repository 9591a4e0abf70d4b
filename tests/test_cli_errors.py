"""Bad input on the command line: every mistake is one line naming the flag or the file, exit code != 0, no
traceback -- bad flag values, refused (pickled) checkpoints and arrays, and skipped images named with reasons."""
import numpy as np
import pytest
from PIL import Image

from copynce_fast.cli import main

RUN = ["--workers", "0", "--no-progress"]
TINY = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "8"]


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"i{i}.png")
    return folder


def _error_line(capsys) -> str:
    """The last stderr line (argparse prints its usage above it); never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err, err
    return err.strip().splitlines()[-1]


# --- flag values -----------------------------------------------------------------------------------------------

def _flag_cases(tmp, imgs):
    out = str(tmp / "o")
    i0, i1 = str(imgs / "i0.png"), str(imgs / "i1.png")
    return [  # (argv, exit code, text the error line must hold)
        (["demo", "--pairs", "-3", "--out", out], 2, "argument --pairs: expected a positive integer, got -3"),
        (["demo", "--epochs", "0", "--out", out], 2, "argument --epochs: expected a positive integer, got 0"),
        (["extract", str(imgs), "--out", out, *TINY, "--dim", "0", *RUN], 2, "argument --dim"),
        (["extract", str(imgs), "--out", out, *TINY, "--encoder-depth", "0", *RUN], 2, "argument --encoder-depth"),
        (["extract", str(imgs), "--out", out, *TINY, "--img-size", "100", *RUN], 2,
         "argument --img-size: expected a positive multiple of 16, got 100"),
        (["extract", str(imgs), "--out", out, *TINY, "--seed", "-1", *RUN], 2, "argument --seed"),
        (["compare", i0, i1, "--out", out, *TINY, "--scale", "-1"], 2, "argument --scale: expected a positive number"),
        (["compare", i0, i1, "--out", out, *TINY, "--panel", "0"], 2, "argument --panel: expected an integer >= 32"),
        (["export", "--to", "onnx", "--out", out, *TINY, "--opset", "0"], 2, "argument --opset: expected an integer in"),
        (["knn", out, "--source", str(imgs), "--k", "0", "--out", out], 2, "argument --k: expected a positive integer"),
        (["index", out, "--out", out, "--seed", "-1"], 2, "argument --seed"),
        (["rescore", out, "--query-images", str(imgs), "--reference-images", str(imgs), "--out", out,
          "--query-split", "bogus", *TINY], 2, "argument --query-split: invalid choice: 'bogus'"),
        (["train", "--config", str(tmp / "nope.json")], 1, f"--config: no such file: {tmp / 'nope.json'}"),
        (["train", "--data.batch_size=1"], 1, "--data.batch_size: must be >= 2, got 1"),
        (["train", "--optim.betas", "0.9"], 1, "--optim.betas: expected 2 values"),
    ]


def test_bad_flag_values_are_one_line_naming_the_flag(tmp_path, images, capsys):
    for argv, code, text in _flag_cases(tmp_path, images):
        assert main(argv) == code, argv
        line = _error_line(capsys)
        assert text in line, (argv, line)
        assert line.startswith(f"copynce-fast {argv[0]}: error:"), line
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_library_parameter_is_reported_as_its_flag(tmp_path, images, capsys):
    feats = tmp_path / "f.npz"
    assert main(["extract", str(images), "--out", str(feats), *TINY, *RUN]) == 0
    capsys.readouterr()
    assert main(["knn", str(feats), "--source", str(images), "--k", "5", "--out", str(tmp_path / "k.npy")]) == 1
    assert _error_line(capsys) == "copynce-fast knn: error: --k: must be in [1, N-1] = [1, 2], got 5"


def test_a_bad_config_file_names_the_flag_and_the_field(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"run": {"log_every": 0}}')
    assert main(["train", "--config", str(bad)]) == 1
    assert _error_line(capsys) == f"copynce-fast train: error: --config {bad}: --run.log_every: must be >= 1, got 0"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad)]) == 1
    assert f"--config {bad}: not a JSON config" in _error_line(capsys)
