"""Bad input on the command line: every mistake is one line naming the flag or the file, exit code != 0, no
traceback -- bad flag values, refused (pickled) checkpoints and arrays, and skipped images named with reasons."""
import numpy as np
import pytest

from copynce_fast.cli import main

RUN = ["--workers", "0", "--no-progress"]
TINY = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "8"]


@pytest.fixture()
def images(make_images):
    return make_images([(40, 40)] * 3)


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
    assert _error_line(capsys) == "copynce-fast knn: error: --k: must be in [1, 2] (3 images with a descriptor), got 5"


def test_a_bad_config_file_names_the_flag_and_the_field(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"run": {"log_every": 0}}')
    assert main(["train", "--config", str(bad)]) == 1
    assert _error_line(capsys) == f"copynce-fast train: error: --config {bad}: --run.log_every: must be >= 1, got 0"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad)]) == 1
    assert f"--config {bad}: not a JSON config" in _error_line(capsys)


# --- refused checkpoints and arrays ----------------------------------------------------------------------------

class _Gadget:  # any object: unpickling it means importing and calling code
    def __reduce__(self):
        return (print, ("pwned",))


def _evil_checkpoint(path):
    import torch
    torch.save({"model": {}, "config": {}, "payload": _Gadget()}, path)
    return path


REFUSED = "not a plain tensor checkpoint (refused: loading it could run code)"


def test_pickled_checkpoints_are_refused_naming_the_flag_and_the_file(tmp_path, images, capsys):
    evil = _evil_checkpoint(tmp_path / "evil.pt")
    i0, i1 = str(images / "i0.png"), str(images / "i1.png")
    cases = [
        (["extract", str(images), "--out", str(tmp_path / "f"), "--weights", str(evil), *RUN], "--weights"),
        (["compare", i0, i1, "--out", str(tmp_path / "c.png"), "--weights", str(evil)], "--weights"),
        (["export", "--to", "torchscript", "--out", str(tmp_path / "m.pt"), "--weights", str(evil)], "--weights"),
        (["train", f"--model.pretrained={evil}", "--run.out_dir", str(tmp_path / "run"), "--no-progress"],
         "--model.pretrained"),
    ]
    for argv, flag in cases:
        assert main(argv) == 1, argv
        line = _error_line(capsys)
        assert line == f"copynce-fast {argv[0]}: error: {flag} {evil}: {REFUSED}", line
    assert "pwned" not in capsys.readouterr().out


def test_a_pickled_checkpoint_in_the_run_folder_is_refused_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    evil = _evil_checkpoint(run / "checkpoint.pt")
    assert main(["train", "--run.out_dir", str(run), "--no-progress", "--data.synthetic_images=0",
                 "--data.batch_size=4"]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"copynce-fast train: error: --run.resume {evil}: {REFUSED}"), line
    assert "--run.resume=false" in line  # how to start over


def test_pickled_object_arrays_are_refused_for_knn_and_data_knn_path(tmp_path, images, capsys):
    objects = np.array([{"a": 1}, None], dtype=object)
    feats = tmp_path / "evil.npz"
    np.savez(feats, ids=objects, features=objects, meta=objects)
    assert main(["knn", str(feats), "--source", str(images), "--k", "1", "--out", str(tmp_path / "k.npy")]) == 1
    assert _error_line(capsys) == (f"copynce-fast knn: error: features {feats}: holds pickled Python objects "
                                   f"(refused: loading them could run code)")
    table = tmp_path / "knn.npy"
    np.save(table, objects, allow_pickle=True)
    assert main(["train", f"--data.knn_path={table}", "--run.out_dir", str(tmp_path / "run"), "--no-progress",
                 "--preset", "descriptor_vits_224", "--data.source", str(images)]) == 1
    assert _error_line(capsys) == (f"copynce-fast train: error: --data.knn_path {table}: holds pickled Python "
                                   f"objects (refused: loading them could run code)")


def test_a_bare_pickle_is_refused_and_a_corrupt_file_named_without_torch_advice(tmp_path, images, capsys):
    import pickle
    bare, junk = tmp_path / "bare.pkl", tmp_path / "junk.pt"
    bare.write_bytes(pickle.dumps({"model": _Gadget()}, protocol=4))
    junk.write_bytes(b"not a checkpoint")
    argv = ["extract", str(images), "--out", str(tmp_path / "f"), *RUN, "--weights"]
    assert main([*argv, str(bare)]) == 1
    assert _error_line(capsys) == f"copynce-fast extract: error: --weights {bare}: {REFUSED}"
    assert main([*argv, str(junk)]) == 1
    assert _error_line(capsys) == (f"copynce-fast extract: error: --weights {junk}: cannot load (not a PyTorch "
                                   f"checkpoint: UnpicklingError: Unsupported operand 110)")
