"""Matcher rescoring with cached encodings vs the plain matcher; local-verification views and their geometry."""
import numpy as np
import pytest
import torch
from PIL import Image

from copynce_fast.cli import main
from copynce_fast.inference.images import decode_image, normalize, preprocess
from copynce_fast.eval.local_verification import (
    N_QUERY_VIEWS,
    N_REFERENCE_VIEWS,
    PAIR_VIEWS,
    query_views,
    reference_views,
    render_views,
)
from copynce_fast.eval.matcher_eval import encode, fuse_logits, rescore_pairs
from copynce_fast.models.loading import load_model
from copynce_fast.search.predictions import read_predictions_csv

S = 32


@pytest.fixture(scope="module")
def matcher():
    return load_model("matcher", random_init=True, arch="vit_tiny", img_size=S, seed=3)


def make_images(folder, n, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for i in range(n):
        p = folder / f"{folder.name[0]}{i}.png"
        Image.fromarray(rng.integers(0, 256, (30 + 5 * i, 41 + 3 * i, 3), dtype=np.uint8)).save(p)
        paths[p.stem] = p
    return paths


# ------------------------------------------------------------------------------------------ views geometry


def test_view_counts_and_pair_combinations():
    assert len(query_views(90, 60)) == N_QUERY_VIEWS == 26
    assert len(reference_views(90, 60)) == N_REFERENCE_VIEWS == 10
    assert len(PAIR_VIEWS) == 35
    assert PAIR_VIEWS[:26] == tuple((i, 0) for i in range(26))  # every query view x the full reference
    assert PAIR_VIEWS[26:] == tuple((0, j) for j in range(1, 10))  # the full query x each other reference view


def test_crop_boxes_follow_the_reference_integer_arithmetic():
    W, H = 100, 61  # not divisible by 2, 3 or 6: integer division matters
    q = query_views(W, H)
    assert q[0].kind == "full"
    boxes = [v.box for v in q[1:19]]
    assert boxes[0] == (33, 20, 66, 40)  # central third
    assert boxes[1:5] == [(16, 10, 50, 30), (50, 10, 83, 30), (16, 30, 50, 50), (50, 30, 83, 50)]
    assert boxes[5:9] == [(0, 0, 50, 30), (50, 0, 100, 30), (0, 30, 50, 61), (50, 30, 100, 61)]
    xs, ys = (0, 33, 66, 100), (0, 20, 40, 61)
    assert boxes[9:18] == [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(3) for c in range(3)]
    assert [(v.kind, v.angle) for v in q[19:]] == [("rotate", a) for a in (45, 90, 135, 180, 225, 270, 315)]
    r = reference_views(W, H)
    assert r[0].kind == "full"
    assert [v.box for v in r[1:]] == boxes[0:5] + boxes[5:9]  # thirds then quadrants, as the query's 1-9


def test_rendered_views_have_the_box_sizes_and_rotations_expand():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (61, 100, 3), dtype=np.uint8))
    views = render_views(img, "query")
    for spec, view in zip(query_views(100, 61), views):
        if spec.kind == "crop":
            left, top, right, bottom = spec.box
            assert view.size == (right - left, bottom - top)
            np.testing.assert_array_equal(np.asarray(view), np.asarray(img)[top:bottom, left:right])
    assert views[0] is img
    assert views[19 + 1].size == (61, 100)  # 90°: width and height swap
    assert views[19 + 3].size == (100, 61)  # 180°
    assert views[19].size[0] > 100  # 45°: the canvas grows
    np.testing.assert_array_equal(np.asarray(views[22]), np.asarray(img)[::-1, ::-1])  # 180° is exact
    assert len(render_views(img, "reference")) == 10


def test_tiny_images_get_non_empty_boxes():
    for w, h in ((1, 1), (2, 5), (5, 2)):
        for spec in query_views(w, h) + reference_views(w, h):
            if spec.kind == "crop":
                left, top, right, bottom = spec.box
                assert right > left and bottom > top
        assert all(v.width >= 1 and v.height >= 1
                   for v in render_views(Image.new("RGB", (w, h)), "query"))


# ------------------------------------------------------------------------------------------ rescoring


def test_fuse_logits_equals_the_matcher_forward(matcher):
    m = matcher.model
    x = torch.randn(3, 3, S, S)
    y = torch.randn(3, 3, S, S)
    with torch.no_grad():
        direct = m(x, y)["logit"]
        fused = fuse_logits(m, encode(m, x), encode(m, y))
    torch.testing.assert_close(fused, direct, atol=1e-5, rtol=1e-5)


def _direct_scores(m, pairs, q_paths, r_paths):
    out = []
    with torch.no_grad():
        for qi, ri in pairs:
            q = normalize(preprocess(decode_image(q_paths[qi]), S)[None])
            r = normalize(preprocess(decode_image(r_paths[ri]), S)[None])
            out.append(torch.sigmoid(m(q, r)["logit"])[0].item())
    return np.asarray(out)


def test_rescore_equals_pairwise_matcher(tmp_path, matcher):
    q_paths = make_images(tmp_path / "queries", 3, seed=1)
    r_paths = make_images(tmp_path / "refs", 4, seed=2)
    pairs = [("q2", "r0"), ("q0", "r1"), ("q2", "r3"), ("q0", "r0"), ("q1", "r2"), ("q2", "r1"), ("q1", "r0")]
    res = rescore_pairs(matcher, [p[0] for p in pairs], [p[1] for p in pairs], q_paths, r_paths,
                        batch_size=3, num_workers=0, chunk_pairs=4, progress=False)
    np.testing.assert_allclose(res.scores, _direct_scores(matcher.model, pairs, q_paths, r_paths), atol=1e-5)
    assert res.fusions == len(pairs)
    # chunks of 4 pairs sorted by query: {q0,q0,q1,q1} and {q2,q2,q2}: 2+3 + 1+3 images encoded, not 14
    assert res.encoded_views == 9


def test_local_verification_equals_brute_force_max_over_35(tmp_path, matcher):
    q_paths = make_images(tmp_path / "queries", 2, seed=4)
    r_paths = make_images(tmp_path / "refs", 2, seed=5)
    pairs = [("q0", "r0"), ("q1", "r0"), ("q0", "r1")]
    res = rescore_pairs(matcher, [p[0] for p in pairs], [p[1] for p in pairs], q_paths, r_paths,
                        local_verification=True, batch_size=40, num_workers=0, progress=False)
    m = matcher.model
    expected = []
    with torch.no_grad():
        for qi, ri in pairs:
            qv = normalize(torch.stack([preprocess(v, S) for v in render_views(decode_image(q_paths[qi]), "query")]))
            rv = normalize(torch.stack([preprocess(v, S) for v in render_views(decode_image(r_paths[ri]),
                                                                               "reference")]))
            a = torch.tensor([i for i, _ in PAIR_VIEWS])
            b = torch.tensor([j for _, j in PAIR_VIEWS])
            logits = m(qv[a], rv[b])["logit"]  # the 35 full passes (encoder included), as one batch
            expected.append(torch.sigmoid(logits).max().item())
    np.testing.assert_allclose(res.scores, expected, atol=1e-5)
    assert res.fusions == 35 * len(pairs)
    assert res.encoded_views == 2 * 26 + 2 * 10  # each view of each image once (one chunk)


def test_undecodable_image_gives_nan_and_is_reported(tmp_path, matcher):
    q_paths = make_images(tmp_path / "queries", 2, seed=1)
    r_paths = make_images(tmp_path / "refs", 1, seed=2)
    bad = tmp_path / "refs" / "broken.png"
    bad.write_bytes(b"garbage")
    r_paths["broken"] = bad
    res = rescore_pairs(matcher, ["q0", "q1", "q0"], ["r0", "broken", "broken"], q_paths, r_paths,
                        num_workers=0, progress=False)
    assert np.isfinite(res.scores[0]) and np.isnan(res.scores[1:]).all()
    assert [p for p, _ in res.failed] == [str(bad)]


def test_rescore_rejects_unknown_ids_and_descriptors(tmp_path, matcher):
    q_paths = make_images(tmp_path / "queries", 1, seed=1)
    with pytest.raises(ValueError, match="reference id"):
        rescore_pairs(matcher, ["q0"], ["zzz"], q_paths, {}, num_workers=0, progress=False)
    desc = load_model("descriptor", random_init=True, arch="vit_tiny", img_size=S)
    with pytest.raises(ValueError, match="needs a matcher"):
        rescore_pairs(desc, ["q0"], ["q0"], q_paths, q_paths, num_workers=0, progress=False)


def test_rescore_cli_writes_probabilities(tmp_path, capsys):
    q_paths = make_images(tmp_path / "queries", 2, seed=1)
    make_images(tmp_path / "refs", 2, seed=2)
    cands = tmp_path / "cands.csv"
    cands.write_text("query_id,reference_id,score\nq0,r0,0.9\nq0,r1,0.8\nq1,r1,0.7\nq1,r0,0.1\n")
    out = tmp_path / "rescored.csv"
    argv = ["rescore", str(cands), "--query-images", str(tmp_path / "queries"), "--reference-images",
            str(tmp_path / "refs"), "--out", str(out), "--random-init", "--arch", "vit_tiny", "--img-size", str(S),
            "--workers", "0", "--no-progress", "--topk", "1"]
    assert main(argv) == 0
    q, r, s = read_predictions_csv(out)
    assert q.tolist() == ["q0", "q1"] and r.tolist() == ["r0", "r1"]
    assert ((s > 0) & (s < 1)).all()
    (tmp_path / "refs" / "r1.png").unlink()
    assert main(argv) == 1
    assert "--reference-images: 1 candidate id(s) have no image" in capsys.readouterr().err
    assert q_paths  # the queries were written
