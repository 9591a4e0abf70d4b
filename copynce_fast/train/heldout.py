"""Held-out evaluation for small runs: find fresh edited copies of the training originals among them.

References are the originals (plain resize, as DISC21's reference set); queries are new edited copies of every
original, drawn with a seed the training never used, plus as many distractor queries made from images that are
not in the reference set (they have no match, as most DISC21 queries). Descriptors -> exact kNN -> μAP / RP90.
"""
from __future__ import annotations

import numpy as np
import torch

from copynce_fast.config import Config
from copynce_fast.data.batch import normalise_images
from copynce_fast.data.plan_sampler import PairKey
from copynce_fast.data.torch_loader import CopyPairDataset
from copynce_fast.data.sources import ImageSource, synthetic_source
from copynce_fast.eval.metrics import Metrics, evaluate
from copynce_fast.search.knn import knn
from copynce_fast.search.predictions import knn_to_predictions
from copynce_fast.train.data import augment_config, train_source

__all__ = ["heldout_eval", "HELDOUT_EPOCH"]

HELDOUT_EPOCH = 1_000_003  # plans are seeded by (seed, epoch, index): training never reaches this epoch


@torch.no_grad()
def _descriptors(model, images: list[torch.Tensor], device, batch: int = 64) -> torch.Tensor:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out = []
    for k in range(0, len(images), batch):
        x = normalise_images(torch.stack(images[k:k + batch]), device, dtype)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(x)["feat"].float())
    return torch.cat(out)


def _render(source: ImageSource, cfg: Config, seed: int, indices) -> list[dict]:
    ds = CopyPairDataset(source, augment_config(cfg), seed=seed)
    return [ds[PairKey(int(i), HELDOUT_EPOCH)] for i in indices]


def heldout_eval(model: torch.nn.Module, cfg: Config, device: torch.device, *, distractors: int | None = None,
                 k: int = 10) -> Metrics:
    """μAP / RP90 / recall@k of ``model`` on held-out copies of ``cfg``'s training originals."""
    source = train_source(cfg)
    n = len(source)
    seed = cfg.run.seed + 7919
    pairs = _render(source, cfg, seed, range(n))
    n_distract = n if distractors is None else distractors
    others = synthetic_source(n_distract, seed=cfg.run.seed + 104729) if n_distract else None
    fakes = _render(others, cfg, seed, range(n_distract)) if others is not None else []
    was_training = model.training
    model.eval()
    try:
        refs = _descriptors(model, [p["reference"] for p in pairs], device)
        queries = _descriptors(model, [p["query"] for p in pairs] + [p["query"] for p in fakes], device)
    finally:
        model.train(was_training)
    scores, idx = knn(queries, refs, min(k, n), backend="torch")
    query_ids = [f"q{i}" for i in range(n)] + [f"d{i}" for i in range(n_distract)]
    ref_ids = [f"r{i}" for i in range(n)]
    preds = knn_to_predictions(scores, idx, np.array(query_ids), np.array(ref_ids))
    gt = {f"q{i}": [f"r{i}"] for i in range(n)} | {f"d{i}": [] for i in range(n_distract)}
    return evaluate(preds, gt, ks=(1, k))
