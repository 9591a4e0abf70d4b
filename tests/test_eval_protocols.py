"""Benchmark protocols (disc21, ndec, anypattern) on small generated layouts, metric values checked by hand."""
import numpy as np
import pytest

from copynce_fast.eval.metrics import evaluate
from copynce_fast.eval.ndec import hard_negative_metrics, read_hard_negatives
from copynce_fast.eval.protocols import EvalOptions, cap_predictions, get_protocol, protocol_names


def write_images(folder, ids):
    folder.mkdir(parents=True)
    for i in ids:
        (folder / f"{i}.jpg").write_bytes(b"\xff\xd8")  # stems are all the layout check reads


def write_preds(path, rows):
    path.write_text("query_id,reference_id,score\n" + "".join(f"{q},{r},{s}\n" for q, r, s in rows))
    return path


def run(name, root, preds, options=EvalOptions(), **overrides):
    protocol = get_protocol(name)
    layout = protocol.locate(root, overrides)
    return protocol.evaluate(preds, layout, options)


# ---------------------------------------------------------------------------------------------------- DISC21


def disc21_layout(tmp_path):
    root = tmp_path / "DISC21"
    write_images(root / "query_images", ["Q0", "Q1", "Q2", "Q3"])
    write_images(root / "reference_images", ["R0", "R1", "R5"])
    (root / "public_ground_truth.csv").write_text("query_id,reference_id\nQ0,R0\nQ1,R1\nQ2,\nQ3,\n")
    return root


def test_disc21_hand_checked(tmp_path):
    root = disc21_layout(tmp_path)
    # ranking: + (0.9), - (0.8), + (0.7), - (0.6); N_gt = 2
    preds = write_preds(tmp_path / "p.csv", [("Q0", "R0", 0.9), ("Q2", "R5", 0.8), ("Q1", "R1", 0.7),
                                             ("Q3", "R3", 0.6)])
    rep = run("disc21", root, preds)
    flat = rep.flat()
    assert flat["uap"] == pytest.approx((1 + 2 / 3) / 2)  # precisions 1/1 and 2/3 at the positives
    assert flat["recall_at_p90"] == 0.5 and flat["threshold_at_p90"] == 0.9  # only rank 1 has P >= 0.9
    assert flat["recall_at_1"] == 1.0
    assert [k for _, k in rep.headline] == ["uap", "recall_at_p90"]
    assert rep.details["notes"] == [] and rep.details["folders"]["queries"].endswith("query_images")
    assert rep.selection["max_predictions"] == 500_000 and rep.selection["evaluated"] == 4

    # a cap of 2 keeps (+0.9, -0.8): μAP = 1/2 (the unretrieved GT pair still counts)
    assert run("disc21", root, preds, EvalOptions(max_predictions=2)).flat()["uap"] == pytest.approx(0.5)


def test_cap_breaks_ties_pessimistically(tmp_path):
    root = disc21_layout(tmp_path)
    preds = write_preds(tmp_path / "p.csv", [("Q0", "R0", 0.5), ("Q2", "R5", 0.5)])
    assert run("disc21", root, preds, EvalOptions(max_predictions=1)).flat()["uap"] == 0.0  # the negative stays


def test_cap_matches_metrics_module_on_random_ties():
    rng = np.random.default_rng(0)
    n = 300
    q = np.asarray([f"Q{i}" for i in rng.integers(0, 40, n)])
    r = np.asarray([f"R{i}" for i in rng.integers(0, 30, n)])
    keep = np.unique(np.char.add(np.char.add(q, "|"), r), return_index=True)[1]  # no duplicate pairs
    q, r = q[keep], r[keep]
    s = rng.integers(0, 5, len(q)).astype(np.float64)  # many ties
    gt = {f"Q{i}": [f"R{i % 30}"] for i in range(40)}
    for cap in (1, 7, 50, None):
        capped = cap_predictions(q, r, s, gt, cap)
        assert evaluate(capped, gt).uap == pytest.approx(evaluate((q, r, s), gt, max_predictions=cap).uap)


# ------------------------------------------------------------------------------------------------------ NDEC


def ndec_layout(tmp_path, hard_negatives=True):
    root = tmp_path / "ndec"
    write_images(root / "query_images", ["Q0", "Q1", "Q2", "H0", "H1"])
    write_images(root / "reference_images", ["R0", "R1"])
    (root / "ground_truth.csv").write_text("query_id,reference_id\nQ0,R0\nQ1,R1\nQ2,\nH0,\nH1,\n")
    if hard_negatives:
        (root / "hard_negatives.csv").write_text("query_id,reference_id\nH0,R0\nH1,R1\n")
    return root


NDEC_PREDS = [("Q2", "R9", 0.95),  # ordinary unmatched query
              ("Q0", "R0", 0.90),  # copy
              ("H0", "R0", 0.85),  # hard negative, its listed look-alike pair
              ("Q1", "R1", 0.70),  # copy
              ("H1", "R4", 0.60),  # hard negative, another reference
              ("Q1", "R8", 0.50)]  # wrong reference of a query that has a copy


def test_ndec_hand_checked(tmp_path):
    root = ndec_layout(tmp_path)
    rep = run("ndec", root, write_preds(tmp_path / "p.csv", NDEC_PREDS))
    f = rep.flat()
    # all: -, +, hn, +, hn, -  -> precisions at positives 1/2, 2/4
    assert f["uap"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert f["recall_at_p90"] is None and f["hard_negative_queries_above_p90"] is None  # P never reaches 0.9
    # without hard-negative queries: -, +, +, -  -> 1/2, 2/3
    assert f["uap_without_hard_negatives"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # copies vs hard negatives (Q2 dropped): +, hn, +, hn, -  -> 1/1, 2/3
    assert f["uap_copies_vs_hard_negatives"] == pytest.approx((1 + 2 / 3) / 2)
    # hn scores {0.85, 0.60}; copies 0.90 (0 above), 0.70 (1 above)
    assert f["hard_negatives_above_copy_mean"] == pytest.approx(0.5)
    assert f["hard_negative_misorder_rate"] == pytest.approx(1 / 4)
    assert f["hard_negative_pairs_retrieved"] == 1  # (H0, R0) predicted, (H1, R1) not
    assert f["hard_negative_queries"] == 2 and f["hard_negative_predictions"] == 2 and f["retrieved_copies"] == 2
    assert any("49252" in n for n in rep.details["notes"])  # the small layout is not the full test set


def test_ndec_threshold_and_ties():
    gt = {"Q0": ["R0"], "H0": [], "H1": []}
    preds = (np.asarray(["Q0", "H0", "H1"]), np.asarray(["R0", "R0", "R1"]), np.asarray([0.8, 0.8, 0.3]))
    out = hard_negative_metrics(preds, gt, ["H0", "H1"], [], threshold_at_p90=0.8)
    assert out["hard_negatives_above_copy_mean"] == 1.0  # a tie counts against the copy
    assert out["hard_negative_queries_above_p90"] == 1  # H0 at the threshold, H1 below
    assert out["hard_negative_pairs_retrieved"] is None  # the list names no reference


def test_ndec_without_hard_negative_list(tmp_path):
    root = ndec_layout(tmp_path, hard_negatives=False)
    rep = run("ndec", root, write_preds(tmp_path / "p.csv", NDEC_PREDS))
    assert rep.flat()["uap"] == pytest.approx(0.5) and rep.flat()["uap_without_hard_negatives"] is None
    assert any("no hard-negative list" in n for n in rep.details["notes"])


def test_ndec_rejects_a_hard_negative_with_a_copy(tmp_path):
    root = ndec_layout(tmp_path)
    (root / "hard_negatives.csv").write_text("query_id\nH0\nQ0\n")
    with pytest.raises(ValueError, match="hard_negatives: 1 listed queries have a copy"):
        run("ndec", root, write_preds(tmp_path / "p.csv", NDEC_PREDS))


def test_read_hard_negatives_formats(tmp_path):
    txt = tmp_path / "hn.txt"
    txt.write_text("H1\n\nH0\nH1\n")
    assert read_hard_negatives(txt) == (["H1", "H0"], [])
    bad = tmp_path / "hn.csv"
    bad.write_text("id\nH0\n")
    with pytest.raises(ValueError, match="expected a header 'query_id'"):
        read_hard_negatives(bad)


# ------------------------------------------------------------------------------------------------ AnyPattern


def isc_recall_at_rank(preds, gt_pairs, k):
    """ISC2021 ``find_tp_ranks``: per GT pair, rank = #predictions of its query scored >= it, minus one."""
    hits = 0
    for q, r in gt_pairs:
        mine = [(s, ref) for qq, ref, s in preds if qq == q]
        found = [s for s, ref in mine if ref == r]
        if found and sum(s >= found[0] for s, _ in mine) - 1 < k:
            hits += 1
    return hits / len(gt_pairs)


def test_anypattern_hand_checked(tmp_path):
    root = tmp_path / "anypattern"
    write_images(root / "query_k1_10_v2_test", ["A0", "A1", "A2", "A3"])
    write_images(root / "reference_images", ["R0", "R1", "R2"])
    write_images(root / "original_images", ["T0"])
    (root / "gt_v1_k1_v2_test.csv").write_text("query_id,reference_id\nA0,R0\nA1,R1\nA2,R2\n")
    rows = [("A0", "R0", 0.9), ("A0", "R5", 0.3),   # hit at rank 1
            ("A1", "R7", 0.8), ("A1", "R1", 0.6),   # copy at rank 2
            ("A2", "R2", 0.5), ("A2", "R9", 0.5),   # tie: pessimistic, a miss at rank 1
            ("A3", "R3", 0.95)]                     # a query outside the GT: a negative
    rep = run("anypattern", root, write_preds(tmp_path / "p.csv", rows), EvalOptions(recall_ks=(10,)))
    f = rep.flat()
    # global: -(.95) +(.9) -(.8) +(.6) -(.5) +(.5) -(.3): precisions 1/2, 2/4, 3/6 at the positives
    assert f["uap"] == pytest.approx(0.5)
    assert f["recall_at_1"] == pytest.approx(1 / 3)  # added to the asked ks: it is a headline number
    assert f["recall_at_1"] == pytest.approx(isc_recall_at_rank(rows, [("A0", "R0"), ("A1", "R1"), ("A2", "R2")], 1))
    assert f["recall_at_10"] == 1.0
    assert [k for _, k in rep.headline] == ["uap", "recall_at_1"]
    assert rep.details["folders"]["training"].endswith("original_images")
    assert rep.details["unknown_predicted_queries"] == 1


# -------------------------------------------------------------------------------------- registry and layouts


def test_registry_names_and_unknown_protocol():
    assert set(protocol_names()) >= {"disc21", "ndec", "anypattern"}
    for name in protocol_names():
        assert get_protocol(name).name == name
    with pytest.raises(ValueError, match="protocol must be one of disc21"):
        get_protocol("nope")


def test_layout_errors(tmp_path):
    root = disc21_layout(tmp_path)
    disc21 = get_protocol("disc21")
    (root / "dev_ground_truth.csv").write_text("query_id,reference_id\nQ0,R0\n")
    with pytest.raises(ValueError, match="ground_truth: several candidates"):
        disc21.locate(root, {})
    layout = disc21.locate(root, {"ground_truth": root / "dev_ground_truth.csv"})  # explicit wins
    assert layout.ground_truth.name == "dev_ground_truth.csv"
    with pytest.raises(ValueError, match="root: no such folder"):
        disc21.locate(tmp_path / "missing", {})
    with pytest.raises(ValueError, match="ground_truth: give the ground-truth file or the disc21 root"):
        disc21.locate(None, {})
    with pytest.raises(ValueError, match="hard_negatives: protocol disc21 reads no such file"):
        disc21.locate(root, {"ground_truth": root / "dev_ground_truth.csv",
                             "hard_negatives": root / "dev_ground_truth.csv"})
    with pytest.raises(ValueError, match="ground_truth: none of"):
        get_protocol("anypattern").locate(root, {})


def test_layout_note_for_queries_without_images(tmp_path):
    root = disc21_layout(tmp_path)
    (root / "query_images" / "Q3.jpg").unlink()
    rep = run("disc21", root, write_preds(tmp_path / "p.csv", [("Q0", "R0", 0.9)]))
    assert rep.details["notes"] == [f"1 ground-truth queries have no image in {root / 'query_images'}"]


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_evaluate_ndec_and_anypattern(tmp_path, capsys):
    import json

    from copynce_fast.cli import main

    root = ndec_layout(tmp_path)
    preds = write_preds(tmp_path / "p.csv", NDEC_PREDS)
    assert main(["evaluate", str(preds), "--protocol", "ndec", "--root", str(root), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr()
    assert "μAP      0.5000" in out.out and "uap_without_hard_negatives" in out.out
    assert "the full ndec test set has 49252" in out.err  # layout notes are warnings
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["protocol"] == "ndec" and report["uap"] == pytest.approx(0.5)
    assert report["protocol_metrics"]["uap_copies_vs_hard_negatives"] == pytest.approx((1 + 2 / 3) / 2)
    assert report["headline"]["recall_at_p90"] is None and (tmp_path / "ev" / "pr_curve.png").is_file()

    # an explicit hard-negative list overrides the root's: only H1 -> H0's prediction is an ordinary negative
    hn = tmp_path / "hn.txt"
    hn.write_text("H1\n")
    assert main(["evaluate", str(preds), "--protocol", "ndec", "--root", str(root), "--hard-negatives", str(hn),
                 "--out", str(tmp_path / "ev2")]) == 0
    extra = json.loads((tmp_path / "ev2" / "metrics.json").read_text())["protocol_metrics"]
    assert extra["hard_negative_queries"] == 1 and extra["hard_negative_predictions"] == 1


def test_cli_evaluate_errors_name_the_flag(tmp_path, capsys):
    from copynce_fast.cli import main

    root = disc21_layout(tmp_path)
    preds = write_preds(tmp_path / "p.csv", [("Q0", "R0", 0.9)])
    ev = str(tmp_path / "ev")
    assert main(["evaluate", str(preds), "--out", ev]) == 1
    assert "--gt: give the ground-truth file or the disc21 root folder" in capsys.readouterr().err
    (root / "dev_ground_truth.csv").write_text("query_id,reference_id\nQ0,R0\n")
    assert main(["evaluate", str(preds), "--root", str(root), "--out", ev]) == 1
    assert "--gt: several candidates under" in capsys.readouterr().err
    assert main(["evaluate", str(preds), "--protocol", "anypattern", "--root", str(root),
                 "--hard-negatives", str(preds), "--out", ev]) == 1
    assert "--hard-negatives: only --protocol ndec" in capsys.readouterr().err
    assert main(["evaluate", str(preds), "--protocol", "anypattern", "--root", str(root), "--out", ev]) == 1
    assert "--gt: none of gt_v1_k1_v2_test.csv" in capsys.readouterr().err
    assert main(["evaluate", str(preds), "--protocol", "nope", "--out", ev]) == 2
