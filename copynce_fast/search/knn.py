"""Descriptor k-nearest-neighbour search: faiss when importable, torch matmul + top-k otherwise.

Both backends take the same arguments and return the same thing, ``(scores [N, k] float32, indices
[N, k] int64)``, rows sorted best first, as numpy arrays for numpy queries and as torch tensors (on the
queries' device) for torch queries. ``metric="ip"`` scores are inner products (cosines for L2-normalised
descriptors, larger = closer); ``metric="l2"`` scores are squared L2 distances (smaller = closer).

The one faiss index builder (:func:`faiss_index`: flat, IVF-Flat, IVF-PQ) and the IVF parameter rules
(:func:`ivf_params`) live here; saved indexes (:mod:`copynce_fast.search.index`) use them too.

``k`` larger than the database raises ValueError rather than silently returning fewer columns: callers
build ``[N, k]`` arrays and per-query prediction lists from it, and a changed width would surface later as
a confusing shape error.

A kNN result becomes ``(query_id, reference_id, score)`` predictions in :mod:`copynce_fast.search.predictions`.
"""
from __future__ import annotations

import math
from typing import Literal, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

_FAISS_GPU_MAX_K = 2048  # faiss GPU brute-force and IVF search limit on k


def faiss_available() -> bool:
    """True when ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use (0 for faiss-cpu or no faiss)."""
    if not faiss_available():
        return 0
    import faiss
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_2d(name: str, x: ArrayLike) -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, D], got shape {tuple(x.shape)}")
    if not (x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
            if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must be floating point, got {x.dtype}")


def _default_nlist(m: int) -> int:
    return max(1, min(m // 39, int(4 * math.sqrt(m))))  # faiss wants >= 39 training points per list


def _default_pq_m(d: int) -> int:
    # 8-dim sub-vectors (64 bytes for 512-d), the largest divisor of d not above d // 8 otherwise
    return next(m for m in range(max(1, d // 8), 0, -1) if d % m == 0)


def ivf_params(m: int, d: int, index: str, nlist: int | None, nprobe: int | None, pq_m: int | None
               ) -> tuple[int | None, int | None, int | None]:
    """``(nlist, nprobe, pq_m)`` of an ``index`` ("flat", "ivf", "ivfpq") over ``m`` rows of dimension ``d``:
    defaults filled in (``nlist = min(M // 39, 4·sqrt(M))``, ``nprobe = min(nlist, 16)``, ``pq_m`` about
    D / 8), each checked (ValueError naming it); all None for "flat", ``pq_m`` None for "ivf"."""
    if index == "flat":
        return None, None, None
    nlist = _default_nlist(m) if nlist is None else _positive_int("nlist", nlist)
    if nlist > m:
        raise ValueError(f"nlist must be in [1, {m}] (database rows), got {nlist}")
    nprobe = min(nlist, 16) if nprobe is None else _positive_int("nprobe", nprobe)
    if nprobe > nlist:
        raise ValueError(f"nprobe must be in [1, nlist={nlist}], got {nprobe}")
    if index != "ivfpq":
        return nlist, nprobe, None
    pq_m = _default_pq_m(d) if pq_m is None else _positive_int("pq_m", pq_m)
    if d % pq_m:
        raise ValueError(f"pq_m must divide the dimension D={d}, got {pq_m}")
    if m < 256:
        raise ValueError(f"ivfpq needs at least 256 database rows to train its 8-bit codebooks, got {m}")
    return nlist, nprobe, pq_m


def faiss_index(xb: np.ndarray, index: str = "flat", metric: str = "ip", nlist: int | None = None,
                pq_m: int | None = None, seed: int = 0, gpu: bool = False):
    """The one faiss index builder: flat, IVF-Flat ("ivf") or IVF-PQ ("ivfpq", 8-bit codes) over ``xb``.

    Args:
        xb: (M, D) float32 C-contiguous database rows, added to the index.
        metric: "ip" (inner product) or "l2".
        nlist, pq_m: IVF lists and PQ sub-quantisers (see :func:`ivf_params`).
        seed: seed of the training sample: IVF indexes train on at most 256·nlist rows (more adds little to
            k-means).
        gpu: build on all faiss GPUs (before training, so k-means runs there too).
    """
    import faiss

    d = xb.shape[1]
    quantizer = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    if index == "flat":
        idx = quantizer
    elif index == "ivf":
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
    else:
        idx = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, faiss_metric)
    if gpu:
        idx = faiss.index_cpu_to_all_gpus(idx)
    if index != "flat":
        train = xb
        if xb.shape[0] > 256 * nlist:
            rows = np.random.default_rng(seed).choice(xb.shape[0], 256 * nlist, replace=False)
            train = xb[np.sort(rows)]
        idx.train(train)  # faiss' Python wrapper keeps `quantizer` alive as long as `idx`
    idx.add(xb)
    return idx


def _resolve_backend(backend: str, index: str, queries: ArrayLike, gpu: bool | None, k: int) -> str:
    on_cuda = isinstance(queries, torch.Tensor) and queries.is_cuda
    if backend == "auto":
        if index != "flat":
            return "faiss"
        if not faiss_available():
            return "torch"
        if on_cuda or gpu:  # CUDA inputs: faiss only when it has GPUs, else torch stays on the device
            return "faiss" if faiss_gpu_count() > 0 and k <= _FAISS_GPU_MAX_K else "torch"
        return "faiss"
    if backend == "faiss" and not faiss_available():
        raise ValueError("backend='faiss' but faiss is not installed (pip install faiss-cpu or faiss-gpu-cu12)")
    if backend == "torch" and index != "flat":
        raise ValueError(f"index={index!r} needs backend='faiss'; the torch backend is exact ('flat') only")
    return backend


def knn(queries: ArrayLike, database: ArrayLike, k: int, *, metric: Literal["ip", "l2"] = "ip",
        backend: Literal["auto", "faiss", "torch"] = "auto", index: Literal["flat", "ivf", "ivfpq"] = "flat",
        nlist: int | None = None, nprobe: int | None = None, pq_m: int | None = None,
        gpu: bool | None = None, batch_size: int | None = None, seed: int = 0):
    """The ``k`` nearest database rows of every query.

    Args:
        queries: (N, D) float numpy array or torch tensor (any float dtype; faiss gets float32).
        database: (M, D), same kind as ``queries``.
        k: neighbours per query, 1 <= k <= M.
        metric: "ip" (inner product, larger is closer) or "l2" (squared distance, smaller is closer).
        backend: "faiss", "torch" or "auto": ``index != "flat"`` needs faiss; CUDA tensors go to faiss
            only when faiss has GPU support (else torch on the tensors' device); CPU inputs use faiss
            when importable, torch otherwise.
        index: "flat" (exact), "ivf" (IVF-Flat) or "ivfpq" (IVF with product quantisation) -- the last two
            approximate, for large collections, trained on (a sample of up to 256·nlist rows of) the
            database.
        nlist: IVF lists; default ``min(M // 39, 4·sqrt(M))``.
        nprobe: lists visited per query; default ``min(nlist, 16)``. ``nprobe == nlist`` is exact for "ivf".
        pq_m: PQ sub-quantisers (must divide D, 8 bits each); default about D / 8.
        gpu: faiss only: True = use faiss GPUs (ValueError if it has none), False = CPU, None = GPU
            when the inputs are CUDA tensors and faiss has GPUs.
        batch_size: torch only: queries per chunk, bounding the (batch, M) similarity block; default
            keeps it near 2**28 elements (1 GiB fp32).
        seed: seed of the IVF training sample.

    Returns:
        ``(scores, indices)``: (N, k) float32 and (N, k) int64, best first; numpy for numpy queries,
        torch on the queries' device for torch queries. An IVF search that finds fewer than ``k``
        candidates pads with index -1 (score -inf for "ip", +inf for "l2").
    """
    _check_2d("queries", queries)
    _check_2d("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries and database dims differ: {queries.shape[1]} vs {database.shape[1]}")
    if isinstance(queries, torch.Tensor) != isinstance(database, torch.Tensor):
        raise ValueError("queries and database must both be numpy arrays or both torch tensors")
    n, d = queries.shape
    m = database.shape[0]
    k = _positive_int("k", k)
    if k > m:
        raise ValueError(f"k={k} exceeds the database size M={m}")
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    if index not in ("flat", "ivf", "ivfpq"):
        raise ValueError(f"index must be 'flat', 'ivf' or 'ivfpq', got {index!r}")
    if gpu not in (None, True, False):
        raise ValueError(f"gpu must be None, True or False, got {gpu!r}")
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    nlist, nprobe, pq_m = ivf_params(m, d, index, nlist, nprobe, pq_m)
    if gpu and faiss_gpu_count() == 0 and backend != "torch":
        raise ValueError("gpu=True but faiss has no GPU support here (install faiss-gpu-cu12)")

    which = _resolve_backend(backend, index, queries, gpu, k)
    if which == "torch":
        return _knn_torch(queries, database, k, metric, batch_size)
    scores, indices = _knn_faiss(_to_numpy_f32(queries), _to_numpy_f32(database), k, metric, index, nlist,
                                 nprobe, pq_m, gpu, isinstance(queries, torch.Tensor) and queries.is_cuda, seed)
    if isinstance(queries, torch.Tensor):
        return (torch.from_numpy(scores).to(queries.device), torch.from_numpy(indices).to(queries.device))
    return scores, indices


def _to_numpy_f32(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _knn_torch(queries: ArrayLike, database: ArrayLike, k: int, metric: str, batch_size: int | None):
    as_numpy = isinstance(queries, np.ndarray)
    q = torch.from_numpy(queries) if as_numpy else queries
    db = torch.from_numpy(database) if as_numpy else database.to(q.device)
    if q.device.type == "cpu" and q.dtype in (torch.float16, torch.bfloat16):
        q, db = q.float(), db.float()  # CPU half matmul is slow and not always available
    db = db.to(q.dtype)
    m = db.shape[0]
    if batch_size is None:
        batch_size = max(1, min(q.shape[0], 2**28 // m))
    db_sq = (db.float() ** 2).sum(1) if metric == "l2" else None
    scores = torch.empty(q.shape[0], k, dtype=torch.float32, device=q.device)
    indices = torch.empty(q.shape[0], k, dtype=torch.int64, device=q.device)
    for start in range(0, q.shape[0], batch_size):
        chunk = q[start:start + batch_size]
        sim = (chunk @ db.T).float()  # fp32 for the top-k and the l2 expansion, whatever the input dtype
        if metric == "l2":
            sim = (chunk.float() ** 2).sum(1, keepdim=True) - 2 * sim + db_sq
            top = torch.topk(sim, k, dim=1, largest=False, sorted=True)
        else:
            top = torch.topk(sim, k, dim=1, largest=True, sorted=True)
        scores[start:start + batch_size] = top.values
        indices[start:start + batch_size] = top.indices
        del sim
    if as_numpy:
        return scores.numpy(), indices.numpy()
    return scores, indices


def _knn_faiss(xq: np.ndarray, xb: np.ndarray, k: int, metric: str, index: str, nlist, nprobe, pq_m,
               gpu: bool | None, inputs_on_cuda: bool, seed: int):
    import faiss

    use_gpu = gpu if gpu is not None else (inputs_on_cuda and faiss_gpu_count() > 0)
    if use_gpu and k > _FAISS_GPU_MAX_K:
        raise ValueError(f"k={k} exceeds the faiss GPU limit {_FAISS_GPU_MAX_K}; use backend='torch'")
    idx = faiss_index(xb, index, metric, nlist, pq_m, seed, gpu=bool(use_gpu))
    if index != "flat":
        space = faiss.GpuParameterSpace() if use_gpu else faiss.ParameterSpace()
        space.set_index_parameter(idx, "nprobe", nprobe)
    scores, indices = idx.search(xq, k)
    return scores.astype(np.float32, copy=False), indices.astype(np.int64, copy=False)
