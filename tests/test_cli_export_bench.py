"""copynce-fast export (TorchScript / ONNX equal the model) and bench (script lookup, pass-through, errors)."""
import numpy as np
import pytest
import torch

from copynce_fast.cli import main
from copynce_fast.cli.bench import SCRIPTS, benchmarks_dir
from copynce_fast.models.loading import load_model

MODEL = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "16"]


def test_export_torchscript_matches_the_model(tmp_path):
    out = tmp_path / "d.pt"
    assert main(["export", "--to", "torchscript", "--out", str(out), *MODEL]) == 0
    ref = load_model("descriptor", random_init=True, arch="vit_tiny", img_size=32, dim=16).model
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), ref(x)["feat"], atol=1e-5, rtol=1e-5)


def test_export_onnx_matches_the_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "d.onnx"
    assert main(["export", "--to", "onnx", "--out", str(out), *MODEL]) == 0
    ref = load_model("descriptor", random_init=True, arch="vit_tiny", img_size=32, dim=16).model
    x = torch.randn(2, 3, 32, 32)
    got = ort.InferenceSession(str(out)).run(["feat"], {"images": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, ref(x)["feat"].numpy(), atol=1e-4)


def test_export_refuses_a_matcher(tmp_path, capsys):
    from dataclasses import replace

    from copynce_fast.config import Config, ModelConfig, to_dict
    from copynce_fast.models.loading import build_model

    mc = ModelConfig(kind="matcher", arch="vit_tiny", img_size=32, encoder_depth=2)
    path = tmp_path / "m.pt"
    torch.save({"model": build_model(mc).state_dict(), "config": to_dict(replace(Config(), model=mc))}, path)
    assert main(["export", "--to", "torchscript", "--out", str(tmp_path / "x.pt"), "--weights", str(path)]) == 1
    assert "a descriptor is needed" in capsys.readouterr().err


def test_bench_runs_the_script_with_this_python(tmp_path, capsys):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    marker = tmp_path / "ran.txt"
    (folder / "bench_eval.py").write_text(
        "import sys\n"
        f"open({str(marker)!r}, 'w').write(sys.executable + '|' + ' '.join(sys.argv[1:]))\n"
        "sys.exit(3 if '--fail' in sys.argv else 0)\n")
    assert main(["bench", "eval", "--quick", "--benchmarks-dir", str(folder)]) == 0
    exe, argv = marker.read_text().split("|")
    import sys
    assert exe == sys.executable and argv == "--quick"
    assert main(["bench", "eval", "--benchmarks-dir", str(folder), "--", "--fail"]) == 3  # exit code passed on


def test_bench_errors(tmp_path, capsys):
    assert main(["bench", "eval", "--benchmarks-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "no benchmarks folder" in err and "pip install -e ." in err
    (tmp_path / "bench_other.py").write_text("")
    assert main(["bench", "models", "--benchmarks-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no benchmark 'models'" in err and "other" in err


def test_bench_finds_the_repository_benchmarks():
    folder = benchmarks_dir()  # editable install: <repo>/benchmarks
    assert (folder / "bench_copynce.py").is_file()
    assert set(SCRIPTS) >= {"copynce", "overlap", "models", "loader", "eval", "dense", "train"}


def test_bench_loader_names_a_wrong_official_src(tmp_path):
    # --official-src is checked before any timing: one line naming the flag, exit 2, no traceback
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loader.py"
    r = subprocess.run([sys.executable, str(script), "--quick", "--official-src", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --official-src") and "Traceback" not in r.stderr
