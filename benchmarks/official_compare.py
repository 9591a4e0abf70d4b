"""Side-by-side measurements of the official PixTrace / CopyNCE and copynce-fast on the same edits.

Used by ``bench_official.py`` (items 1 and 2) and ``tests/test_official_parity.py``. The official side runs its own
code (``official_harness``); ours runs the public API: ``CopyNCELoss`` fed the official dense maps
(``que_to_ori=``, ``ref_to_ori=``), ``CopyNCELoss`` / ``patch_overlap`` fed the exact geometry of the same edits
(``geometry=``), and ``pixtrace.correspondence_map``.
"""
from __future__ import annotations

import numpy as np
import torch

import official_edits as E
import official_harness as H
from copynce_fast.pixtrace import View, correspondence_map, pack_pairs
from copynce_fast.pixtrace.view import pixel_index
from copynce_fast.pixtrace import stages as S


def reference_configs(off, size: int) -> list[dict]:
    """The official reference transform's configs: a plain resize to size x size."""
    return [{"type": off.mask_mapper.Augmentation.RESIZE, "params": {"h": size, "w": size}}]


def pair_maps(off, query_configs: list[list], native_hws: list, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official (que_to_ori, ref_to_ori) [B, 2, S, S] for B queries (their config lists) of originals of
    ``native_hws`` [(H, W)], stacked in float64 (every official map value is exact in float64)."""
    q = [H.official_map(off, c, (w, h), (size, size)) for c, (h, w) in zip(query_configs, native_hws)]
    r = [H.official_map(off, reference_configs(off, size), (w, h), (size, size)) for h, w in native_hws]
    return torch.from_numpy(np.stack(q).astype(np.float64)), torch.from_numpy(np.stack(r).astype(np.float64))


def pair_views(query_configs: list[list], native_hws: list, size: int) -> tuple[list[View], list[View]]:
    """Our views of the same B pairs: the query's edits, and the reference resized to size x size."""
    qv = [E.view_from_configs(c, hw) for c, hw in zip(query_configs, native_hws)]
    rv = [View(tuple(hw), [S.resize(tuple(hw), (size, size))]) for hw in native_hws]
    return qv, rv


def _shares(valid: torch.Tensor) -> float:
    return float(valid.float().mean())


def _to_original_ours(view: View, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query pixel, the original pixel its centre shows (ours), as the official map writes it: the native
    (row, col) index scaled into the frame of the original resized to size x size."""
    h, w = view.out_hw
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    xy, ok = view.map_to_source(np.stack([xs.ravel(), ys.ravel()], 1))
    h0, w0 = view.source_hw
    idx = pixel_index(xy)  # the native pixel each centre falls in (snapped, as everywhere in PixTrace)
    yx = np.stack([idx[:, 1] * size / h0, idx[:, 0] * size / w0])
    return yx.reshape(2, h, w), ok.reshape(h, w)


def correspondence_parity(off, configs: list[dict], native_hw: tuple[int, int], size: int) -> dict:
    """One edit applied by both sides: how much each traces, how well the traces agree, the official artefacts.

    Returns a dict of shares over the size x size query / reference grids:
        official_to_original / ours_to_original: query pixels traced to the original;
        orig_agree_exact / orig_agree_1px: of the pixels both trace, the share that name the same native pixel /
            native pixels at most 1 px apart (Chebyshev); orig_median_px / orig_max_px the distance in native pixels;
        official_to_reference / ours_to_reference: query pixels with a reference pixel (q->r);
        ref_agree_exact / ref_agree_1px / ref_max_px: agreement of the q->r pixels where both have one;
        ori_to_ref_holes: pixels of the (resized) original that the official inverse leaves without a reference pixel;
        ref_to_que_holes: reference pixels that show query content (ours) but get no query pixel from the official
            inverse; collided_ref_px: reference pixels that several query pixels map to (official; one wins).
    """
    with H.cpu_cuda(threads=1):  # small tensors: one thread is fastest, and immune to a loaded machine
        return _correspondence_parity(off, configs, native_hw, size)


def _correspondence_parity(off, configs, native_hw, size) -> dict:
    h, w = native_hw
    qo, ro = pair_maps(off, [configs], [native_hw], size)
    ori_to_ref, que_to_ref, ref_to_que = H.official_correspondence(off, qo, ro)
    qv, rv = pair_views([configs], [native_hw], size)
    qr, rq = pack_pairs(qv, rv)
    ours_qr, ours_rq = correspondence_map(qr)[0], correspondence_map(rq)[0]
    off_qr = que_to_ref[0]

    m = qo[0]
    off_orig_ok = (m[0] >= 0) & (m[1] >= 0) & (m[0] < size) & (m[1] < size)
    ours_orig, ours_orig_ok = _to_original_ours(qv[0], size)
    ours_orig, ours_orig_ok = torch.from_numpy(ours_orig), torch.from_numpy(ours_orig_ok)
    both_orig = off_orig_ok & ours_orig_ok
    native_px = torch.tensor([h / size, w / size], dtype=torch.float64).view(2, 1, 1)
    d_orig = ((m - ours_orig) * native_px).round().abs().amax(0)[both_orig]  # in native pixels

    off_ok, ours_ok = off_qr[0] >= 0, ours_qr[0] >= 0
    both = off_ok & ours_ok
    d = (off_qr - ours_qr).abs().amax(0)[both]
    hits = torch.zeros(size * size, dtype=torch.int64)
    flat = (off_qr[0] * size + off_qr[1])[off_ok]
    hits.scatter_add_(0, flat, torch.ones_like(flat))
    ours_covered = ours_rq[0] >= 0
    return {
        "native": f"{w}x{h}", "size": size,
        "official_to_original": _shares(off_orig_ok), "ours_to_original": _shares(ours_orig_ok),
        "orig_agree_exact": _shares(d_orig == 0) if len(d_orig) else float("nan"),
        "orig_agree_1px": _shares(d_orig <= 1) if len(d_orig) else float("nan"),
        "orig_median_px": float(d_orig.median()) if len(d_orig) else float("nan"),
        "orig_max_px": float(d_orig.max()) if len(d_orig) else float("nan"),
        "official_to_reference": _shares(off_ok), "ours_to_reference": _shares(ours_ok),
        "ref_agree_exact": _shares(d == 0) if len(d) else float("nan"),
        "ref_agree_1px": _shares(d <= 1) if len(d) else float("nan"),
        "ref_max_px": int(d.max()) if len(d) else -1,
        "ori_to_ref_holes": _shares(ori_to_ref[0, 0] < 0),
        "ref_to_que_holes": float(((ref_to_que[0, 0] < 0) & ours_covered).sum() / max(1, int(ours_covered.sum()))),
        "collided_ref_px": _shares(hits > 1),
    }


def counts_difference(counts_a: torch.Tensor, counts_b: torch.Tensor) -> float:
    """Mean share of a query patch's pixels put in a different bin (reference patch or invalid): Σ|a−b| / 2P²."""
    a, b = counts_a.long(), counts_b.long()
    return float((a - b).abs().sum(-1).double().mean() / (2 * a.sum(-1).double().mean()))
