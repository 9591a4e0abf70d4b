"""Triton patch overlap counts (geometry and dense maps) vs the torch references: exact equality (torch.equal)."""
import numpy as np
import pytest
import torch

from copynce_fast.kernels import overlap as kov
from copynce_fast.kernels.overlap import patch_overlap_from_dense_triton, patch_overlap_triton
from copynce_fast.ops import patch_overlap, patch_overlap_from_dense, patch_overlap_from_dense_ref, patch_overlap_ref
from copynce_fast.pixtrace import PackedPaths, View, correspondence_map, pack_paths
from copynce_fast.pixtrace import stages as S
from copynce_fast.pixtrace.random_views import random_view
from copynce_fast.pixtrace.view import SNAP

DEV = "cuda" if torch.cuda.is_available() else "cpu"

# (original, source view, destination view, patch): square and non-square grids, two patch sizes.
CONFIGS = [((70, 90), (64, 48), (32, 32), 8), ((50, 60), (48, 64), (40, 24), 8), ((60, 60), (48, 64), (32, 48), 16)]


def every_stage_kind(o, out_hw):
    """One view per stage kind (plus a long mixed chain), each ending with a resize to ``out_hw``."""
    h, w = o
    quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    stages = [
        S.crop(o, 5, 7, h - 12, w - 9),
        S.resize(o, (33, 47)),
        S.resized_crop(o, 3.3, 4.7, h * 0.6, w * 0.7, (40, 40)),
        S.hflip(o), S.vflip(o),
        S.rotate(o, 90.0), S.rotate(o, 17.0), S.rotate(o, -133.0),
        S.shear(o, 25.0, -10.0),
        S.perspective(o, quad, quad + np.array([[6, 3], [-5, 4], [-7, -6], [4, -2]])),
        S.pad(o, 3, 9, 0, 5),
        S.paste(o, (h + 30, w + 20), 11.5, 7.25, h * 0.8, w * 0.9),
    ]
    views = [View(o, [st]) for st in stages]
    views.append(View(o, stages[:1]).then(S.rotate((h - 12, w - 9), 31.0)).then(S.hflip((h - 12, w - 9))))
    return [v.then(S.resize(v.out_hw, out_hw)) for v in views]


def triton_counts(paths: PackedPaths, patch: int) -> torch.Tensor:
    """The geometry kernel on a ``PackedPaths`` unpacked into its tensors (the kernel knows no pixtrace type)."""
    return patch_overlap_triton(paths.matrices, paths.canvases, paths.src_hw, paths.dst_hw, patch,
                                src_occluder=paths.src_occluder, dst_occluder=paths.dst_occluder, snap=SNAP)


def make_paths(rng, original, src_hw, dst_hw, batch, occluders, dtype=torch.float32):
    src = every_stage_kind(original, src_hw)[:batch] if batch > 4 else []
    while len(src) < batch:
        src.append(random_view(rng, original, src_hw, n_stages=int(rng.integers(1, 5))))
    dst = [random_view(rng, original, dst_hw, n_stages=int(rng.integers(0, 3))) for _ in range(batch)]
    if occluders:
        src = [v.with_occluder(rng.random(src_hw) < 0.2) for v in src]
        dst = [v.with_occluder(rng.random(dst_hw) < 0.3) for v in dst]
    return pack_paths(src, dst, dtype=dtype)


@pytest.mark.parametrize("occluders", [False, True])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[1][0]}x{c[1][1]}-{c[2][0]}x{c[2][1]}-p{c[3]}")
def test_geometry_counts_equal_reference(config, occluders):
    original, src_hw, dst_hw, patch = config
    rng = np.random.default_rng(sum(src_hw) + patch + occluders)
    paths = make_paths(rng, original, src_hw, dst_hw, batch=13 if patch == 8 else 5, occluders=occluders)
    expected = patch_overlap_ref(paths, patch)
    got = triton_counts(paths.to(DEV), patch).cpu()
    assert got.dtype == torch.int32 and got.shape == expected.shape
    assert torch.equal(got, expected), f"{int((got != expected).sum())} counts differ"
    assert torch.all(got.sum(-1) == patch * patch)
    assert expected[..., :-1].sum() > 0 and expected[..., -1].sum() > 0  # both valid and invalid pixels occur


def test_float64_paths_equal_float64_reference():
    paths = make_paths(np.random.default_rng(7), (70, 90), (64, 48), (32, 32), batch=6, occluders=True,
                       dtype=torch.float64)
    assert torch.equal(triton_counts(paths.to(DEV), 8).cpu(), patch_overlap_ref(paths, 8))


def test_half_way_snapping_and_perspective_horizon():
    """Hand-made steps hitting every tie of the snap (x*256 = k - 1/2) and points behind a horizon (nd <= 0)."""
    shift = -128.5 / 256  # pixel centres land exactly half-way between two 1/256 steps
    tie = np.array([[1, 0, shift], [0, 1, shift], [0, 0, 1]])
    horizon = np.array([[1, 0, 0], [0, 1, 0], [0.04, 0.01, -0.5]])  # nd <= 0 left of x ~ 12
    flipped_tie = np.array([[-1, 0, 32 + 128.5 / 256], [0, 1, 0], [0, 0, 1]])
    mats = np.stack([np.stack([tie, np.eye(3)]), np.stack([horizon, tie]), np.stack([flipped_tie, tie])])
    canv = np.full((3, 2, 2), 32)
    paths = PackedPaths(torch.tensor(mats, dtype=torch.float32), torch.tensor(canv, dtype=torch.int32),
                        (32, 32), (32, 32))
    expected = patch_overlap_ref(paths, 8)
    assert torch.equal(triton_counts(paths.to(DEV), 8).cpu(), expected)
    # Half to even keeps column 0 (x*256 = -0.5 rounds to -0) and moves nothing: a tie-breaking bug shows here.
    assert torch.equal(expected[0, :, :-1], torch.eye(16, dtype=torch.int32) * 64)
    assert expected[1, :, -1].sum() > 0  # the horizon invalidated something


def test_no_steps_is_the_identity_between_equal_frames():
    paths = PackedPaths(torch.zeros(2, 0, 3, 3), torch.zeros(2, 0, 2, dtype=torch.int32), (16, 24), (16, 24))
    got = triton_counts(paths.to(DEV), 8).cpu()
    assert torch.equal(got, patch_overlap_ref(paths, 8))
    assert torch.equal(got[0, :, :-1], torch.eye(6, dtype=torch.int32) * 64)


def test_one_patch_per_program_like_the_gpu(monkeypatch):
    """The interpreter packs patches per program; the GPU layout (one patch each) must give the same counts."""
    monkeypatch.setattr(kov, "_patches_per_program", lambda patch, ls, ld: 1)
    paths = make_paths(np.random.default_rng(3), (50, 60), (24, 16), (16, 24), batch=2, occluders=True)
    assert torch.equal(triton_counts(paths.to(DEV), 8).cpu(), patch_overlap_ref(paths, 8))
    maps = correspondence_map(paths)
    assert torch.equal(patch_overlap_from_dense_triton(maps.to(DEV), (16, 24), 8).cpu(),
                       patch_overlap_from_dense_ref(maps, (16, 24), 8))


def dense_maps(dtype):
    """A real correspondence map plus every kind of invalid value the reference rejects."""
    paths = make_paths(np.random.default_rng(11), (70, 90), (48, 40), (32, 24), batch=3, occluders=True)
    maps = correspondence_map(paths).to(dtype)
    if dtype.is_floating_point:
        maps = maps + torch.rand(maps.shape).to(dtype) * 0.99  # fractional parts are floored
        maps[0, 0, :3, :3] = float("nan")
        maps[0, 1, 5, :4] = float("inf")
        maps[1, 0, 7, :5] = -0.25  # floors to -1
        maps[1, 1, 9, :6] = 23.9  # just inside the 24-wide destination
        maps[2, 1, 2, :6] = 24.0  # just outside
    maps[2, 0, 11, :7] = 32  # row out of range
    maps[2, 1, 12, :7] = -3
    return maps


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.float32, torch.float64,
                                   torch.float16, torch.bfloat16])
def test_dense_counts_equal_reference(dtype):
    maps = dense_maps(dtype)
    expected = patch_overlap_from_dense_ref(maps, (32, 24), 8)
    got = patch_overlap_from_dense_triton(maps.to(DEV), (32, 24), 8).cpu()
    assert torch.equal(got, expected)
    assert torch.all(got.sum(-1) == 64)


def test_dense_non_contiguous_and_default_destination():
    maps = correspondence_map(make_paths(np.random.default_rng(5), (60, 60), (32, 32), (32, 32), 3, False))
    swapped = maps.flip(1)  # negative channel stride: (col, row) read as (row, col)
    for m in (swapped, maps.transpose(2, 3)):
        assert torch.equal(patch_overlap_from_dense_triton(m.to(DEV), None, 8).cpu(),
                           patch_overlap_from_dense_ref(m, None, 8))


def test_dispatch_and_compile():
    paths = make_paths(np.random.default_rng(2), (70, 90), (64, 48), (32, 32), batch=2, occluders=False)
    expected = patch_overlap_ref(paths, 8)
    assert torch.equal(patch_overlap(paths.to(DEV), 8, impl="triton").cpu(), expected)
    maps = correspondence_map(paths).to(DEV)
    fn = torch.compile(lambda m: patch_overlap_from_dense(m, (32, 32), 8, impl="triton"), fullgraph=True,
                       backend="aot_eager")
    assert torch.equal(fn(maps).cpu(), expected)
    geo = torch.compile(lambda m, c: patch_overlap(PackedPaths(m, c, (64, 48), (32, 32)), 8, impl="triton"),
                        fullgraph=True, backend="aot_eager")
    assert torch.equal(geo(paths.matrices.to(DEV), paths.canvases.to(DEV)).cpu(), expected)


def test_custom_op_registrations():
    paths = make_paths(np.random.default_rng(4), (50, 60), (16, 24), (16, 16), batch=2, occluders=True).to(DEV)
    torch.library.opcheck(kov._patch_overlap_op, (paths.matrices, paths.canvases, paths.src_occluder,
                                                  paths.dst_occluder, 16, 24, 16, 16, 8),
                          test_utils=("test_schema", "test_faketensor"))
    maps = correspondence_map(paths)
    torch.library.opcheck(kov._patch_overlap_dense_op, (maps, 16, 16, 8), test_utils=("test_schema", "test_faketensor"))


def test_rejects_bad_arguments():
    paths = make_paths(np.random.default_rng(0), (70, 90), (64, 48), (32, 32), batch=1, occluders=False)
    with pytest.raises(ValueError, match="src_hw"):
        triton_counts(paths.to(DEV), 7)
    with pytest.raises(ValueError, match="matrices"):
        triton_counts(PackedPaths(paths.matrices.half(), paths.canvases, (64, 48), (32, 32)).to(DEV), 8)
    with pytest.raises(ValueError, match="snap"):
        patch_overlap_triton(paths.matrices, paths.canvases, (64, 48), (32, 32), 8, snap=128.0)
    with pytest.raises(ValueError, match="maps"):
        patch_overlap_from_dense_triton(torch.zeros(1, 3, 8, 8, device=DEV), None, 8)


@pytest.mark.gpu
def test_gpu_full_size_batch():
    """224 px, P = 16, 32 pairs of long random chains with occluders, fp32 on the GPU vs the CPU reference."""
    rng = np.random.default_rng(0)
    paths = make_paths(rng, (300, 400), (224, 224), (224, 224), batch=32, occluders=True)
    expected = patch_overlap_ref(paths, 16)
    assert torch.equal(triton_counts(paths.to("cuda"), 16).cpu(), expected)
    assert torch.equal(patch_overlap_ref(paths.to("cuda"), 16).cpu(), expected)
    maps = correspondence_map(paths).cuda()
    assert torch.equal(patch_overlap_from_dense_triton(maps, None, 16).cpu(), expected)
    assert torch.equal(patch_overlap_from_dense_triton(maps.bfloat16(), None, 16).cpu(),
                       patch_overlap_from_dense_ref(maps.bfloat16(), None, 16).cpu())
