"""Video copy detection end to end on generated videos with exact ground truth (decode -> frame descriptors ->
VSC2022 candidates and μAP -> temporal-network segments and segment AP).

The frame descriptor is a fixed, non-learned one (a high-passed 12x16 thumbnail): the model is not the point
here, the sampling, search, alignment and metrics are.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("av")

from copynce_fast.eval.vsc import pair_uap, segment_ap  # noqa: E402
from copynce_fast.video.candidates import vsc_candidates  # noqa: E402
from copynce_fast.video.decode import read_video  # noqa: E402
from copynce_fast.video.features import VideoFeatures  # noqa: E402
from copynce_fast.video.localize import localize_candidates  # noqa: E402
from copynce_fast.video.segments import pairs_from_matches  # noqa: E402
from copynce_fast.video.synthetic import Insert, make_queries, make_references  # noqa: E402

FPS = 2.0  # samples per second: one frame period is 0.5 s
STRENGTHS = (0.0, 0.3, 0.6, 1.0)


def thumbnail_descriptor(frames: np.ndarray) -> np.ndarray:
    x = F.adaptive_avg_pool2d(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), (12, 16))
    x = x - F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)  # keep edges, drop the mean colour
    x = x.flatten(1)
    return F.normalize(x - x.mean(1, keepdim=True), dim=1).numpy()


def features(folder) -> VideoFeatures:
    ids, ts, fs = [], [], []
    for p in sorted(folder.iterdir()):
        v = read_video(p, FPS)
        ids += [p.stem] * len(v.timestamps)
        ts.append(v.timestamps)
        fs.append(thumbnail_descriptor(v.frames))
    return VideoFeatures(np.array(ids), np.concatenate(ts), np.concatenate(fs))


def layout(strength):
    """Four copies (one at double speed) and a query without any copy; clip bounds on whole seconds."""
    return {"Q000": (10.0, [Insert("R000", 2, 6, 3, strength=strength, seed=1)]),
            "Q001": (8.0, [Insert("R001", 1, 5, 2, strength=strength, seed=2)]),
            "Q002": (8.0, [Insert("R002", 0, 6, 1, speed=2.0, strength=strength, seed=3)]),
            "Q003": (6.0, []),
            "Q004": (8.0, [Insert("R003", 2, 6, 4, strength=strength, seed=4)])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vsc")
    refs = make_references(root / "refs", n_refs=5)
    ref_feats = features(root / "refs")
    out = {}
    for s in STRENGTHS:
        truth = make_queries(root / f"queries_{s}", layout(s), refs)
        q = features(root / f"queries_{s}")
        cands = vsc_candidates(q, ref_feats)
        out[s] = {"truth": truth, "candidates": cands, "segments": localize_candidates(q, ref_feats, cands)}
    return out


def test_descriptor_uap_is_one_on_unedited_copies_and_falls_with_edit_strength(runs):
    uaps = [pair_uap(pairs_from_matches(runs[s]["truth"]), runs[s]["candidates"]).ap for s in STRENGTHS]
    assert uaps[0] == pytest.approx(1.0)
    assert all(a >= b - 1e-9 for a, b in zip(uaps, uaps[1:])), uaps
    assert uaps[-1] < 0.5, uaps


def test_segment_ap_is_one_for_exact_inserted_clips(runs):
    run = runs[0.0]
    exact = {"Q000", "Q001", "Q004"}  # speed 1, unedited, bounds on the sampling grid
    truth = [m for m in run["truth"] if m.query_id in exact]
    predicted = [m for m in run["segments"] if m.query_id in exact]
    assert segment_ap(truth, predicted).ap == pytest.approx(1.0)
    assert segment_ap(run["truth"], run["segments"]).ap > 0.95  # with the double-speed clip
    assert segment_ap(runs[1.0]["truth"], runs[1.0]["segments"]).ap < 0.5


def test_offsets_found_within_one_frame_period(runs):
    run = runs[0.0]
    for gt in run["truth"]:
        found = [m for m in run["segments"] if m.pair() == gt.pair()]
        assert found, f"no segment for {gt.pair()}"
        best = max(found, key=lambda m: m.score)
        err = np.abs(np.array(best[2:6]) - np.array(gt[2:6]))
        assert err.max() <= 1 / FPS + 1e-9, (gt, best)
