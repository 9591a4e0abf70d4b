"""The DALI pair loader: the same plans as the torch loader, decoded and rendered by DALI on the GPU
(``device_id=int``) or the CPU (``device_id=None``). Import this module only when DALI is installed
(``nvidia-dali-cuda120``).

``render_view`` is the augmentation graph, a plain function over data nodes: decode -> (antialias pre-shrink)
-> one perspective warp per layer with the plan's composed matrices -> canvas tests (nearest warps of a 1x1
"ones" image) -> layer weights (views that are only crop / resize / flips: one antialiased ROI resize) ->
colour (one ``coord_transform`` of the composed linear colour ops) ->
pixelise / blur / edge enhance (conditional) -> occluder layer (text, emoji, smear) -> noise / JPEG
(conditional) -> erasing layer. ``pair_pipeline`` feeds it from ``external_source`` (dali_feed.PairFeeder);
``DaliPairLoader`` iterates batch dicts identical to the torch loader's.

Deviations from the torch executor (documented, geometry is the same): the photometric ops run in the fixed
order above instead of the plan's order, pixel shuffling runs after DALI (in torch, on the output device),
Gaussian noise comes from DALI's own generator (not the plan's seed), and JPEG artefacts come from DALI's
``jpeg_compression_distortion`` instead of libjpeg via PIL.
"""
from __future__ import annotations

import torch

from copynce_fast.data.batch import IMAGENET_MEAN, IMAGENET_STD
from copynce_fast.data.batch_samplers import EpochBatchSampler
from copynce_fast.data.dali_feed import KP, KQ, PairFeeder
from copynce_fast.data.photometric import shuffle_indices
from copynce_fast.data.presets import AugmentConfig
from copynce_fast.data.sources import ImageSource, SkipCounter
from copynce_fast.pixtrace.batch import PackedPaths

try:
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator
except ImportError as e:  # pragma: no cover - exercised only without DALI
    raise ImportError("copynce_fast.data.dali_loader needs NVIDIA DALI: pip install nvidia-dali-cuda120 "
                      "(or nvidia-dali-cuda130)") from e

__all__ = ["render_view", "pair_pipeline", "DaliPairLoader", "feed_names"]

_PHOTO_KEYS = ("colour", "flags", "fparams", "quality", "edge", "occ", "occ_m", "erase", "erase_m")
_PASS = ("qr_mats", "qr_canv", "rq_mats", "rq_canv", "q_mask", "r_mask", "meta", "q_shuffle", "r_shuffle")


def _view_keys(nearest: bool, photometric: bool) -> list[str]:
    geometry = ["mats", "weights"] + ([] if nearest else ["pre", "fast", "roi"])
    return geometry + (list(_PHOTO_KEYS) if photometric else [])


def feed_names(full_reference: bool, nearest: bool = False, photometric: bool = True) -> list[str]:
    """The external_source outputs the graph uses, in order (the reference's view inputs only for copy<->copy)."""
    vk = _view_keys(nearest, photometric)
    names = ["ref_bytes", "qsrc_bytes", "qoth_bytes", "is_neg", "ones"] + [f"q_{k}" for k in vk]
    if full_reference:
        names += ["roth_bytes"] + [f"r_{k}" for k in vk]
    elif nearest:
        names += ["r_mats"]
    return names + list(_PASS)


def _layer(img, patch, matrix, size, gpu):
    """img [S, S, 3] uint8 with an RGBA patch placed by ``matrix`` (view -> patch pixels) drawn over it."""
    lay = fn.experimental.warp_perspective(patch.gpu() if gpu else patch, matrix=matrix, size=size,
                                           interp_type=types.INTERP_NN, fill_value=0)
    a = fn.cast(lay[:, :, 3:4], dtype=types.FLOAT) * (1.0 / 255.0)
    out = fn.cast(img, dtype=types.FLOAT) * (1.0 - a) + fn.cast(lay[:, :, 0:3], dtype=types.FLOAT) * a
    return fn.cast(out, dtype=types.UINT8)


def render_view(main, other, v: dict, ones, size, *, nearest: bool, photometric: bool, gpu: bool):
    """The augmentation graph for one view.

    Args:
        main, other: decoded originals (HWC uint8 nodes) of the copy and of the overlay (or a dummy).
        v: the view's input nodes by name (dali_feed.view_arrays keys).
        ones: a [1, 1, 1] uint8 node of ones (canvas tests).
        size: (S, S).
        nearest: nearest sampling and no pre-shrink (geometry tests); else bilinear after the pre-shrink.
        photometric: False stops after geometry.
        gpu: the images live on the GPU (CPU-side parameters then reach the ops as argument inputs).
    Returns:
        [S, S, 3] uint8 node.
    """
    if nearest:
        img = _geometry(main, other, v, ones, size, nearest, gpu)
    elif v["fast"]:  # crop / resize / flips only: one antialiased resize of the source box
        img = fn.resize(main, size=size, roi_start=v["roi"][0:2], roi_end=v["roi"][2:4], antialias=True)
    else:
        img = _geometry(main, other, v, ones, size, nearest, gpu)
    if not photometric:
        return img
    img = fn.coord_transform(img, MT=v["colour"], dtype=types.UINT8)
    flags, fp = v["flags"], v["fparams"]
    if flags[0]:
        img = fn.resize(fn.resize(img, size=fp[0:2], antialias=True), size=size, interp_type=types.INTERP_NN)
    if flags[1]:
        img = fn.gaussian_blur(img, sigma=fp[2])
    if flags[2]:
        img = fn.filter(img, v["edge"].gpu() if gpu else v["edge"], border="clamp")
    img = _layer(img, v["occ"], v["occ_m"], size, gpu)
    if flags[3]:
        img = fn.noise.gaussian(img, stddev=fp[3])
    if flags[4]:
        img = fn.jpeg_compression_distortion(img, quality=v["quality"])
    return _layer(img, v["erase"], v["erase_m"], size, gpu)


def _geometry(main, other, v: dict, ones, size, nearest: bool, gpu: bool):
    """The layered warp of geometry.py: [S, S, 3] uint8 before photometric ops."""
    interp = types.INTERP_NN if nearest else types.INTERP_LINEAR
    mats, w = v["mats"], v["weights"]
    if not nearest:
        main = fn.resize(main, size=v["pre"][0], antialias=True)
        other = fn.resize(other, size=v["pre"][1], antialias=True)
    copy = fn.experimental.warp_perspective(main, matrix=mats[0], size=size, interp_type=interp, fill_value=0)
    oth = fn.experimental.warp_perspective(other, matrix=mats[1], size=size, interp_type=interp, fill_value=0)
    one = ones.gpu() if gpu else ones

    def test(k):
        return fn.experimental.warp_perspective(one, matrix=mats[k], size=size, interp_type=types.INTERP_NN,
                                                fill_value=0)

    p = test(2)
    for k in range(3, 2 + KP):
        p = p * test(k)
    q = test(2 + KP)
    for k in range(3 + KP, 2 + KP + KQ):
        q = q * test(k)
    cover = fn.cast(test(2 + KP + KQ), dtype=types.FLOAT)
    w_copy = (w[0] + w[1] * cover) * fn.cast(p * q, dtype=types.FLOAT)
    w_other = (w[2] + w[3] * cover) * fn.cast(q, dtype=types.FLOAT)
    return fn.cast(w_copy * fn.cast(copy, dtype=types.FLOAT) + w_other * fn.cast(oth, dtype=types.FLOAT),
                   dtype=types.UINT8)


@pipeline_def(enable_conditionals=True)
def pair_pipeline(feeder: PairFeeder, size: int, full_reference: bool, nearest: bool, photometric: bool,
                  gpu: bool, normalize: bool, parallel: bool):
    """Decode + render both views of every pair; outputs in ``DaliPairLoader.OUTPUTS`` order."""
    names = feeder.names
    nodes = fn.external_source(source=feeder, num_outputs=len(names), batch=False, parallel=parallel)
    n = dict(zip(names, nodes))
    decode = lambda b: fn.decoders.image(b, device="mixed" if gpu else "cpu", output_type=types.RGB)  # noqa: E731
    ref = decode(n["ref_bytes"])
    qsrc = decode(n["qsrc_bytes"])
    if n["is_neg"]:
        qmain = qsrc  # a negative query shows another image
    else:
        qmain = ref
    hw = (size, size)
    vk = _view_keys(nearest, photometric)
    query = render_view(qmain, decode(n["qoth_bytes"]), {k: n[f"q_{k}"] for k in vk}, n["ones"], hw,
                        nearest=nearest, photometric=photometric, gpu=gpu)
    if full_reference:
        reference = render_view(ref, decode(n["roth_bytes"]), {k: n[f"r_{k}"] for k in vk}, n["ones"], hw,
                                nearest=nearest, photometric=photometric, gpu=gpu)
    elif nearest:
        reference = fn.experimental.warp_perspective(ref, matrix=n["r_mats"][0], size=hw,
                                                     interp_type=types.INTERP_NN, fill_value=0)
    else:
        reference = fn.resize(ref, size=hw, antialias=True)  # the plain reference is a centre-aligned resize

    def out(img):
        if normalize:
            return fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW",
                                            mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD])
        return fn.transpose(img, perm=[2, 0, 1])

    return (out(query), out(reference)) + tuple(n[k] for k in _PASS)


def _trimmed(paths: PackedPaths) -> PackedPaths:
    """Drop the trailing identity steps every pair has (the feeder pads to T_MAX): the overlap kernel unrolls
    one loop iteration per step. Host tensors, so this costs no device sync."""
    m, c = paths.matrices, paths.canvases
    if m.is_cuda:
        return paths
    eye = torch.eye(3, dtype=m.dtype)
    dst = torch.tensor(paths.dst_hw, dtype=c.dtype)
    padding = (m == eye).flatten(2).all(-1).all(0) & (c == dst).all(-1).all(0)  # [T]: identity for every pair
    keep = len(padding)
    while keep > 1 and bool(padding[keep - 1]):
        keep -= 1
    return PackedPaths(m[:, :keep].contiguous(), c[:, :keep].contiguous(), paths.src_hw, paths.dst_hw,
                       paths.src_occluder, paths.dst_occluder)


class DaliPairLoader:
    """Batch dicts (as PairLoader's) from the DALI executor, for one rank.

    Args:
        source: an ImageSource (files are read and planned on the host; DALI decodes and renders).
        cfg: AugmentConfig.
        batch_size: pairs per batch.
        device_id: CUDA device for the GPU pipeline, or None for the CPU pipeline.
        num_threads: DALI CPU threads.
        seed, rank, world_size: as PairLoader (``batch_sampler`` must have ``epoch_keys(epoch)``).
        py_workers: >0 runs the planning callback in that many DALI Python worker processes.
        nearest, photometric: geometry tests (nearest sampling, no pre-shrink; photometric off).
        normalize: float ImageNet-normalised images (cast to ``dtype``) instead of uint8 (GPU only).
        pair_fn: PairKey -> PairPlan replacing the sampler (tests; must be picklable with py_workers).
    """

    OUTPUTS = ("query", "reference") + _PASS

    def __init__(self, source: ImageSource, cfg: AugmentConfig, batch_size: int, device_id: int | None = None,
                 num_threads: int = 2, seed: int = 0, rank: int = 0, world_size: int = 1, batch_sampler=None,
                 py_workers: int = 0, nearest: bool = False, photometric: bool = True, normalize: bool = False,
                 dtype=torch.bfloat16, start_epoch: int = 0, prefetch_queue_depth: int = 2, pair_fn=None):
        self.cfg, self.batch_size, self.dtype = cfg, batch_size, dtype
        self.batch_sampler = batch_sampler or EpochBatchSampler(len(source), batch_size, seed, True, rank, world_size)
        full = cfg.pair_mode == "copy_copy"
        source.skips.log = True
        self.skips: SkipCounter = source.skips  # planning runs in this process unless py_workers > 0
        self.feeder = PairFeeder(source, cfg, self.batch_sampler, feed_names(full, nearest, photometric), seed,
                                 start_epoch, nearest, pair_fn=pair_fn)
        gpu = device_id is not None
        kw = {"py_num_workers": py_workers, "py_start_method": "spawn"} if py_workers > 0 else {}
        self.pipe = pair_pipeline(self.feeder, cfg.size, full, nearest, photometric, gpu, normalize and gpu,
                                  py_workers > 0, batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                                  seed=seed + 1, prefetch_queue_depth=prefetch_queue_depth, **kw)
        self.pipe.build()
        self.normalize, self.photometric = normalize and gpu, photometric
        self.iterator = DALIGenericIterator([self.pipe], list(self.OUTPUTS), last_batch_policy=LastBatchPolicy.DROP,
                                            auto_reset=True)
        self._shuffle_cache: dict = {}

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batch_sampler)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _shuffle(self, img: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Pixel shuffling of the plans (after DALI): img [B, 3, S, S], params [B, 2] (seed, factor; seed < 0: none)."""
        b, c, h, w = img.shape
        todo = [(i, int(p[0]), float(p[1])) for i, p in enumerate(params.tolist()) if p[0] >= 0]
        if not todo:
            return img
        img = img.clone()  # out of DALI's buffer before writing
        flat = img.view(b, c, h * w)
        for i, seed, factor in todo:
            idx, src = shuffle_indices(seed, h * w, factor)
            key = (seed, h * w, factor, img.device)
            if key not in self._shuffle_cache:
                dev = img.device
                self._shuffle_cache = {key: (torch.from_numpy(idx).to(dev), torch.from_numpy(src).to(dev))}
            ti, ts = self._shuffle_cache[key]
            flat[i][:, ti] = flat[i][:, ts]
        return img

    def _batch(self, d: dict) -> dict:
        s = self.cfg.size
        q, r = d["query"], d["reference"]
        if self.photometric:
            q, r = self._shuffle(q, d["q_shuffle"]), self._shuffle(r, d["r_shuffle"])
        if self.normalize:
            q, r = q.to(self.dtype), r.to(self.dtype)
        qm, rm = d["q_mask"].bool().clone(), d["r_mask"].bool().clone()
        # On the GPU keep the masks even when empty: testing them would be a host sync on every batch.
        mq = qm if qm.is_cuda or bool(qm.any()) else None
        mr = rm if rm.is_cuda or bool(rm.any()) else None
        hw = (s, s)
        qr = _trimmed(PackedPaths(d["qr_mats"].clone(), d["qr_canv"].clone(), hw, hw, mq, mr))
        rq = _trimmed(PackedPaths(d["rq_mats"].clone(), d["rq_canv"].clone(), hw, hw, mr, mq))
        meta = d["meta"].clone()
        return {"query": q, "reference": r, "paths_qr": qr, "paths_rq": rq, "is_copy": meta[:, 0].bool(),
                "copynce": meta[:, 1].bool(), "source_index": meta[:, 2], "skipped": [], "substitutions": 0}

    def __iter__(self):
        for out in self.iterator:
            yield self._batch(out[0])
