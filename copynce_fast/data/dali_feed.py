"""Host side of the DALI executor: PairKeys -> per-sample arrays for ``external_source`` (no DALI import here).

For every pair the feeder samples the PairPlan (the same ``plan_pair`` as the torch loader), then flattens
each view into fixed-shape arrays the DALI graph (dali_loader.py) consumes:

- ``mats`` [2 + SLOTS, 3, 3] float32: copy warp, other warp (view -> original pixels, pre-multiplied by the
  antialias pre-shrink), then KP copy-only canvas tests, KQ shared tests, 1 cover test, each as view ->
  the canvas's unit square (a 1x1 "ones" image warped with nearest sampling and fill 0 is exactly the test);
  unused tests map every pixel to (0.5, 0.5) (always inside);
- ``pre`` [2, 2] float32: (H, W) to shrink the copy / other original to before warping;
- ``fast`` bool, ``roi`` [4] float32: an axis-aligned view (crop / resize / flips only) is one antialiased
  ``resize`` of the source box (y0, x0, y1, x1) -- the same centre-aligned map;
- ``weights`` [4] float32: (a, b, d, g) of geometry.py; ``colour`` [3, 4] float32: the composed linear colour ops;
- ``flags`` [5] bool (pixelize, blur, edge, noise, jpeg), ``fparams`` [5] float32 (pixel H, pixel W, sigma,
  noise std, unused), ``quality`` int32, ``edge`` [3, 3] float32;
- ``occ`` / ``erase``: tight RGBA patches and their placement matrices (occluders.py), ``shuffle`` [2] float64.

Nearest sampling in DALI picks ``rint(x - 0.5)`` (ties to even) where PixTrace picks ``floor(snap(x))``; a
shift of half a snapping step (1/512 px) makes the two agree except at exact ties of the float32 arithmetic.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from copynce_fast.data.geometry import CanvasTest, layer_geometry, prefilter_scale
from copynce_fast.data.occluders import merge_layers
from copynce_fast.data.photometric import compose_colour, edge_kernel
from copynce_fast.data.plan import AugmentPlan, Occluder, PhotoOp
from copynce_fast.data.pair_of_key import plan_pair
from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.data.decode import decode_bytes
from copynce_fast.data.sources import ImageSource

__all__ = ["KP", "KQ", "SLOTS", "T_MAX", "view_arrays", "pair_arrays", "dali_bytes", "PairFeeder", "DUMMY_IMAGE"]

KP, KQ = 3, 3  # canvas-test slots: copy-only, shared (plus one cover test)
SLOTS = KP + KQ + 1
T_MAX = 16  # trace-path steps per pair (padded with identity steps, as PackedPaths.padded does)
EPS = 1.0 / 512.0  # half a snapping step, see the module docstring
_ALWAYS = np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 1]], np.float64)
_EMPTY_LAYER = np.zeros((1, 1, 4), np.uint8)


def _png(arr: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return np.frombuffer(buf.getvalue(), np.uint8)


DUMMY_IMAGE = _png(np.zeros((8, 8, 3), np.uint8))  # stands in for "no image" (decodes in microseconds)


def _shift(m: np.ndarray) -> np.ndarray:
    return np.array([[1, 0, EPS], [0, 1, EPS], [0, 0, 1]]) @ m


def _unit(t: CanvasTest) -> np.ndarray:
    h, w = t.hw
    return np.diag([1.0 / w, 1.0 / h, 1.0]) @ _shift(t.matrix)


def _warp(matrix, hw, nearest: bool, antialias: bool, out_hw):
    """(matrix, pre-shrink size) for warping an original of size hw."""
    h, w = hw
    s = 1.0 if (nearest or not antialias) else prefilter_scale(matrix, out_hw)
    nh, nw = (max(1, round(h / s)), max(1, round(w / s))) if s > 1.0 else (h, w)
    m = np.diag([nw / w, nh / h, 1.0]) @ matrix
    return (_shift(m) if nearest else m), (nh, nw)


def _layer(occs, out_hw):
    lay = merge_layers(occs, out_hw)
    if lay is None:
        return _EMPTY_LAYER, np.eye(3, dtype=np.float32)  # transparent everywhere
    t = np.array([[1, 0, -lay.left], [0, 1, -lay.top], [0, 0, 1]], np.float64)  # view -> patch pixels
    return np.ascontiguousarray(lay.rgba), _shift(t).astype(np.float32)


def _roi(matrix: np.ndarray, out_hw, in_hw):
    """(y0, x0, y1, x1) source box of an axis-aligned view (flips: start > end) inside the source, or None."""
    m = matrix / matrix[2, 2]
    if abs(m[0, 1]) > 1e-12 or abs(m[1, 0]) > 1e-12 or abs(m[2, 0]) > 1e-12 or abs(m[2, 1]) > 1e-12:
        return None
    h, w = out_hw
    y0, y1 = m[1, 2], m[1, 1] * h + m[1, 2]
    x0, x1 = m[0, 2], m[0, 0] * w + m[0, 2]
    tol = 1e-6
    if min(y0, y1) < -tol or min(x0, x1) < -tol or max(y0, y1) > in_hw[0] + tol or max(x0, x1) > in_hw[1] + tol:
        return None
    return np.array([y0, x0, y1, x1], np.float32)


def view_arrays(plan: AugmentPlan, nearest: bool = False, antialias: bool = True) -> dict:
    """Fixed-shape arrays of one view for the DALI graph (see the module docstring)."""
    geo = layer_geometry(plan)
    if len(geo.copy_tests) > KP or len(geo.shared_tests) > KQ:
        raise ValueError(f"plan: {len(geo.copy_tests)} copy-only / {len(geo.shared_tests)} shared canvas tests "
                         f"exceed the DALI graph's {KP} / {KQ} slots")
    out_hw = geo.out_hw
    mats = np.tile(_ALWAYS, (2 + SLOTS, 1, 1))
    pre = np.ones((2, 2), np.float32) * 8  # the dummy image's size
    mats[0], pre[0] = _warp(geo.copy_matrix, geo.source_hw, nearest, antialias, out_hw)
    mats[1] = np.eye(3)
    if geo.other_matrix is not None:
        mats[1], pre[1] = _warp(geo.other_matrix, geo.other_hw, nearest, antialias, out_hw)
    for k, t in enumerate(geo.copy_tests):
        mats[2 + k] = _unit(t)
    for k, t in enumerate(geo.shared_tests):
        mats[2 + KP + k] = _unit(t)
    if geo.cover_test is not None:
        mats[2 + KP + KQ] = _unit(geo.cover_test)
    # Fast path (bilinear only): a crop / resize / flip with nothing else is one antialiased ROI resize.
    roi = None
    if not nearest and geo.other_matrix is None and not geo.copy_tests and not geo.shared_tests:
        roi = _roi(geo.copy_matrix, out_hw, geo.source_hw)
    flags = np.zeros(5, bool)
    fparams = np.zeros(5, np.float32)
    quality, edge, shuffle = 100, edge_kernel(False), np.array([-1.0, 0.0])
    for op in plan.ops:
        if not isinstance(op, PhotoOp):
            continue
        if op.kind == "pixelize":
            flags[0] = True
            fparams[0:2] = [max(1, round(out_hw[0] * op.params[0])), max(1, round(out_hw[1] * op.params[0]))]
        elif op.kind == "blur":
            flags[1], fparams[2] = True, op.params[0]
        elif op.kind == "edge":
            flags[2], edge = True, edge_kernel(bool(op.params[0]))
        elif op.kind == "noise":
            flags[3], fparams[3] = True, op.params[0]
        elif op.kind == "jpeg":
            flags[4], quality = True, int(op.params[0])
        elif op.kind == "shuffle":
            shuffle = np.array([float(op.seed), float(op.params[0])])
    occ, occ_m = _layer([o for o in plan.ops if isinstance(o, Occluder) and o.kind != "erase"], out_hw)
    era, era_m = _layer([o for o in plan.ops if isinstance(o, Occluder) and o.kind == "erase"], out_hw)
    return {"mats": mats.astype(np.float32), "pre": pre.astype(np.float32), "fast": np.array(roi is not None),
            "roi": roi if roi is not None else np.zeros(4, np.float32),
            "weights": np.asarray(geo.weights, np.float32), "colour": compose_colour(plan.ops).astype(np.float32),
            "flags": flags, "fparams": fparams, "quality": np.array(quality, np.int32), "edge": edge,
            "occ": occ, "occ_m": occ_m, "erase": era, "erase_m": era_m, "shuffle": shuffle}


def _padded_path(paths, k: int):
    m = paths.matrices[0].numpy()
    c = paths.canvases[0].numpy()
    t = len(m)
    if t > T_MAX:
        raise ValueError(f"plan: a trace path of {t} steps exceeds T_MAX={T_MAX}")
    mats = np.concatenate([m, np.broadcast_to(np.eye(3, dtype=m.dtype), (T_MAX - t, 3, 3))])
    canv = np.concatenate([c, np.broadcast_to(np.array(paths.dst_hw, c.dtype), (T_MAX - t, 2))])
    return mats.astype(np.float32), canv.astype(np.int32)


def dali_bytes(source: ImageSource, i: int) -> np.ndarray:
    """Encoded bytes DALI decodes like ``source.decode`` does: JPEG/PNG/BMP in RGB or L pass through; other
    modes (CMYK, 16-bit, palette, alpha, ...) are decoded on the host and re-encoded losslessly (BMP)."""
    data = source.read_bytes(i)
    im = Image.open(io.BytesIO(data))
    if im.format in ("JPEG", "PNG", "BMP") and im.mode in ("RGB", "L") and \
            not (im.format == "PNG" and im.info.get("transparency") is not None):
        return np.frombuffer(data, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(decode_bytes(data, source.limits)).save(buf, "BMP")
    return np.frombuffer(buf.getvalue(), np.uint8)


def pair_arrays(source: ImageSource, cfg: AugmentConfig, seed: int, key: PairKey, nearest: bool = False,
                antialias: bool = True, pair_fn=None) -> dict:
    """Everything the DALI graph and the iterator need for one pair, as named numpy arrays.

    ``pair_fn(key) -> PairPlan`` replaces the sampler (tests feed hand-made plans).
    """
    from copynce_fast.pixtrace.batch import pack_pairs
    for _ in range(8):
        pair = pair_fn(key) if pair_fn is not None else plan_pair(source, cfg, seed, key)[0]
        try:
            enc = {}
            for plan in (pair.query, pair.reference):
                for i in [plan.source_index] + ([plan.overlay.index] if plan.overlay is not None else []):
                    if i not in enc:
                        enc[i] = dali_bytes(source, i)
            break
        except Exception as e:  # unreadable after all: mark it and plan again (it is skipped from now on)
            source.mark_bad(i, f"re-encoding for DALI failed ({type(e).__name__}: {e})")
    else:
        raise RuntimeError(f"could not prepare a pair for {key}")
    q, r = pair.query, pair.reference
    out = {"ref_bytes": enc[r.source_index],
           "qsrc_bytes": DUMMY_IMAGE if pair.is_copy else enc[q.source_index],
           "qoth_bytes": enc[q.overlay.index] if q.overlay is not None else DUMMY_IMAGE,
           "roth_bytes": enc[r.overlay.index] if r.overlay is not None else DUMMY_IMAGE,
           "is_neg": np.array(not pair.is_copy), "ones": np.ones((1, 1, 1), np.uint8)}
    out.update({f"q_{k}": v for k, v in view_arrays(q, nearest, antialias).items()})
    out.update({f"r_{k}": v for k, v in view_arrays(r, nearest, antialias).items()})
    qv, rv = pair.traced_views()
    qr, rq = pack_pairs([qv], [rv])
    out["qr_mats"], out["qr_canv"] = _padded_path(qr, 0)
    out["rq_mats"], out["rq_canv"] = _padded_path(rq, 0)
    s = cfg.size
    out["q_mask"] = (qv.occluder if qv.occluder is not None else np.zeros((s, s), bool)).astype(np.uint8)
    out["r_mask"] = (rv.occluder if rv.occluder is not None else np.zeros((s, s), bool)).astype(np.uint8)
    out["meta"] = np.array([pair.is_copy, pair.copynce, r.source_index], np.int64)
    return out


class PairFeeder:
    """Per-sample callback for ``external_source`` (picklable, so it can run in DALI's Python workers).

    Sample ``idx_in_epoch`` of DALI epoch ``e`` is key ``batch_sampler.epoch_keys(start_epoch + e)`` flattened;
    past the end it raises StopIteration (the epoch ends; the sampler yields full batches only).
    """

    def __init__(self, source: ImageSource, cfg: AugmentConfig, batch_sampler, names, seed: int = 0,
                 start_epoch: int = 0, nearest: bool = False, antialias: bool = True, pair_fn=None):
        self.source, self.cfg, self.sampler, self.names = source, cfg, batch_sampler, list(names)
        self.pair_fn = pair_fn
        self.seed, self.start_epoch, self.nearest, self.antialias = seed, start_epoch, nearest, antialias
        self._keys: tuple[int, list] | None = None

    def keys(self, epoch: int) -> list:
        if self._keys is None or self._keys[0] != epoch:
            self._keys = (epoch, [k for batch in self.sampler.epoch_keys(epoch) for k in batch])
        return self._keys[1]

    def __call__(self, sample_info):
        keys = self.keys(self.start_epoch + sample_info.epoch_idx)
        if sample_info.idx_in_epoch >= len(keys):
            raise StopIteration
        arrays = pair_arrays(self.source, self.cfg, self.seed, keys[sample_info.idx_in_epoch], self.nearest,
                             self.antialias, self.pair_fn)
        return tuple(arrays[n] for n in self.names)
