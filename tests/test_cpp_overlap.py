"""Patch overlap counts on the CPU: copynce_fast._C.patch_overlap and its numpy twin against the torch reference.

Counts must be bit-equal (torch.equal) to ``ops.patch_overlap_ref`` on the plans of every preset and on hand-made
steps that sit exactly on the snapping ties and canvas edges. The kernel has two paths (separable pairs: per-axis
maps; general pairs: per-pixel), so a chain is also checked through both.
"""
import os

import numpy as np
import pytest
import torch

from copynce_fast import _cpp
from copynce_fast.data import descriptor_preset, matcher_preset, plain_preset, sample_pair
from copynce_fast.ops import patch_overlap, patch_overlap_ref
from copynce_fast.pixtrace import PackedPaths, View, pack_pairs, pack_paths
from copynce_fast.pixtrace import stages as S
from copynce_fast.pixtrace.random_views import random_view

needs_cpp = pytest.mark.skipif(not _cpp.HAS_CPP, reason="copynce_fast._C not built")
SIZES = [(375, 500), (500, 333), (240, 320)]  # originals of the plans: landscape, portrait, small


def counts_of(fn, paths: PackedPaths, patch: int, threads: int = 1) -> torch.Tensor:
    """Counts from a _C.patch_overlap-like function on the numpy views of a PackedPaths."""
    occ = lambda t: None if t is None else t.numpy()  # noqa: E731
    out = fn(paths.matrices.numpy(), paths.canvases.numpy(), *paths.src_hw, *paths.dst_hw, patch,
             occ(paths.src_occluder), occ(paths.dst_occluder), threads)
    return torch.from_numpy(out)


def cpp(paths, patch, threads=1):
    return counts_of(_cpp._C.patch_overlap, paths, patch, threads)


def separable(paths: PackedPaths) -> np.ndarray:
    """[B] bool: every step maps x and y on their own (the kernel's per-axis path)."""
    m = paths.matrices.numpy()
    return ((m[..., 2, 0] == 0) & (m[..., 2, 1] == 0) & (m[..., 2, 2] == 1) & (m[..., 0, 1] == 0)
            & (m[..., 1, 0] == 0)).all(axis=1)


def preset_paths(cfg, pairs: int, seed: int) -> tuple[PackedPaths, PackedPaths]:
    plans = [sample_pair(cfg, seed, 0, i, lambda i: SIZES[i % len(SIZES)], 1000) for i in range(pairs)]
    views = [p.traced_views() for p in plans]
    return pack_pairs([q for q, _ in views], [r for _, r in views])


PRESETS = {
    "descriptor-224": (descriptor_preset(), 24),
    "descriptor-copy_copy-224": (descriptor_preset(pair_mode="copy_copy"), 16),
    "matcher-336": (matcher_preset(size=336), 10),
    "plain-224": (plain_preset(), 4),
}


@needs_cpp
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_plans_equal_reference(name):
    cfg, pairs = PRESETS[name]
    qr, rq = preset_paths(cfg, pairs, seed=sum(map(ord, name)))
    for paths in (qr, rq):
        expected = patch_overlap_ref(paths, 16)
        got = cpp(paths, 16)
        assert got.dtype == torch.int32 and got.shape == expected.shape
        assert torch.equal(got, expected), f"{int((got != expected).sum())} counts differ"
    if name.startswith("descriptor"):  # the sample exercises both kernel paths, occluders and partial overlaps
        kinds = separable(qr)
        assert kinds.any() and not kinds.all()
        assert qr.src_occluder is not None and rq.dst_occluder is not None
        assert expected[..., :-1].sum() > 0 and expected[..., -1].sum() > 0


def every_stage_kind(o, out_hw):
    """One view per stage kind (plus a long mixed chain), each ending with a resize to ``out_hw``."""
    h, w = o
    quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    stages = [S.crop(o, 5, 7, h - 12, w - 9), S.resize(o, (33, 47)), S.resized_crop(o, 3.3, 4.7, h * 0.6, w * 0.7, (40, 40)),
              S.hflip(o), S.vflip(o), S.rotate(o, 90.0), S.rotate(o, 17.0), S.rotate(o, -133.0), S.shear(o, 25.0, -10.0),
              S.perspective(o, quad, quad + np.array([[6, 3], [-5, 4], [-7, -6], [4, -2]])), S.pad(o, 3, 9, 0, 5),
              S.paste(o, (h + 30, w + 20), 11.5, 7.25, h * 0.8, w * 0.9)]
    views = [View(o, [st]) for st in stages]
    views.append(View(o, stages[:1]).then(S.rotate((h - 12, w - 9), 31.0)).then(S.hflip((h - 12, w - 9))))
    return [v.then(S.resize(v.out_hw, out_hw)) for v in views]


def random_paths(rng, original, src_hw, dst_hw, batch, occluders, dtype=torch.float32):
    src = every_stage_kind(original, src_hw)
    src += [random_view(rng, original, src_hw, n_stages=int(rng.integers(1, 5))) for _ in range(batch - len(src))]
    dst = [random_view(rng, original, dst_hw, n_stages=int(rng.integers(0, 3))) for _ in src]
    if occluders:
        src = [v.with_occluder(rng.random(src_hw) < 0.2) for v in src]
        dst = [v.with_occluder(rng.random(dst_hw) < 0.3) for v in dst]
    return pack_paths(src, dst, dtype=dtype)


@needs_cpp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("occluders", [False, True])
@pytest.mark.parametrize("config", [((70, 90), (64, 48), (32, 32), 8), ((60, 60), (48, 64), (32, 48), 16)],
                         ids=["p8", "p16"])
def test_every_stage_kind_equals_reference(config, occluders, dtype):
    original, src_hw, dst_hw, patch = config
    paths = random_paths(np.random.default_rng(patch + occluders), original, src_hw, dst_hw, 20, occluders, dtype)
    expected = patch_overlap_ref(paths, patch)
    assert torch.equal(cpp(paths, patch), expected)
    assert torch.all(expected.sum(-1) == patch * patch)


def with_general_first_step(paths: PackedPaths) -> PackedPaths:
    """The same paths behind a step that changes nothing but is not separable: x' = (x + 1e-30 y) + 0.

    Pixel centres are >= 0.5 and y <= 2^14, so 1e-30 y is far below half an ulp of x: x' == x exactly, and the
    kernel must take its per-pixel path for every pair.
    """
    b = paths.batch_size
    step = torch.tensor([[1, 1e-30, 0], [1e-30, 1, 0], [0, 0, 1]], dtype=paths.matrices.dtype).expand(b, 1, 3, 3)
    canvas = torch.tensor(paths.src_hw, dtype=paths.canvases.dtype).expand(b, 1, 2)
    return PackedPaths(torch.cat([step, paths.matrices], 1), torch.cat([canvas, paths.canvases], 1), paths.src_hw,
                       paths.dst_hw, paths.src_occluder, paths.dst_occluder)


@needs_cpp
def test_separable_and_general_paths_agree():
    qr, rq = preset_paths(descriptor_preset(), 12, seed=5)
    for paths in (qr, rq):
        assert separable(paths).sum() >= 4
        general = with_general_first_step(paths)
        assert not separable(general).any()
        expected = patch_overlap_ref(paths, 16)
        assert torch.equal(patch_overlap_ref(general, 16), expected)  # the extra step really is a no-op
        assert torch.equal(cpp(paths, 16), expected)
        assert torch.equal(cpp(general, 16), expected)


def hand_made_steps() -> tuple[PackedPaths, list[str]]:
    """Steps whose points sit exactly on the decisions of the snapping rule, at 32 x 32 with 8 px patches.

    Every matrix and every mapped pixel centre below is exact in float32, so the reference sees the ties too.
    """
    eye = np.eye(3)

    def shift(tx, ty=0.0, sx=1.0, sy=1.0):
        return np.array([[sx, 0, tx], [0, sy, ty], [0, 0, 1]])

    cases = {
        # x*256 = k - 1/2 for every centre: half to even decides every pixel (column 0 keeps -1/2 -> -0: valid)
        "tie": ([shift(-128.5 / 256, -128.5 / 256), eye], [(32, 32), (32, 32)]),
        # centres of column 0 land on -1/512 exactly (the lowest valid point), of column 31 on 31 - 1/512 (valid)
        "left-edge": ([shift(-0.5 - 1 / 512), eye], [(32, 32), (32, 32)]),
        # centres land on W - 1/512 (rounds up to W: invalid) for the last column
        "right-edge": ([shift(0.5 - 1 / 512), eye], [(32, 32), (32, 32)]),
        # the same edges on an intermediate canvas, then moved back inside: only that step's test invalidates
        "mid-right-edge": ([shift(0.5 - 1 / 512), shift(-1.0)], [(32, 32), (32, 32)]),
        "mid-left-edge": ([shift(-0.5 - 1 / 256), shift(1.0)], [(32, 32), (32, 32)]),
        "mid-left-edge-valid": ([shift(-0.5 - 1 / 512), shift(1.0)], [(32, 32), (32, 32)]),
        # flips onto the ties: the mirror image of "tie"
        "flipped-tie": ([np.array([[-1, 0, 32 + 128.5 / 256], [0, 1, 0], [0, 0, 1]]), shift(0, -128.5 / 256)],
                        [(32, 32), (32, 32)]),
        # an identity that only tests a smaller canvas, then one on the same canvas, then a larger one
        "canvas-only": ([eye, eye, eye], [(20, 27), (20, 27), (32, 32)]),
        # the last canvas is larger than the destination: points inside it but outside 32 x 32 are invalid
        "beyond-destination": ([shift(6.0, 5.0)], [(48, 48)]),
        # a perspective horizon (nd <= 0 left of x ~ 12) then ties
        "horizon": ([np.array([[1, 0, 0], [0, 1, 0], [0.04, 0.01, -0.5]]), shift(-128.5 / 256, -128.5 / 256)],
                    [(32, 32), (32, 32)]),
        # a shear whose products hit ties: x' = x + y/2 with y = r + 1/2 gives quarter pixels
        "shear-ties": ([np.array([[1, 0.5, -0.25 - 1 / 512], [0, 1, 0], [0, 0, 1]]), eye], [(32, 32), (32, 32)]),
        # a rotation by exactly 90 degrees (not separable: x' depends on y), then a half-scale with ties
        "rotate-90": ([np.array([[0, 1, 0], [-1, 0, 32], [0, 0, 1]]), shift(0.25, 0.25, 0.5, 0.5)],
                      [(32, 32), (16, 16)]),
    }
    steps = max(len(m) for m, _ in cases.values())
    mats, canv = [], []
    for m, c in cases.values():
        pad = steps - len(m)
        mats.append(np.stack(list(m) + [eye] * pad))
        canv.append(np.array(list(c) + [c[-1]] * pad))
    return (PackedPaths(torch.tensor(np.stack(mats), dtype=torch.float32), torch.tensor(np.stack(canv), dtype=torch.int32),
                        (32, 32), (32, 32)), list(cases))


@needs_cpp
@pytest.mark.parametrize("path", ["as-is", "general"])
def test_hand_made_ties_and_edges(path):
    paths, names = hand_made_steps()
    if path == "general":
        paths = with_general_first_step(paths)
    expected = patch_overlap_ref(paths, 8)
    got = cpp(paths, 8)
    for b, name in enumerate(names):
        assert torch.equal(got[b], expected[b]), name
    # the cases decide something: half to even keeps column 0 and moves nothing in "tie"
    assert torch.equal(expected[0, :, :-1], torch.eye(16, dtype=torch.int32) * 64)
    assert expected[names.index("right-edge"), :, -1].sum() == 32  # the last column fell off
    assert expected[names.index("left-edge"), :, -1].sum() == 0
    first_col, last_col = (torch.arange(16) % 4 == 0) * 8, (torch.arange(16) % 4 == 3) * 8  # per source patch
    assert torch.equal(expected[names.index("mid-right-edge"), :, -1], last_col)  # fell off the first canvas
    assert torch.equal(expected[names.index("mid-left-edge"), :, -1], first_col)  # fell off the first canvas
    assert torch.equal(expected[names.index("mid-left-edge-valid"), :, -1], last_col)  # fell off the second
    assert expected[names.index("horizon"), :, -1].sum() > 0


@needs_cpp
def test_no_steps_and_thread_count_invariance():
    empty = PackedPaths(torch.zeros(2, 0, 3, 3), torch.zeros(2, 0, 2, dtype=torch.int32), (16, 24), (16, 24))
    got = cpp(empty, 8)
    assert torch.equal(got, patch_overlap_ref(empty, 8))
    assert torch.equal(got[0, :, :-1], torch.eye(6, dtype=torch.int32) * 64)
    paths = random_paths(np.random.default_rng(9), (70, 90), (32, 48), (48, 32), 17, occluders=True)
    one = cpp(paths, 16, threads=1)
    for threads in (2, 3, 64):
        assert torch.equal(cpp(paths, 16, threads=threads), one)


@needs_cpp
def test_bad_arguments_raise():
    paths = random_paths(np.random.default_rng(1), (70, 90), (32, 32), (32, 32), 13, occluders=False)
    m, c = paths.matrices.numpy(), paths.canvases.numpy()
    C = _cpp._C
    with pytest.raises(TypeError):  # no silent casts (.noconvert)
        C.patch_overlap(m.astype(np.float16), c, 32, 32, 32, 32, 16)
    with pytest.raises(TypeError):
        C.patch_overlap(m, c.astype(np.int64), 32, 32, 32, 32, 16)
    with pytest.raises(ValueError, match="canvases"):
        C.patch_overlap(m, c[:, :1].copy(), 32, 32, 32, 32, 16)
    with pytest.raises(ValueError, match="patch_size"):
        C.patch_overlap(m, c, 32, 32, 32, 32, 12)
    with pytest.raises(ValueError, match="src_occluder"):
        C.patch_overlap(m, c, 32, 32, 32, 32, 16, np.zeros((len(m), 16, 16), bool))
    big = c.copy()
    big[0, 0] = 20000  # beyond the float32 kernel's exact range: the caller must use the reference
    with pytest.raises(ValueError, match="canvases"):
        C.patch_overlap(m, big, 32, 32, 32, 32, 16)


def test_numpy_fallback_equals_reference():
    qr, _ = preset_paths(descriptor_preset(), 6, seed=3)
    assert torch.equal(counts_of(_cpp.patch_overlap_py, qr, 16), patch_overlap_ref(qr, 16))
    paths, names = hand_made_steps()
    assert torch.equal(counts_of(_cpp.patch_overlap_py, paths, 8), patch_overlap_ref(paths, 8))
    paths = random_paths(np.random.default_rng(4), (70, 90), (64, 48), (32, 32), 14, occluders=True,
                         dtype=torch.float64)
    assert torch.equal(counts_of(_cpp.patch_overlap_py, paths, 8), patch_overlap_ref(paths, 8))


def test_dispatch_cpp_and_fallback(monkeypatch):
    """impl="cpp" (and "auto" on CPU tensors) gives the reference's counts, with or without the extension."""
    qr, rq = preset_paths(descriptor_preset(), 6, seed=11)
    expected = patch_overlap_ref(rq, 16)
    assert torch.equal(patch_overlap(rq, 16, impl="cpp"), expected)
    assert torch.equal(patch_overlap(rq, 16, impl="auto"), expected)
    if os.environ.get("COPYNCE_NO_EXT", "0") != "1":
        monkeypatch.setattr(_cpp, "HAS_CPP", False)  # as if built with COPYNCE_NO_EXT=1
        monkeypatch.setattr(_cpp, "patch_overlap", _cpp.patch_overlap_py)
        assert torch.equal(patch_overlap(rq, 16, impl="cpp"), expected)
        assert torch.equal(patch_overlap(rq, 16, impl="auto"), expected)
    big = PackedPaths(torch.eye(3).expand(1, 1, 3, 3), torch.tensor([[[20000, 16]]], dtype=torch.int32), (16, 16),
                      (16, 16))
    assert torch.equal(patch_overlap(big, 16, impl="auto"), patch_overlap_ref(big, 16))  # beyond range: reference


def test_loader_workers_attach_counts():
    """PairLoader(counts_patch_size=P) batches carry the reference's counts (in this process and in a worker), and
    the CPU trainer's data asks for them."""
    from copynce_fast.config import apply_overrides, get_preset
    from copynce_fast.data import PairLoader, to_device
    from copynce_fast.data.sources import ArraySource
    from copynce_fast.data.synthetic import synthetic_images
    from copynce_fast.train.data import build_train_data
    from copynce_fast.utils.dist import DistInfo

    src = ArraySource(synthetic_images(8, (60, 80), seed=1))
    for workers in (0, 1):
        loader = PairLoader(src, descriptor_preset(size=64), batch_size=4, num_workers=workers, seed=2,
                            counts_patch_size=16)
        batch = next(iter(loader))
        for d in ("qr", "rq"):
            assert batch[f"counts_{d}"].dtype == torch.int32
            assert torch.equal(batch[f"counts_{d}"], patch_overlap_ref(batch[f"paths_{d}"], 16))
        moved = to_device(batch, "cpu", dtype=torch.float32)
        assert torch.equal(moved["counts_qr"], batch["counts_qr"])
    plain = next(iter(PairLoader(src, descriptor_preset(size=64), batch_size=4, seed=2)))
    assert "counts_qr" not in plain
    cfg = apply_overrides(get_preset("demo"), ["--data.batch_size=4"])
    data = build_train_data(cfg, torch.device("cpu"), DistInfo())
    assert "counts_qr" in next(data.batches())
