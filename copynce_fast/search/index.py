"""A saved search index over reference descriptors: build once, search many query sets.

On disk an index is a directory::

    <dir>/meta.json      {"format": "copynce-fast-index", "version": 1, "type": "flat"|"ivf"|"ivfpq",
                          "backend": "faiss"|"torch", "metric": "ip", "dim": d, "count": M,
                          "nlist": int|null, "nprobe": int|null, "pq_m": int|null, "model": str,
                          "img_size": int, "features": "<source feature path>",
                          "whitening": null | {"file": "whitening.npz", "digest": str, "dim_in": D}}
    <dir>/ids.npy        (M,) unicode reference ids, row i of the index is ids[i] (np.load, no pickle)
    <dir>/index.faiss    faiss.write_index output (backend "faiss")
    <dir>/features.npy   (M, d) float32 descriptors (backend "torch": exact matmul + top-k at search time)
    <dir>/whitening.npz  the PCA-whitening (search/whitening.py) when the index was built with one

Scores are inner products (cosines for the L2-normalised descriptors), larger = closer. "flat" is exact;
"ivf" / "ivfpq" are approximate (IVF-Flat / IVF-PQ, trained on up to 256·nlist references), searched with
``nprobe`` lists (default ``min(nlist, 16)``, overridable at search time). The index is built by the
package's one faiss builder, :func:`copynce_fast.search.knn.faiss_index`, with the same parameter rules
(:func:`~copynce_fast.search.knn.ivf_params`). Exact search without a saved index is
:func:`copynce_fast.search.knn.knn`.

**Whitening.** An index built with a :class:`~copynce_fast.search.whitening.Whitening` stores it and holds
whitened ``d``-dim references; :meth:`SearchIndex.search` whitens raw ``D``-dim queries itself (unless told
they already are), so callers always pass the model's descriptors. Reference features already whitened by
the same transform (their meta names its digest, as ``extract --whiten`` writes) are used as they are.

Memory per reference: flat / IVF-Flat ``4·d`` bytes, IVF-PQ ``pq_m`` bytes (8-bit codes), plus 8 bytes of id
in the inverted lists of IVF indexes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from copynce_fast.search.features import Features
from copynce_fast.search.knn import faiss_available, faiss_gpu_count, faiss_index, ivf_params, knn
from copynce_fast.search.whitening import Whitening, load_whitening

FORMAT = "copynce-fast-index"
VERSION = 1
TYPES = ("flat", "ivf", "ivfpq")
WHITENING_FILE = "whitening.npz"


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def whitened_references(features: Features, whitening: Whitening | None) -> np.ndarray:
    """(M, d) float32 references in the index's space: whitened unless ``features.meta`` says they already
    are (by this transform; another transform is a ValueError naming ``whitening``)."""
    done = features.meta.get("whitening")
    if whitening is None:
        if done:
            raise ValueError(f"whitening: the features were whitened at extraction (digest {done}); pass that "
                             f"whitening so queries are whitened alike")
        return _f32(features.features)
    if done:
        if done != whitening.digest:
            raise ValueError(f"whitening: the features were whitened by another transform (digest {done}, this "
                             f"one is {whitening.digest})")
        if features.dim != whitening.dim_out:
            raise ValueError(f"features: {features.dim}-d, the whitening outputs {whitening.dim_out}-d")
        return _f32(features.features)
    if features.dim != whitening.dim_in:
        raise ValueError(f"whitening: expects {whitening.dim_in}-d descriptors, the features are {features.dim}-d")
    return _f32(whitening.apply(_f32(features.features)))


def make_index(features: Features, *, kind: str = "flat", backend: str = "auto", nlist: int | None = None,
               nprobe: int | None = None, pq_m: int | None = None, seed: int = 0, source: str = "",
               whitening: Whitening | None = None) -> "SearchIndex":
    """Build an index over ``features`` (the references) in memory; :meth:`SearchIndex.save` writes it.

    Args:
        features: reference descriptors (M, D) with ids.
        kind: "flat" (exact), "ivf" or "ivfpq" (approximate, faiss only).
        backend: "faiss", "torch" (flat only: keeps the descriptors) or "auto" (faiss when installed).
        nlist, nprobe, pq_m: IVF lists (default ``min(M // 39, 4·sqrt(M))``), lists visited per query
            (default ``min(nlist, 16)``), PQ sub-quantisers (default about d / 8; must divide d).
        seed: seed of the IVF training sample.
        source: recorded in the metadata (where the features came from).
        whitening: PCA-whitening applied to the references (and, at search time, to the queries).

    Raises:
        ValueError: bad arguments (named), e.g. ivf without faiss, nlist > M, pq_m not dividing d.
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
    if len(features.ids) == 0:
        raise ValueError("features: the reference features are empty")
    xb = whitened_references(features, whitening)
    m, d = xb.shape
    nlist, nprobe, pq_m = ivf_params(m, d, kind, nlist, nprobe, pq_m)
    meta = {"format": FORMAT, "version": VERSION, "type": kind, "backend": backend, "metric": "ip", "dim": d,
            "count": m, "nlist": nlist, "nprobe": nprobe, "pq_m": pq_m, "model": features.meta.get("model", ""),
            "img_size": features.meta.get("img_size"), "features": str(source),
            "whitening": None if whitening is None else {"file": WHITENING_FILE, "digest": whitening.digest,
                                                         "dim_in": whitening.dim_in}}
    ids = np.asarray(features.ids).astype(str)
    if backend == "faiss":
        return SearchIndex(ids=ids, meta=meta, _index=faiss_index(xb, kind, "ip", nlist, pq_m, seed),
                           whitening=whitening)
    return SearchIndex(ids=ids, meta=meta, _features=xb, whitening=whitening)


def build_index(features: Features, out_dir: str | Path, *, kind: str = "flat", backend: str = "auto",
                nlist: int | None = None, nprobe: int | None = None, pq_m: int | None = None, seed: int = 0,
                source: str = "", whitening: Whitening | None = None) -> Path:
    """:func:`make_index` and save it to ``out_dir`` (created; existing index files are replaced).

    Returns:
        The index directory.
    """
    return make_index(features, kind=kind, backend=backend, nlist=nlist, nprobe=nprobe, pq_m=pq_m, seed=seed,
                      source=source, whitening=whitening).save(out_dir)


@dataclass
class SearchIndex:
    """An index: ``ids`` (M,) reference ids, ``meta`` the meta.json dict, ``whitening`` or None."""

    ids: np.ndarray
    meta: dict
    _index: object = None  # faiss index
    _features: np.ndarray | None = None  # torch backend
    whitening: Whitening | None = None

    @property
    def dim(self) -> int:
        """Dimension of the stored vectors (the whitening's output when there is one)."""
        return int(self.meta["dim"])

    @property
    def query_dim(self) -> int:
        """Dimension of the raw queries :meth:`search` takes (the whitening's input when there is one)."""
        return self.whitening.dim_in if self.whitening is not None else self.dim

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, out_dir: str | Path) -> Path:
        """Write the directory of the module docstring; returns it."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("index.faiss", "features.npy", WHITENING_FILE):
            (out / stale).unlink(missing_ok=True)
        np.save(out / "ids.npy", np.asarray(self.ids).astype(str), allow_pickle=False)
        if self._index is not None:
            import faiss

            faiss.write_index(self._index, str(out / "index.faiss"))
        else:
            np.save(out / "features.npy", self._features, allow_pickle=False)
        if self.whitening is not None:
            self.whitening.save(out / WHITENING_FILE)
        (out / "meta.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
        return out

    def prepare_queries(self, queries, whitened: bool = False) -> np.ndarray:
        """(N, D) raw queries -> (N, d) float32 in the index's space (whitened when the index is)."""
        xq = _f32(queries.detach().cpu().float().numpy() if isinstance(queries, torch.Tensor) else queries)
        if xq.ndim != 2:
            raise ValueError(f"queries: expected (N, D) descriptors, got shape {xq.shape}")
        if self.whitening is not None and not whitened:
            if xq.shape[1] != self.whitening.dim_in:
                raise ValueError(f"queries: {xq.shape[1]}-d, the index whitens {self.whitening.dim_in}-d "
                                 f"descriptors (already whitened? pass whitened=True)")
            return self.whitening.apply(xq)
        if xq.shape[1] != self.dim:
            raise ValueError(f"query descriptors have shape {xq.shape}, the index holds dim {self.dim}")
        return xq

    def search(self, queries, k: int, *, nprobe: int | None = None, use_gpu: bool | None = None,
               device: str | None = None, whitened: bool = False, shard_gpus: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` references of each query: ``(scores (N, k) float32, rows (N, k) int64)``, best first.

        Args:
            queries: (N, D) float raw descriptors (numpy or torch); whitened here when the index is.
            k: 1 <= k <= M.
            nprobe: IVF lists visited (default the stored one).
            use_gpu: faiss GPUs (None = when available).
            device: where a torch-backend index computes (default CPU).
            whitened: the queries are already in the index's space (whitened by the same transform).
            shard_gpus: with faiss GPUs, split the references across them (faiss ``IndexShards``) instead
                of replicating them on each: for reference sets that do not fit one GPU.

        ``rows`` index :attr:`ids`; an IVF search that finds fewer than ``k`` candidates pads with -1.
        Raises ValueError for a bad ``k`` or dimension.
        """
        xq = self.prepare_queries(queries, whitened)
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
            if shard_gpus:
                from copynce_fast.search.sharded import gpu_sharded_index

                index = gpu_sharded_index(index)
            else:
                index = faiss.index_cpu_to_all_gpus(index)  # the clone keeps the nprobe set above
        elif use_gpu:
            raise ValueError("use_gpu: faiss has no GPU support here")
        scores, rows = index.search(xq, k)
        return scores.astype(np.float32, copy=False), rows.astype(np.int64, copy=False)


def load_index(directory: str | Path) -> SearchIndex:
    """Read an index directory written by :func:`build_index` / :meth:`SearchIndex.save`.

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
    whitening = None
    if meta.get("whitening"):
        whitening = load_whitening(directory / meta["whitening"]["file"])
        if whitening.digest != meta["whitening"]["digest"] or whitening.dim_out != meta["dim"]:
            raise ValueError(f"directory {directory}: {meta['whitening']['file']} is not the whitening meta.json "
                             f"names")
    if meta["backend"] == "torch":
        feats = np.load(directory / "features.npy", allow_pickle=False)
        if feats.shape != (len(ids), meta["dim"]):
            raise ValueError(f"directory {directory}: features.npy {feats.shape} disagrees with meta.json")
        return SearchIndex(ids=ids, meta=meta, _features=feats, whitening=whitening)
    if not faiss_available():
        raise ValueError(f"directory {directory}: a faiss index, but faiss is not installed (pip install faiss-cpu)")
    import faiss

    index = faiss.read_index(str(directory / "index.faiss"))
    if index.ntotal != len(ids) or index.d != meta["dim"]:
        raise ValueError(f"directory {directory}: index.faiss holds {index.ntotal}×{index.d}, meta.json says "
                         f"{len(ids)}×{meta['dim']}")
    return SearchIndex(ids=ids, meta=meta, _index=index, whitening=whitening)
