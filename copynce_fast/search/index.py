"""A saved search index over reference descriptors: build once, search many query sets.

On disk an index is a directory::

    <dir>/meta.json      {"format": "copynce-fast-index", "version": 1, "type": "flat"|"ivf"|"ivfpq",
                          "backend": "faiss"|"torch", "metric": "ip", "dim": D, "count": M,
                          "nlist": int|null, "nprobe": int|null, "pq_m": int|null, "model": str,
                          "img_size": int, "features": "<source feature path>"}
    <dir>/ids.npy        (M,) unicode reference ids, row i of the index is ids[i] (np.load, no pickle)
    <dir>/index.faiss    faiss.write_index output (backend "faiss")
    <dir>/features.npy   (M, D) float32 descriptors (backend "torch": exact matmul + top-k at search time)

Scores are inner products (cosines for the L2-normalised descriptors), larger = closer. "flat" is exact;
"ivf" / "ivfpq" are approximate (IVF-Flat / IVF-PQ, trained on up to 256·nlist references), searched with
``nprobe`` lists (default ``min(nlist, 16)``, overridable at search time). The index is built by the
package's one faiss builder, :func:`copynce_fast.search.knn.faiss_index`, with the same parameter rules
(:func:`~copynce_fast.search.knn.ivf_params`). Exact search without a saved index is
:func:`copynce_fast.search.knn.knn`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from copynce_fast.search.features import Features
from copynce_fast.search.knn import faiss_available, faiss_gpu_count, faiss_index, ivf_params, knn

FORMAT = "copynce-fast-index"
VERSION = 1
TYPES = ("flat", "ivf", "ivfpq")


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def build_index(features: Features, out_dir: str | Path, *, kind: str = "flat", backend: str = "auto",
                nlist: int | None = None, nprobe: int | None = None, pq_m: int | None = None, seed: int = 0,
                source: str = "") -> Path:
    """Build and save an index over ``features`` (the references).

    Args:
        features: reference descriptors (M, D) with ids.
        out_dir: index directory (created; existing files are replaced).
        kind: "flat" (exact), "ivf" or "ivfpq" (approximate, faiss only).
        backend: "faiss", "torch" (flat only: stores the descriptors) or "auto" (faiss when installed).
        nlist, nprobe, pq_m: IVF lists (default ``min(M // 39, 4·sqrt(M))``), lists visited per query
            (default ``min(nlist, 16)``), PQ sub-quantisers (default about D / 8; must divide D).
        seed: seed of the IVF training sample.
        source: recorded in meta.json (where the features came from).

    Returns:
        The index directory.

    Raises:
        ValueError: bad arguments (named), e.g. ivf without faiss, nlist > M, pq_m not dividing D.
    """
    if kind not in TYPES:
        raise ValueError(f"kind must be one of {TYPES}, got {kind!r}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be auto, faiss or torch, got {backend!r}")
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if backend == "faiss" and not faiss_available():
        raise ValueError("backend 'faiss': faiss is not installed (pip install faiss-cpu)")
    if backend == "torch" and kind != "flat":
        raise ValueError(f"kind {kind!r} needs faiss; the torch backend is exact (flat) only")
    xb = _f32(features.features)
    m, d = xb.shape
    if m == 0:
        raise ValueError("features: the reference features are empty")
    nlist, nprobe, pq_m = ivf_params(m, d, kind, nlist, nprobe, pq_m)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("index.faiss", "features.npy"):
        (out / stale).unlink(missing_ok=True)
    np.save(out / "ids.npy", np.asarray(features.ids).astype(str), allow_pickle=False)
    if backend == "faiss":
        import faiss

        faiss.write_index(faiss_index(xb, kind, "ip", nlist, pq_m, seed), str(out / "index.faiss"))
    else:
        np.save(out / "features.npy", xb, allow_pickle=False)
    meta = {"format": FORMAT, "version": VERSION, "type": kind, "backend": backend, "metric": "ip", "dim": d,
            "count": m, "nlist": nlist, "nprobe": nprobe, "pq_m": pq_m, "model": features.meta.get("model", ""),
            "img_size": features.meta.get("img_size"), "features": str(source)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


@dataclass
class SearchIndex:
    """A loaded index: ``ids`` (M,) reference ids, ``meta`` the meta.json dict."""

    ids: np.ndarray
    meta: dict
    _index: object = None  # faiss index
    _features: np.ndarray | None = None  # torch backend

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None, use_gpu: bool | None = None,
               device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` references of each query: ``(scores (N, k) float32, rows (N, k) int64)``, best first.

        ``rows`` index :attr:`ids`; an IVF search that finds fewer than ``k`` candidates pads with -1.
        ``use_gpu``: faiss GPUs (None = when available). ``device``: where a torch-backend index computes
        (default CPU). Raises ValueError for a bad ``k`` or dimension.
        """
        xq = _f32(queries)
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise ValueError(f"query descriptors have shape {xq.shape}, the index holds dim {self.dim}")
        m = len(self.ids)
        if not 1 <= k <= m:
            raise ValueError(f"k must be in [1, {m}] (number of references), got {k}")
        if self._features is not None:
            if device is None or torch.device(device).type == "cpu":
                return knn(xq, self._features, k, metric="ip", backend="torch")
            scores, rows = knn(torch.from_numpy(xq).to(device), torch.from_numpy(self._features).to(device), k,
                               metric="ip", backend="torch")
            return scores.cpu().numpy(), rows.cpu().numpy()
        import faiss

        index = self._index
        if self.meta["type"] != "flat":
            nprobe = nprobe or self.meta["nprobe"]
            if not 1 <= nprobe <= self.meta["nlist"]:
                raise ValueError(f"nprobe must be in [1, nlist={self.meta['nlist']}], got {nprobe}")
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", int(nprobe))
        if (use_gpu is None or use_gpu) and faiss_gpu_count() > 0 and k <= 2048:
            index = faiss.index_cpu_to_all_gpus(index)
        elif use_gpu:
            raise ValueError("use_gpu: faiss has no GPU support here")
        scores, rows = index.search(xq, k)
        return scores.astype(np.float32, copy=False), rows.astype(np.int64, copy=False)


def load_index(directory: str | Path) -> SearchIndex:
    """Read an index directory written by :func:`build_index`.

    Raises:
        ValueError: not an index directory, or files that disagree with meta.json.
    """
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"directory {directory}: no meta.json, not an index directory (see build_index)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"directory {directory}: meta.json is not a {FORMAT} file")
    ids = np.load(directory / "ids.npy", allow_pickle=False)
    if meta["backend"] == "torch":
        feats = np.load(directory / "features.npy", allow_pickle=False)
        if feats.shape != (len(ids), meta["dim"]):
            raise ValueError(f"directory {directory}: features.npy {feats.shape} disagrees with meta.json")
        return SearchIndex(ids=ids, meta=meta, _features=feats)
    if not faiss_available():
        raise ValueError(f"directory {directory}: a faiss index, but faiss is not installed (pip install faiss-cpu)")
    import faiss

    index = faiss.read_index(str(directory / "index.faiss"))
    if index.ntotal != len(ids) or index.d != meta["dim"]:
        raise ValueError(f"directory {directory}: index.faiss holds {index.ntotal}×{index.d}, meta.json says "
                         f"{len(ids)}×{meta['dim']}")
    return SearchIndex(ids=ids, meta=meta, _index=index)
