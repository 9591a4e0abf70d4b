"""The DALI executor (CPU pipeline, device_id=None): same geometry as PixTrace and the torch executor.

- every geometric edit alone and random sampled chains, rendered by DALI with nearest sampling, agree with
  ``correspondence_map`` (>= 99.9% exact on the interior, 100% within one pixel, nothing leaked);
- bilinear + antialias pre-shrink keeps a linear ramp (no half-pixel shift);
- layer weights, colour and occluder layers equal the torch executor's (same plan, +-2 levels);
- the batch dict matches the torch loader's contract, is deterministic per seed, shards by rank, and bad
  files are skipped and counted.
"""
import io
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from copynce_fast.data.dali_loader import DaliPairLoader  # noqa: E402
from copynce_fast.data.executor_torch import render_plan, to_tensor_image  # noqa: E402
from copynce_fast.data.batch_samplers import EpochBatchSampler  # noqa: E402
from copynce_fast.data.photometric import LINEAR_KINDS  # noqa: E402
from copynce_fast.data.plan import AugmentPlan, Overlay, reference_plan  # noqa: E402
from copynce_fast.data.presets import matcher_preset, plain_preset  # noqa: E402
from copynce_fast.data.occluder_mask import traced_view  # noqa: E402
from copynce_fast.data.pair_of_key import plan_pair  # noqa: E402
from copynce_fast.data.plan_sampler import PairPlan, sample_query_plan  # noqa: E402
from copynce_fast.data.sources import ArraySource, bundled_source, folder_source  # noqa: E402
from copynce_fast.data.synthetic import check_geometry, coordinate_image  # noqa: E402
from copynce_fast.pixtrace import View, pack_pairs  # noqa: E402
from copynce_fast.pixtrace import stages as st  # noqa: E402

H, W, S = 70, 90, 64
OH, OW = 50, 60
HW, SQ = (H, W), (S, S)
SRC = ArraySource([coordinate_image(H, W), coordinate_image(OH, OW, tag=True)])


def _persp(hw):
    h, w = hw
    return st.perspective(hw, [(0, 0), (w, 0), (w, h), (0, h)], [(9, 4), (w - 3, 11), (w - 14, h - 2), (5, h - 9)])


def _edit_plans():
    edits = [
        [st.resize(HW, SQ)], [st.resized_crop(HW, 10, 20, 40, 50, SQ)],
        [st.resized_crop(HW, 10.3, 20.7, 40.5, 50.25, SQ)],
        [st.crop(HW, -10, -15, 80, 100), st.resize((80, 100), SQ)], [st.resized_crop(HW, 30, 40, 9, 11, SQ)],
        [st.hflip(HW), st.resize(HW, SQ)], [st.vflip(HW), st.resize(HW, SQ)], [st.rotate(HW, 90), st.resize(HW, SQ)],
        [st.rotate(HW, 30), st.resize(HW, SQ)], [st.shear(HW, 25), st.resize(HW, SQ)],
        [st.affine(HW, st.rotate(HW, 140).matrix @ st.shear(HW, -30).matrix), st.resize(HW, SQ)],
        [_persp(HW), st.resize(HW, SQ)], [st.pad(HW, 10, 12, 15, 5), st.resize((92, 110), SQ)],
        [st.resized_crop(HW, 5, 5, 50, 60, SQ), st.rotate(SQ, 45)],
        [st.rotate(HW, 60), st.resized_crop(HW, 0, 10, 70, 70, SQ), st.pad(SQ, 8, 8, 8, 8), st.resize((80, 80), SQ)],
        [st.resized_crop(HW, 10, 10, 50, 70, SQ), _persp(SQ), st.hflip(SQ)],
        [st.vflip(HW), st.rotate(HW, 270), st.pad(HW, 5, 0, 0, 9), st.resize((75, 99), SQ)],
    ]
    plans = [AugmentPlan(0, View(HW, tuple(e))) for e in edits]
    pre = [st.resized_crop(HW, 0, 0, 60, 80, SQ), st.rotate(SQ, 30), st.paste(SQ, SQ, 12, 8, 30, 44)]
    ov = Overlay("beneath", 1, (OH, OW), 3, (st.resize((OH, OW), SQ),), 1.0)
    plans.append(AugmentPlan(0, View(HW, tuple(pre) + (st.rotate(SQ, 20),)), overlay=ov))
    ov = Overlay("above", 1, (OH, OW), 1, (st.paste((OH, OW), SQ, 4, 6, 30, 40),), 0.0)
    plans += [AugmentPlan(0, View(HW, (st.resize(HW, SQ), st.rotate(SQ, 15))), overlay=ov)] * 2
    return [PairPlan(p, reference_plan(0, HW, S), True, True) for p in plans]


def _check(img, view, min_interior=20, other_untagged=False):
    r = check_geometry(img, view)
    leaked_ok = other_untagged or r["leaked"] == 0  # an untagged background image would count as leaked
    assert r["interior"] >= min_interior and r["exact"] >= 0.999 and r["within1"] == 1.0 and leaked_ok, r


@pytest.mark.parametrize("device_id", [None, pytest.param(0, marks=pytest.mark.gpu)], ids=["cpu", "gpu"])
def test_each_edit_matches_pixtrace(device_id):
    pairs = _edit_plans()
    sampler = EpochBatchSampler(len(pairs), 4, shuffle=False)
    loader = DaliPairLoader(SRC, plain_preset(size=S), 4, device_id=device_id, batch_sampler=sampler, nearest=True,
                            photometric=False, pair_fn=lambda key: pairs[key.index])
    n = 0
    for batch in loader:
        for i in range(4):
            pair = pairs[n]
            _check(batch["query"][i].cpu(), pair.query.view)
            _check(batch["reference"][i].cpu(), pair.reference.view)
            n += 1
    assert n == len(pairs) == 20


def _pad_steps(mats: torch.Tensor, t: int) -> torch.Tensor:
    return torch.cat([mats, torch.eye(3, dtype=mats.dtype).expand(t - len(mats), 3, 3)])


def test_random_chains_match_pixtrace_and_torch():
    cfg = plain_preset(size=S, crop_p=0.9, hflip_p=0.5, vflip_p=0.5, warp_p=0.9, pad_p=0.5, paste_alpha=(1.0, 1.0),
                       overlay_opacity=(0.0, 0.0), positive_rate=0.8)
    src = ArraySource([coordinate_image(H, W), coordinate_image(80, 60), coordinate_image(64, 64)])
    sampler = EpochBatchSampler(len(src), 3, seed=5)
    loader = DaliPairLoader(src, cfg, 3, device_id=None, batch_sampler=sampler, seed=5, nearest=True,
                            photometric=False)
    checked = 0
    for epoch in range(12):
        keys = sampler.epoch_keys(epoch)[0]
        batch = next(iter(loader))
        for i, key in enumerate(keys):
            pair, _ = plan_pair(src, cfg, 5, key)
            assert int(batch["source_index"][i]) == pair.reference.source_index
            assert bool(batch["is_copy"][i]) == pair.is_copy
            qr, rq = pack_pairs(*[[v] for v in pair.traced_views()])
            # same steps, up to trailing identity steps the loader trims: equal when padded to one length
            t = max(qr.matrices.shape[1], batch["paths_qr"].matrices.shape[1])
            got, exp = _pad_steps(batch["paths_qr"].matrices[i], t), _pad_steps(qr.matrices[0], t)
            torch.testing.assert_close(got, exp)
            if not pair.is_copy:
                continue
            q = pair.query
            _check(batch["query"][i], traced_view(q), other_untagged=q.overlay is not None)
            other = src.decode(q.overlay.index) if q.overlay is not None else None
            ref = render_plan(q, to_tensor_image(src.decode(q.source_index)),
                              None if other is None else to_tensor_image(other), interp="nearest", photometric=False)
            assert (ref == batch["query"][i]).all(-3).float().mean() >= 0.999
            checked += 1
    assert checked >= 20


def test_bilinear_keeps_a_ramp():
    yy, xx = np.mgrid[0:210, 0:240]
    ramp = np.stack([xx, yy, (xx + yy) // 2], -1).clip(0, 255).astype(np.uint8)
    src = ArraySource([ramp])
    hw = (210, 240)
    plans = [AugmentPlan(0, View(hw, (st.affine(hw, st.rotate(hw, 17).matrix), st.resize(hw, SQ)))),
             AugmentPlan(0, View(hw, (st.resized_crop(hw, 30.5, 41.25, 120, 150, SQ), _persp(SQ)))),
             # crop / flip only: the ROI-resize fast path
             AugmentPlan(0, View(hw, (st.resized_crop(hw, 20.5, 11.25, 150, 180, SQ), st.hflip(SQ)))),
             AugmentPlan(0, View(hw, (st.vflip(hw), st.resized_crop(hw, 7, 9, 190.5, 222, SQ))))]
    pairs = [PairPlan(p, reference_plan(0, hw, S), True, True) for p in plans]
    loader = DaliPairLoader(src, plain_preset(size=S), 4, device_id=None, photometric=False,
                            batch_sampler=EpochBatchSampler(4, 4, shuffle=False), pair_fn=lambda k: pairs[k.index])
    batch = next(iter(loader))
    yx = np.stack(np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5, indexing="xy"), -1).reshape(-1, 2)
    for i, plan in enumerate(plans):
        srcpt, valid = plan.view.map_to_source(yx)
        inner = valid & (srcpt[:, 0] > 6) & (srcpt[:, 0] < 234) & (srcpt[:, 1] > 6) & (srcpt[:, 1] < 204)
        out = batch["query"][i].reshape(3, -1).float().numpy()
        err = np.abs(out[0][inner] - (srcpt[inner, 0] - 0.5))  # pixel c holds value c at its centre c + 0.5
        assert err.mean() < 0.5 and err.max() < 1.6, (err.mean(), err.max())
        err = np.abs(out[1][inner] - (srcpt[inner, 1] - 0.5))
        assert err.mean() < 0.5 and err.max() < 1.6, (err.mean(), err.max())
    # The plain reference is a centre-aligned resize: reference pixel c shows the ramp at (c + 0.5) * 240 / S.
    ref_x = batch["reference"][0, 0, S // 2, 4:-4].float().numpy()
    want = (np.arange(4, S - 4) + 0.5) * 240 / S - 0.5
    assert np.abs(ref_x - want).max() < 1.1


_DALI_ORDER = {k: 0 for k in LINEAR_KINDS} | {"text": 1, "emoji": 1, "smear": 1, "erase": 2}


def test_weights_colour_and_occluders_match_torch():
    # Same plans through both executors (ops put in DALI's fixed order): overlays with alpha, jitter, occluders.
    cfg = plain_preset(size=S, crop_p=1.0, warp_p=0.5, jitter_brightness=0.4, jitter_contrast=0.4,
                       jitter_saturation=0.4, jitter_hue=0.1, text_p=1.0, emoji_p=0.7, smear_p=0.7, erase_p=0.5,
                       crop_choices=("paste", "overlay"))
    photos = ArraySource([np.asarray(a) for a in [np.random.default_rng(k).integers(0, 256, (60 + 7 * k, 80, 3),
                                                                                   dtype=np.uint8) for k in range(3)]])
    pairs = []
    for k in range(6):
        q = sample_query_plan(np.random.default_rng(k), cfg, k % 3, photos.hw(k % 3),
                              lambda r: (int((k + 1) % 3), photos.hw((k + 1) % 3)))
        ops = tuple(sorted((o for o in q.ops if (o.kind in _DALI_ORDER)), key=lambda o: _DALI_ORDER[o.kind]))
        q = replace(q, ops=ops)
        pairs.append(PairPlan(q, reference_plan(k % 3, photos.hw(k % 3), S), True, True))
    loader = DaliPairLoader(photos, cfg, 3, device_id=None, nearest=True,
                            batch_sampler=EpochBatchSampler(6, 3, shuffle=False), pair_fn=lambda key: pairs[key.index])
    n = 0
    for batch in loader:
        for i in range(3):
            q = pairs[n].query
            other = photos.decode(q.overlay.index) if q.overlay is not None else None
            want = render_plan(q, to_tensor_image(photos.decode(q.source_index)),
                               None if other is None else to_tensor_image(other), interp="nearest")
            diff = (want.int() - batch["query"][i].int()).abs()
            assert diff.max() <= 2 and diff.float().mean() < 0.3, (n, diff.max(), diff.float().mean())
            n += 1
    assert n == 6


def _epoch(loader, steps):
    out = []
    for k, b in enumerate(loader):
        out.append(b)
        if k + 1 == steps:
            break
    return out


def test_batch_dict_contract_and_determinism():
    src = bundled_source()
    cfg = matcher_preset(size=64)
    a = _epoch(DaliPairLoader(src, cfg, 4, device_id=None, seed=11), 2)
    b = _epoch(DaliPairLoader(src, cfg, 4, device_id=None, seed=11), 2)
    for x, y in zip(a, b):
        assert x["query"].shape == (4, 3, 64, 64) and x["query"].dtype == torch.uint8
        assert x["reference"].shape == (4, 3, 64, 64)
        assert x["is_copy"].dtype == torch.bool and x["copynce"].dtype == torch.bool
        assert x["source_index"].dtype == torch.int64
        assert x["paths_qr"].src_hw == (64, 64) and x["paths_rq"].batch_size == 4
        assert torch.equal(x["query"], y["query"]) and torch.equal(x["reference"], y["reference"])
        assert torch.equal(x["paths_qr"].matrices, y["paths_qr"].matrices)
    # copy<->copy builds the full graph for both views
    c = _epoch(DaliPairLoader(src, matcher_preset(size=64, pair_mode="copy_copy"), 4, device_id=None), 1)[0]
    assert c["reference"].shape == (4, 3, 64, 64)


def test_sharding_by_rank():
    src = ArraySource([np.full((40, 50, 3), k * 10, np.uint8) for k in range(12)])
    seen = []
    for rank in range(2):
        loader = DaliPairLoader(src, plain_preset(size=32), 3, device_id=None, rank=rank, world_size=2, seed=3)
        assert loader.steps_per_epoch == 2
        seen.append({int(i) for b in loader for i in b["source_index"]})
    assert len(seen[0]) == 6 and len(seen[1]) == 6 and not seen[0] & seen[1]


def test_bad_files_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    from PIL import Image
    for k in range(4):
        Image.fromarray(good).save(tmp_path / f"good{k}.jpg", quality=90)
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "random.jpg").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    Image.fromarray(good).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (40, 50))).astype(np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(good).convert("P").save(tmp_path / "palette.png", transparency=3)
    Image.fromarray(good[:1, :1]).save(tmp_path / "tiny.png")
    src = folder_source(tmp_path)
    loader = DaliPairLoader(src, matcher_preset(size=32), 2, device_id=None, seed=1)
    for _ in range(3):
        for batch in loader:
            assert batch["query"].shape == (2, 3, 32, 32)
    bad = {n.split("/")[-1] for n in loader.skips.files}
    assert bad == {"truncated.jpg", "random.jpg", "tiny.png"}, loader.skips.files


def test_loader_trims_the_padding_steps():
    from copynce_fast.data.dali_feed import T_MAX

    src = ArraySource([coordinate_image(H, W), coordinate_image(80, 60)])
    loader = DaliPairLoader(src, plain_preset(size=32, hflip_p=1.0), 2, device_id=None, seed=0)
    batch = next(iter(loader))
    assert batch["paths_qr"].matrices.shape[1] < T_MAX
