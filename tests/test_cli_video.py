"""The video commands end to end on generated videos: extract --video, match-video, evaluate --protocol vsc-*."""
import csv
import json

import numpy as np
import pytest

pytest.importorskip("av")

from copynce_fast.cli import main  # noqa: E402
from copynce_fast.video.features import load_video_features, save_video_features  # noqa: E402
from copynce_fast.video.segments import read_matches_csv  # noqa: E402
from copynce_fast.video.synthetic import Insert, make_dataset  # noqa: E402

MODEL = ["--random-init", "--arch", "vit_tiny", "--img-size", "32", "--dim", "32", "--workers", "0",
         "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_video")
    ds = make_dataset(root, {"Q000": (6.0, [Insert("R000", 1, 4, 2)]), "Q001": (5.0, [Insert("R001", 0, 3, 1)]),
                             "Q002": (4.0, [])}, n_refs=3, ref_duration=5.0, size=(48, 64))
    (ds.queries / "broken.mp4").write_bytes(b"not a video at all")
    return ds


def run(*argv):
    return main([str(a) for a in argv])


def test_extract_match_and_evaluate(data, tmp_path, capsys):
    q, r = tmp_path / "q.npz", tmp_path / "r.npz"
    assert run("extract", data.queries, "--video", "--fps", 2, "--out", q, *MODEL) == 0
    err = capsys.readouterr().err
    assert "broken.mp4:" in err and "1 skipped" in err  # named with its reason, counted in the final line
    assert run("extract", data.refs, "--video", "--fps", 2, "--out", r, *MODEL) == 0
    fq = load_video_features(q)
    assert [v for v, _ in fq.videos()] == ["Q000", "Q001", "Q002"] and fq.meta["fps"] == 2.0

    out = tmp_path / "match"
    assert run("match-video", q, r, "--out", out, "--gt", data.ground_truth_csv, "--plots", 2, "--no-progress") == 0
    matches = read_matches_csv(out / "matches.csv")
    with (out / "candidates.csv").open() as f:
        assert next(csv.reader(f)) == ["query_id", "ref_id", "score"]
    assert len(list((out / "pairs").glob("*__*.png"))) == 2
    assert all(m.query_end > m.query_start for m in matches)

    ev = tmp_path / "ev_match"
    assert run("evaluate", out / "matches.csv", "--protocol", "vsc-matching", "--gt", data.ground_truth_csv,
               "--out", ev) == 0
    report = json.loads((ev / "metrics.json").read_text())
    assert 0.0 <= report["metrics"]["segment_ap"] <= 1.0 and (ev / "pr_curve.png").is_file()

    ev = tmp_path / "ev_desc"
    assert run("evaluate", "--protocol", "vsc-descriptor", "--queries", q, "--references", r, "--gt",
               data.ground_truth_csv, "--out", ev) == 0
    report = json.loads((ev / "metrics.json").read_text())
    assert 0.0 <= report["metrics"]["uap"] <= 1.0 and report["metrics"]["n_gt"] == 2


def test_match_two_video_files_and_exact_features(data, tmp_path):
    out = tmp_path / "pair"
    assert run("match-video", data.queries / "Q000.mp4", data.refs / "R000.mp4", "--fps", 2, "--out", out,
               *MODEL) == 0
    assert (out / "matches.csv").is_file() and (out / "pairs" / "Q000__R000.png").is_file()
    # features that copy reference frames exactly: the segment is found to the frame
    ref = load_video_features(tmp_path / "pair" / "features" / "reference.npz")
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((10, ref.dim)).astype(np.float32)
    feats[2:8] = ref.features[2:8]
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    ts = np.stack([np.arange(10) / 2, np.arange(1, 11) / 2], 1)
    save_video_features(tmp_path / "q.npz", ["Q9"] * 10, ts, feats)
    assert run("match-video", tmp_path / "q.npz", tmp_path / "pair" / "features" / "reference.npz", "--out",
               tmp_path / "exact", "--tn-param", "min_length=3") == 0
    (m,) = read_matches_csv(tmp_path / "exact" / "matches.csv")
    assert (m.query_start, m.query_end, m.ref_start, m.ref_end) == (1.0, 4.0, 1.0, 4.0)


def test_errors_are_one_line(data, tmp_path, capsys):
    assert run("match-video", tmp_path / "missing.npz", data.refs, "--out", tmp_path / "x") == 1
    assert "query: no such file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("extract", empty, "--video", "--out", tmp_path / "e.npz", *MODEL) == 1
    assert "no video files" in capsys.readouterr().err
    assert run("match-video", data.queries, data.refs, "--out", tmp_path / "y", "--tn-param", "max_step=1",
               *MODEL) == 1
    err = capsys.readouterr().err
    assert "--tn-param" in err and "Traceback" not in err
    assert run("evaluate", "--protocol", "vsc-descriptor", "--gt", data.ground_truth_csv, "--out", tmp_path / "z") == 1
    assert "--queries" in capsys.readouterr().err
