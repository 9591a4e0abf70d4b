"""extract -> index -> search -> evaluate end to end, and the search / evaluate options on their own."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from copynce_fast.cli import main
from copynce_fast.search.features import save_features
from copynce_fast.search.predictions import read_predictions_csv

MODEL = ["--random-init", "--arch", "vit_tiny", "--img-size", "64", "--dim", "32", "--workers", "0",
         "--no-progress"]


def make_collection(tmp_path):
    """6 references; queries Q0-Q3 are byte-identical copies of R0-R3, Q8/Q9 are unrelated images."""
    rng = np.random.default_rng(1)
    refs, queries = tmp_path / "refs", tmp_path / "queries"
    refs.mkdir()
    queries.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(refs / f"R{i}.png")
        if i < 4:
            (queries / f"Q{i}.png").write_bytes((refs / f"R{i}.png").read_bytes())
    for j in (8, 9):
        Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(queries / f"Q{j}.png")
    gt = tmp_path / "gt.csv"
    gt.write_text("query_id,reference_id\nQ0,R0\nQ1,R1\nQ2,R2\nQ3,R3\nQ8,\nQ9,\n")
    return queries, refs, gt


def read_csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_exact_copies_give_uap_one_end_to_end(tmp_path, capsys):
    queries, refs, gt = make_collection(tmp_path)
    qf, rf = tmp_path / "q.npz", tmp_path / "r.npz"
    assert main(["extract", str(queries), "--out", str(qf), *MODEL, "--batch-size", "4"]) == 0
    assert main(["extract", str(refs), "--out", str(rf), *MODEL, "--batch-size", "3"]) == 0
    idx = tmp_path / "r.index"
    assert main(["index", str(rf), "--out", str(idx)]) == 0
    preds = tmp_path / "preds.csv"
    assert main(["search", "--queries", str(qf), "--index", str(idx), "--out", str(preds), "-k", "3"]) == 0
    rows = read_csv_rows(preds)
    assert len(rows) == 6 * 3
    best = {r["query_id"]: r for r in rows[::3]}  # each query's rows come best first
    for i in range(4):
        assert best[f"Q{i}"]["reference_id"] == f"R{i}"
        assert float(best[f"Q{i}"]["score"]) == pytest.approx(1.0, abs=1e-5)

    report = tmp_path / "report"
    capsys.readouterr()
    assert main(["evaluate", str(preds), "--gt", str(gt), "--out", str(report)]) == 0
    assert "μAP      1.0000" in capsys.readouterr().out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["uap"] == 1.0 and metrics["recall_at_p90"] == 1.0 and metrics["map"] == 1.0
    assert metrics["n_gt"] == 4 and metrics["selection"]["evaluated"] == 18
    with Image.open(report / "pr_curve.png") as im:
        assert im.size == (640, 480)

    # exact search without a saved index, torch backend: the same pairs and scores
    preds2 = tmp_path / "preds2.csv"
    assert main(["search", "--queries", str(qf), "--references", str(rf), "--out", str(preds2), "-k", "3",
                 "--backend", "torch"]) == 0
    a, b = read_predictions_csv(preds), read_predictions_csv(preds2)
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    np.testing.assert_allclose(a[2], b[2], atol=1e-5)


def test_search_from_two_folders_in_one_command(tmp_path, capsys):
    queries, refs, gt = make_collection(tmp_path)
    preds = tmp_path / "out" / "p.csv"
    assert main(["search", "--query-images", str(queries), "--reference-images", str(refs), "--out", str(preds),
                 "-k", "2", *MODEL]) == 0
    assert (tmp_path / "out" / "p_features" / "queries" / "index.json").exists()
    q, r, s = read_predictions_csv(preds)
    assert len(q) == 12
    top = {qi: ri for qi, ri in zip(q[::2], r[::2])}
    assert all(top[f"Q{i}"] == f"R{i}" for i in range(4))
    assert main(["evaluate", str(preds), "--gt", str(gt), "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["uap"] == 1.0


def _features(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = save_features(tmp_path / "q.npz", [f"q{i}" for i in range(5)], x[:5], model="m", img_size=32)
    r = save_features(tmp_path / "r.npz", [f"r{i}" for i in range(15)], x[5:20], model="m", img_size=32)
    aux = save_features(tmp_path / "aux.npz", [f"t{i}" for i in range(20)], x[20:], model="m", img_size=32)
    return x, q, r, aux


def test_score_normalisation_subtracts_the_query_bias(tmp_path):
    x, q, r, aux = _features(tmp_path)
    plain, normed = tmp_path / "plain.csv", tmp_path / "sn.csv"
    assert main(["search", "--queries", str(q), "--references", str(r), "--out", str(plain), "-k", "4"]) == 0
    assert main(["search", "--queries", str(q), "--references", str(r), "--out", str(normed), "-k", "4",
                 "--score-norm", "sscd", "--aux", str(aux), "--sn-param", "first=0", "--sn-param", "last=1",
                 "--sn-param", "beta=2"]) == 0
    p, n = read_predictions_csv(plain), read_predictions_csv(normed)
    assert p[1].tolist() == n[1].tolist()  # per-query order unchanged
    aux_sims = np.sort(x[:5] @ x[20:].T, axis=1)[:, ::-1]
    bias = np.repeat(2.0 * aux_sims[:, :2].mean(1), 4)
    np.testing.assert_allclose(n[2], p[2] - bias, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--score-norm", "copynce"], "needs --aux"),
    (["--score-norm", "copynce", "--aux", "AUX", "--sn-param", "gamma=3"], "unknown parameter 'gamma'"),
    (["--sn-param", "alpha=1"], "need --score-norm"),
])
def test_search_argument_errors(tmp_path, capsys, argv, message):
    _, q, r, aux = _features(tmp_path)
    argv = [str(aux) if a == "AUX" else a for a in argv]
    assert main(["search", "--queries", str(q), "--references", str(r), "--out", str(tmp_path / "p.csv"),
                 *argv]) == 1
    assert message in capsys.readouterr().err


def test_search_needs_references_or_index(tmp_path, capsys):
    _, q, r, _ = _features(tmp_path)
    assert main(["search", "--queries", str(q), "--out", str(tmp_path / "p.csv")]) == 1
    assert "exactly one of --references" in capsys.readouterr().err
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"nope")
    assert main(["search", "--queries", str(bogus), "--references", str(r), "--out", str(tmp_path / "p.csv")]) == 1
    assert str(bogus) in capsys.readouterr().err


def test_ivf_index_with_all_lists_probed_is_exact(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = save_features(tmp_path / "q.npz", [f"q{i}" for i in range(20)], x[:20], model="m", img_size=32)
    r = save_features(tmp_path / "r.npz", [f"r{i}" for i in range(280)], x[20:], model="m", img_size=32)
    assert main(["index", str(r), "--out", str(tmp_path / "ivf"), "--type", "ivf", "--nlist", "4",
                 "--nprobe", "4"]) == 0
    assert main(["search", "--queries", str(q), "--index", str(tmp_path / "ivf"), "--out",
                 str(tmp_path / "a.csv"), "-k", "5"]) == 0
    assert main(["search", "--queries", str(q), "--references", str(r), "--out", str(tmp_path / "b.csv"),
                 "-k", "5"]) == 0
    a, b = read_predictions_csv(tmp_path / "a.csv"), read_predictions_csv(tmp_path / "b.csv")
    assert a[1].tolist() == b[1].tolist()
    np.testing.assert_allclose(a[2], b[2], atol=1e-5)


def test_evaluate_topk_and_global_cap(tmp_path, capsys):
    preds = tmp_path / "p.csv"
    # q1's true match is its 2nd candidate; the global ranking puts a negative first
    preds.write_text("query_id,reference_id,score\n"
                     "q1,rX,0.9\nq1,r1,0.8\nq2,r2,0.7\nq2,rY,0.6\nq3,rZ,0.95\n")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"q1": ["r1"], "q2": "r2", "q3": []}))

    def run(*extra):
        out = tmp_path / f"ev{len(extra)}_{'_'.join(extra)}"
        assert main(["evaluate", str(preds), "--gt", str(gt), "--out", str(out), *extra]) == 0
        return json.loads((out / "metrics.json").read_text())

    full = run()
    # ranking: rZ(-) rX(-) r1(+) r2(+) rY(-): precision at the positives 1/3 and 2/4
    assert full["uap"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    top1 = run("--topk", "1")  # keeps rX, r2, rZ: ranking rZ(-) rX(-) r2(+)
    assert top1["uap"] == pytest.approx((1 / 3) / 2) and top1["selection"]["after_topk"] == 3
    capped = run("--max-predictions", "3")  # rZ rX r1
    assert capped["uap"] == pytest.approx((1 / 3) / 2) and capped["n_predictions"] == 3
    assert "exceed --max-predictions 3" in capsys.readouterr().err
    assert full["recall_at_k"]["1"] == 0.5 and full["recall_at_k"]["10"] == 1.0


def test_evaluate_reads_the_reference_scores_json(tmp_path):
    preds = tmp_path / "scores.json"
    preds.write_text(json.dumps([["q1", [["r1", 0.9], ["r2", 0.1]]], ["q2", [["r3", 0.5]]]]))
    gt = tmp_path / "gt.csv"
    gt.write_text("query_id,reference_id\nq1,r1\nq2,\n")
    assert main(["evaluate", str(preds), "--gt", str(gt), "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["uap"] == 1.0


def test_evaluate_rejects_a_bad_ground_truth(tmp_path, capsys):
    preds = tmp_path / "p.csv"
    preds.write_text("query_id,reference_id,score\nq1,r1,0.5\n")
    gt = tmp_path / "gt.csv"
    gt.write_text("a,b\nq1,r1\n")
    assert main(["evaluate", str(preds), "--gt", str(gt), "--out", str(tmp_path / "ev")]) == 1
    err = capsys.readouterr().err
    assert "--gt" in err and "query_id,reference_id" in err


def test_torch_backend_index_equals_exact_search(tmp_path):
    x, q, r, _ = _features(tmp_path)
    assert main(["index", str(r), "--out", str(tmp_path / "t.index"), "--backend", "torch"]) == 0
    assert (tmp_path / "t.index" / "features.npy").is_file()
    assert main(["search", "--queries", str(q), "--index", str(tmp_path / "t.index"), "--out",
                 str(tmp_path / "t.csv"), "-k", "15"]) == 0
    qi, ri, s = read_predictions_csv(tmp_path / "t.csv")
    sims = x[:5] @ x[5:20].T
    order = np.argsort(-sims, axis=1)
    assert ri.tolist() == [f"r{j}" for row in order for j in row]
    np.testing.assert_allclose(s, np.take_along_axis(sims, order, 1).reshape(-1), atol=1e-5)
    assert main(["index", str(r), "--out", str(tmp_path / "bad"), "--backend", "torch", "--type", "ivf"]) == 1


@pytest.mark.parametrize("argv, message", [
    (["--type", "ivf", "--nlist", "4", "--nprobe", "9"], "--nprobe must be in [1, nlist=4], got 9"),
    (["--type", "ivf", "--nlist", "999"], "--nlist must be in [1, 280]"),
    (["--backend", "torch", "--type", "ivfpq"], "--type 'ivfpq' needs faiss"),
])
def test_library_errors_name_the_flag_not_the_parameter(tmp_path, capsys, argv, message):
    """The library names its parameter (``nprobe must ...``); the CLI reports the flag the user typed."""
    pytest.importorskip("faiss")
    x = np.random.default_rng(3).normal(size=(280, 16)).astype(np.float32)
    r = save_features(tmp_path / "r.npz", [f"r{i}" for i in range(280)], x, model="m", img_size=32)
    assert main(["index", str(r), "--out", str(tmp_path / "i"), *argv]) == 1
    assert f"copynce-fast index: error: {message}" in capsys.readouterr().err
