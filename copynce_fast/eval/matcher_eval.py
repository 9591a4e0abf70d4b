"""Rescore candidate (query, reference) pairs with the matcher, encoding every image (view) once.

The matcher is a shared encoder followed by a fusion transformer on the concatenated tokens
(``copynce_fast.models.matcher``). The encoder output of an image does not depend on its partner, so:

1. pairs are sorted by query and cut into chunks of ``chunk_pairs``;
2. the unique images of a chunk are decoded (``DataLoader`` workers), resized to S×S and encoded once --
   with local verification, every one of their views (26 per query, 10 per reference, see
   :mod:`copynce_fast.eval.local_verification`);
3. only the fusion + classification head runs per pair (per pair-view combination: 35 with local
   verification), in batches of ``batch_size``;
4. score = sigmoid(logit); with local verification the maximum over the 35 combinations (sigmoid is
   monotone, so it is the sigmoid of the maximum logit).

With DISC21's top-10 candidates per query this encodes about 1.1 images per pair instead of 2 (plain) and
about 36 views per new pair instead of 70 (local verification). Encoder tokens are cached on the device for one
chunk only (about ``chunk_pairs`` × 150 KB for ViT-S at 224 in bf16).

Pairs whose query or reference cannot be decoded get a NaN score and are listed in ``failed``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from copynce_fast.data.decode import BadImage
from copynce_fast.eval.local_verification import N_QUERY_VIEWS, PAIR_VIEWS, render_views
from copynce_fast.inference.images import decode_image, normalize, preprocess
from copynce_fast.models import CopyMatcher
from copynce_fast.models.loading import LoadedModel
from copynce_fast.utils.device import autocast


def encode(matcher: CopyMatcher, images: Tensor) -> Tensor:
    """Encoder tokens of normalised images ``[B, 3, S, S]`` -> ``[B, 1+L, C]`` (CLS first, no norm)."""
    return matcher.encoder.forward_tokens(images)[0]


def fuse_logits(matcher: CopyMatcher, query_tokens: Tensor, reference_tokens: Tensor) -> Tensor:
    """The matcher's logit from cached encoder tokens: ``[B, 1+Lq, C]``, ``[B, 1+Lr, C]`` -> ``[B]`` fp32.

    Equals ``matcher(query, reference)["logit"]`` for the images the tokens were encoded from (tested).
    """
    fused = matcher.fusion(torch.cat([query_tokens, reference_tokens], dim=1))
    return matcher.cls_head(fused[:, 0])


class _ViewDataset(Dataset):
    """``loads[i] = (path, side)`` -> ``(i, uint8 [V, 3, S, S])`` or ``(i, reason)``; V = 1 without local
    verification, else 26 (query) / 10 (reference)."""

    def __init__(self, loads: Sequence[tuple[Path, str]], size: int, local_verification: bool):
        self.loads = list(loads)
        self.size = size
        self.lv = local_verification

    def __len__(self) -> int:
        return len(self.loads)

    def __getitem__(self, i: int):
        path, side = self.loads[i]
        try:
            img = decode_image(path)
        except BadImage as e:
            return i, str(e)
        views = render_views(img, side) if self.lv else [img]
        return i, torch.stack([preprocess(v, self.size) for v in views])


def _collate(batch):
    return batch  # views differ in count between sides: the main process concatenates them


@dataclass
class RescoreResult:
    """``scores`` (P,) float64 in the input pair order (NaN where an image failed); ``failed``: (path,
    reason) of undecodable images; counters of the work done."""

    scores: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    encoded_views: int = 0
    fusions: int = 0


def _chunks(query_ids: Sequence[str], chunk_pairs: int) -> list[np.ndarray]:
    order = np.argsort(np.asarray(query_ids, dtype=str), kind="stable")
    return [order[i:i + chunk_pairs] for i in range(0, len(order), chunk_pairs)]


def rescore_pairs(loaded: LoadedModel, query_ids: Sequence[str], reference_ids: Sequence[str],
                  query_paths: Mapping[str, Path], reference_paths: Mapping[str, Path], *,
                  local_verification: bool = False, batch_size: int = 64, num_workers: int = 4, amp: str = "bf16",
                  chunk_pairs: int = 1024, progress: bool = True) -> RescoreResult:
    """Copy probabilities of (query, reference) pairs with the matcher (module docstring).

    Args:
        loaded: a matcher from :func:`copynce_fast.models.loading.load_model`.
        query_ids, reference_ids: (P,) the pairs.
        query_paths, reference_paths: id -> image file; every id of the pairs must be present.
        local_verification: score with the 35 local-crop combinations (REFERENCE §7.4).
        batch_size: images per encoder pass and pairs (pair-view combinations) per fusion pass.
        num_workers: decoding worker processes.
        amp: "bf16" autocast on CUDA, or "none".
        chunk_pairs: pairs whose images are encoded and cached together.
        progress: tqdm progress bar (pairs).

    Returns:
        :class:`RescoreResult`.

    Raises:
        ValueError: not a matcher, mismatched lengths, ids without a path (named).
    """
    if not isinstance(loaded.model, CopyMatcher):
        raise ValueError(f"rescoring needs a matcher model, got a {loaded.kind}")
    if len(query_ids) != len(reference_ids):
        raise ValueError(f"query_ids ({len(query_ids)}) and reference_ids ({len(reference_ids)}) differ in length")
    if batch_size < 1 or chunk_pairs < 1 or num_workers < 0:
        raise ValueError(f"bad settings: batch_size={batch_size}, chunk_pairs={chunk_pairs}, "
                         f"num_workers={num_workers}")
    for side, ids, paths in (("query", query_ids, query_paths), ("reference", reference_ids, reference_paths)):
        missing = sorted({i for i in ids if i not in paths})
        if missing:
            raise ValueError(f"{len(missing)} {side} id(s) have no image, e.g. {', '.join(map(str, missing[:3]))}")
    matcher: CopyMatcher = loaded.model
    device = loaded.device
    q_ids, r_ids = np.asarray(query_ids, dtype=str), np.asarray(reference_ids, dtype=str)
    result = RescoreResult(scores=np.full(len(q_ids), np.nan))
    if len(q_ids) == 0:
        return result

    # one load per unique image per chunk, in chunk order
    chunks = _chunks(q_ids, chunk_pairs)
    loads: list[tuple[Path, str]] = []
    load_keys: list[tuple[int, str, str]] = []
    chunk_end: list[int] = []  # number of loads once chunk c is fully listed
    for c, rows in enumerate(chunks):
        for side, ids, paths in (("query", q_ids, query_paths), ("reference", r_ids, reference_paths)):
            for i in dict.fromkeys(ids[rows].tolist()):
                loads.append((Path(paths[i]), side))
                load_keys.append((c, side, i))
        chunk_end.append(len(loads))
    v_max = N_QUERY_VIEWS if local_verification else 1
    loader = DataLoader(_ViewDataset(loads, loaded.img_size, local_verification),
                        batch_size=max(1, batch_size // v_max), shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, prefetch_factor=4 if num_workers > 0 else None)
    combos = PAIR_VIEWS if local_verification else ((0, 0),)
    q_view = torch.tensor([a for a, _ in combos], device=device)
    r_view = torch.tensor([b for _, b in combos], device=device)

    cache: dict[tuple[int, str, str], Tensor] = {}
    bad: set[tuple[str, str]] = set()
    n_loaded, next_chunk = 0, 0
    bar = tqdm(total=len(q_ids), unit="pair", desc="rescore", disable=not progress, dynamic_ncols=True)
    with torch.inference_mode():
        for batch in loader:
            ok = [(i, x) for i, x in batch if isinstance(x, Tensor)]
            for i, reason in ((i, x) for i, x in batch if not isinstance(x, Tensor)):
                result.failed.append((str(loads[i][0]), reason))
                bad.add(load_keys[i][1:])
            if ok:
                views = normalize(torch.cat([x for _, x in ok]), device)
                with autocast(device, amp):
                    tokens = torch.cat([encode(matcher, views[s:s + batch_size])
                                        for s in range(0, len(views), batch_size)])
                result.encoded_views += len(views)
                start = 0
                for i, x in ok:
                    cache[load_keys[i]] = tokens[start:start + len(x)]
                    start += len(x)
            n_loaded += len(batch)
            while next_chunk < len(chunks) and chunk_end[next_chunk] <= n_loaded:
                rows = chunks[next_chunk]
                _score_chunk(matcher, next_chunk, rows, q_ids, r_ids, cache, bad, q_view, r_view, batch_size,
                             device, amp, result)
                for key in [k for k in cache if k[0] == next_chunk]:
                    del cache[key]
                bar.update(len(rows))
                next_chunk += 1
    bar.close()
    return result


def _score_chunk(matcher, c, rows, q_ids, r_ids, cache, bad, q_view, r_view, batch_size, device, amp,
                 result: RescoreResult) -> None:
    """Fusion passes for the pairs ``rows`` of chunk ``c``; fills ``result.scores[rows]``."""
    good = np.asarray([row for row in rows
                       if ("query", q_ids[row]) not in bad and ("reference", r_ids[row]) not in bad], dtype=np.int64)
    if len(good) == 0:
        return
    # every image of a side has the same number of views, so view v of the k-th image is row k*V + v
    idx = []
    stacks = []
    for side, ids, view in (("query", q_ids, q_view), ("reference", r_ids, r_view)):
        keys = list(dict.fromkeys(ids[good].tolist()))
        pos = {k: n for n, k in enumerate(keys)}
        tokens = torch.cat([cache[(c, side, k)] for k in keys])
        n_views = tokens.shape[0] // len(keys)
        image = torch.as_tensor([pos[i] for i in ids[good].tolist()], device=device)
        idx.append((image[:, None] * n_views + view[None, :]).reshape(-1))  # (pairs × combinations)
        stacks.append(tokens)
    n_combo = len(q_view)
    logits = torch.empty(len(good) * n_combo, dtype=torch.float32, device=device)
    for s in range(0, len(logits), batch_size):
        qt = stacks[0][idx[0][s:s + batch_size]]
        rt = stacks[1][idx[1][s:s + batch_size]]
        with autocast(device, amp):
            logits[s:s + len(qt)] = fuse_logits(matcher, qt, rt).float()
    result.fusions += len(logits)
    best = torch.sigmoid(logits.view(len(good), n_combo).amax(dim=1))
    result.scores[good] = best.double().cpu().numpy()  # host sync once per chunk
