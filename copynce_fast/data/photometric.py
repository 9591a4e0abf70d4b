"""Photometric ops: their maths (shared by the executors) and the torch implementations.

Colour ops are affine maps of the RGB vector (0..255), given as [3, 4] matrices ``[M | t]`` so that an executor
can apply one op (torch, clamping after each like torchvision) or the product of several (DALI's
``coord_transform``, one clamp at the end):
- jitter: brightness b (x * b), contrast c (about mid-grey 128; torchvision uses the image's mean grey --
  a deviation that keeps the op linear and identical in every executor), saturation s (blend with the
  ITU-R 601 grey), hue h (rotation by 2*pi*h in YIQ space, as DALI's ``hsv``), in the plan's drawn order;
- grayscale, invert, sepia, channel_shuffle, rgb_shift.
The reference's "additional" group is albumentations' OneOf of 25 ops; we implement five cheap,
executor-portable ones (invert, sepia, channel shuffle, RGB shift, Gaussian noise).

Non-linear ops (torch here; DALI in dali_loader.py): pixelize (down-scale by ``ratio``, antialiased, then nearest
up-scale), shuffle (a seeded ``factor`` fraction of the pixels permuted among themselves), jpeg (PIL encode /
decode), blur (Gaussian, reflect border), edge (PIL's EDGE_ENHANCE / EDGE_ENHANCE_MORE kernels, clamped
border), noise (seeded Gaussian).

``apply_photo_op_torch`` is the reference. ``apply_photo_op`` / ``apply_colour_ops`` (what the executor calls) run
colour ops, blur, edge and pixelize's down-scale through the C++ helpers of csrc/photometric.h when the extension
is built: edge is bit-equal; the others sum in float32 in another order than torch (GEMM, fmadd, separable passes),
so a pixel whose value lies within float rounding of a .5 tie may land one grey level off
(tests/test_data_photometric_cpp.py bounds it).
Either way, same plan => same pixels on a given install.
"""
from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from copynce_fast import _cpp
from copynce_fast.data.decode import DecodeLimits, decode_bytes
from copynce_fast.data.plan import PhotoOp

__all__ = ["LINEAR_KINDS", "colour_matrix", "compose_colour", "edge_kernel", "gaussian_taps", "shuffle_indices",
           "apply_photo_op", "apply_colour_ops", "apply_photo_op_torch"]

LINEAR_KINDS = ("jitter", "grayscale", "invert", "sepia", "channel_shuffle", "rgb_shift")
_GREY = np.array([0.299, 0.587, 0.114])
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)  # once, not per hue op (the same float64 values)
_GREY_ROWS = np.outer(np.ones(3), _GREY)  # every output channel takes the ITU-R 601 grey
_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
_EYE = np.eye(3)  # read only: every use makes a new array
_ANY_SIZE = DecodeLimits(min_side=1)  # the JPEG op's own output: any view size decodes
_CPP = _cpp.photometric  # the C++ helpers, or None (the torch code runs); tests set it to None to compare


def _affine(m: np.ndarray, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[3, 4] float64 ``[m | t]`` (filled in place: a few numpy calls fewer than a concatenate, the same values)."""
    out = np.empty((3, 4))
    out[:, :3] = m
    out[:, 3] = t
    return out


def _jitter_part(k: int, v: float) -> np.ndarray:
    if k == 0:  # brightness
        return _affine(v * _EYE)
    if k == 1:  # contrast about mid-grey
        return _affine(v * _EYE, (1 - v) * 128.0)
    if k == 2:  # saturation: blend with grey
        return _affine(v * _EYE + (1 - v) * _GREY_ROWS)
    a = 2 * math.pi * v  # hue: rotate the chroma plane of YIQ
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return _affine(_YIQ_INV @ rot @ _YIQ)


def _then(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The affine map ``second(first(x))`` of two [3, 4] maps."""
    return _affine(second[:, :3] @ first[:, :3], second[:, :3] @ first[:, 3] + second[:, 3])


def colour_matrix(op: PhotoOp) -> np.ndarray:
    """[3, 4] float64 affine colour map of a linear op (kind in LINEAR_KINDS)."""
    p = op.params
    if op.kind == "jitter":
        m = _affine(_EYE)
        for k in (int(v) for v in p[4:8]):
            m = _then(m, _jitter_part(k, p[k]))
        return m
    if op.kind == "grayscale":
        return _affine(_GREY_ROWS)
    if op.kind == "invert":
        return _affine(-_EYE, 255.0)
    if op.kind == "sepia":
        return _affine(_SEPIA)
    if op.kind == "channel_shuffle":
        return _affine(np.eye(3)[[int(v) for v in p]])
    if op.kind == "rgb_shift":
        return _affine(np.eye(3), p)
    raise ValueError(f"op: {op.kind!r} is not a linear colour op")


def compose_colour(ops) -> np.ndarray:
    """[3, 4] map of the linear ops among ``ops`` applied in order (the others are skipped)."""
    m = _affine(np.eye(3))
    for op in ops:
        if isinstance(op, PhotoOp) and op.kind in LINEAR_KINDS:
            m = _then(m, colour_matrix(op))
    return m


def edge_kernel(more: bool) -> np.ndarray:
    """PIL's EDGE_ENHANCE (more=False) or EDGE_ENHANCE_MORE 3x3 kernel, normalised, float32."""
    centre, scale = (9.0, 1.0) if more else (10.0, 2.0)
    k = -np.ones((3, 3), np.float32)
    k[1, 1] = centre
    return k / scale


@lru_cache(maxsize=64)
def shuffle_indices(seed: int, n: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(idx, src) int64: pixels ``idx`` (flat, row-major) take the values of pixels ``src`` (a permutation of idx)."""
    rng = np.random.default_rng(seed)
    k = int(round(factor * n))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return idx, idx[rng.permutation(k)]


def gaussian_taps(sigma: float) -> torch.Tensor:
    """The blur's normalised 1-D Gaussian, [2r + 1] float32 with r = max(1, ceil(3 sigma))."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian, reflect border (replicate when the image is narrower than the radius): one
    multiply-add per tap over shifted views (torch's grouped 1-D conv2d is several times slower on a core)."""
    k = gaussian_taps(sigma).tolist()
    r = len(k) // 2
    c, h, w = x.shape
    pad_w, pad_h = min(r, w - 1), min(r, h - 1)
    y = F.pad(x[None], (r, r, 0, 0), mode="reflect" if pad_w == r else "replicate")[0]
    out = y[:, :, :w] * k[0]
    for j in range(1, 2 * r + 1):
        out.add_(y[:, :, j:j + w], alpha=k[j])
    y = F.pad(out[None], (0, 0, r, r), mode="reflect" if pad_h == r else "replicate")[0]
    out = y[:, :h] * k[0]
    for j in range(1, 2 * r + 1):
        out.add_(y[:, j:j + h], alpha=k[j])
    return out


def _edge_enhance(img: torch.Tensor, more: bool) -> torch.Tensor:
    """``edge_kernel`` applied with a clamped border: ((centre + 1) x - box3x3(x)) / scale. Every term is a small
    integer or half-integer, so this equals the 3x3 convolution exactly, in a few passes."""
    centre, scale = (9.0, 1.0) if more else (10.0, 2.0)
    p = F.pad(img[None].float(), (1, 1, 1, 1), mode="replicate")[0]
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    y = img.float().mul_(centre + 1.0).sub_(box)
    return y.div_(scale) if scale != 1.0 else y


@lru_cache(maxsize=256)
def _nearest_exact_index(n_in: int, n_out: int, axis: int) -> np.ndarray:
    """Source row (axis 0) or column (axis 1) of every output position of torch's nearest-exact resize from n_in
    to n_out, int64 [n_out]: read off F.interpolate itself (it resizes the positions 0..n_in-1), so the gather
    gives its pixels exactly."""
    shape, size = [1, 1, 1, 1], [1, 1]
    shape[2 + axis], size[axis] = n_in, n_out
    pos = torch.arange(n_in, dtype=torch.float32).view(shape)
    return F.interpolate(pos, size=tuple(size), mode="nearest-exact").reshape(-1).long().numpy()


def _pixelize(img: torch.Tensor, ratio: float, cpp: bool) -> torch.Tensor:
    """Down-scale by ``ratio`` (antialiased bilinear, rounded to uint8: in C++ when ``cpp``, else torch), then
    nearest-exact up-scale back to the image size, as a gather of rows and columns (F.interpolate's pixels)."""
    _, h, w = img.shape
    sh, sw = max(1, round(h * ratio)), max(1, round(w * ratio))
    if cpp:
        small = _CPP.resize_antialias(_planar(img), sh, sw)
    else:
        small = F.interpolate(img[None].float(), size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        small = small[0].round_().clamp_(0, 255).to(torch.uint8).numpy()
    big = small.take(_nearest_exact_index(sh, h, 0), axis=1).take(_nearest_exact_index(sw, w, 1), axis=2)
    return torch.from_numpy(big)


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """img [3, H, W] uint8 through PIL's JPEG encoder at ``quality`` and the package's decoder (data.decode: the
    same libjpeg-turbo pixels as PIL's decoder, 0.12 vs 0.39 ms for 224 x 224 with PIL's split into planes). The
    planes go in through Image.merge (no interleaved copy)."""
    _, h, w = img.shape
    planes = _planar(img)
    rgb = Image.merge("RGB", [Image.frombuffer("L", (w, h), planes[k], "raw", "L", 0, 1) for k in range(3)])
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=quality)
    return torch.from_numpy(decode_bytes(buf.getvalue(), _ANY_SIZE)).permute(2, 0, 1).contiguous()


def _planar(img: torch.Tensor) -> np.ndarray:
    """img as a C-contiguous numpy array (a view when it is contiguous)."""
    return img.contiguous().numpy()


def apply_colour_ops(img: torch.Tensor, ops) -> torch.Tensor:
    """A run of linear ops (kinds in LINEAR_KINDS) applied in order to img [3, H, W] uint8, each rounded and
    clamped like ``apply_photo_op``; uint8 [3, H, W]. One pass over the pixels in C++ when built."""
    ops = tuple(ops)
    if not ops:
        return img
    if _CPP is None:
        for op in ops:
            img = apply_photo_op_torch(img, op)
        return img
    maps = np.stack([colour_matrix(op) for op in ops]).astype(np.float32)
    return torch.from_numpy(_CPP.colour_ops(_planar(img), maps))


def apply_photo_op(img: torch.Tensor, op: PhotoOp) -> torch.Tensor:
    """Apply one op to img [3, H, W] uint8; returns uint8 [3, H, W]. Colour ops, blur and edge run in C++ when
    the extension is built (see the module docstring), the rest as ``apply_photo_op_torch``."""
    if _CPP is not None:
        if op.kind in LINEAR_KINDS:
            return apply_colour_ops(img, (op,))
        if op.kind == "blur":
            return torch.from_numpy(_CPP.gaussian_blur(_planar(img), gaussian_taps(float(op.params[0])).numpy()))
        if op.kind == "edge":
            return torch.from_numpy(_CPP.edge_enhance(_planar(img), bool(op.params[0])))
        if op.kind == "pixelize" and op.params[0] <= 1.0:
            return _pixelize(img, float(op.params[0]), cpp=True)
    return apply_photo_op_torch(img, op)


def apply_photo_op_torch(img: torch.Tensor, op: PhotoOp) -> torch.Tensor:
    """Apply one op to img [3, H, W] uint8 with torch (the reference); returns uint8 [3, H, W]."""
    c, h, w = img.shape
    if op.kind in LINEAR_KINDS:
        m = torch.from_numpy(colour_matrix(op)).float()
        y = torch.einsum("ij,jhw->ihw", m[:, :3], img.float()).add_(m[:, 3].view(3, 1, 1))
        return y.round_().clamp_(0, 255).to(torch.uint8)
    if op.kind == "pixelize":
        return _pixelize(img, float(op.params[0]), cpp=False)
    if op.kind == "shuffle":
        idx, src = shuffle_indices(op.seed, h * w, float(op.params[0]))
        flat = img.reshape(c, -1).clone()
        flat[:, torch.from_numpy(idx)] = img.reshape(c, -1)[:, torch.from_numpy(src)]
        return flat.reshape(c, h, w)
    if op.kind == "jpeg":
        return _jpeg(img, int(op.params[0]))
    if op.kind == "blur":
        return _gaussian_blur(img.float(), float(op.params[0])).round_().clamp_(0, 255).to(torch.uint8)
    if op.kind == "edge":
        return _edge_enhance(img, bool(op.params[0])).round_().clamp_(0, 255).to(torch.uint8)
    if op.kind == "noise":
        g = torch.Generator().manual_seed(int(op.seed))
        y = img.float() + float(op.params[0]) * torch.randn(img.shape, generator=g)
        return y.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"op: unknown photometric op {op.kind!r}")
