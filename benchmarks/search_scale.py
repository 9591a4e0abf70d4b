"""The scale-out parts of ``bench_eval_search.py`` (issue 16): compact descriptors, shards, ranks.

* :func:`compact_rows`: recall vs bytes per reference for PCA-whitening (512 -> 256 -> 128) and IVF-PQ codes on
  a synthetic benchmark set (below), each against exact float32 search;
* :func:`shard_rows`: search time vs shard count (faiss ``IndexShards`` over CPU shards, or across the GPUs with
  faiss GPU support) and our exact merge (:func:`copynce_fast.search.sharded.search_shards`);
* :func:`rank_rows`: extraction images/s vs ranks (torchrun, gloo on CPU / NCCL on GPUs).

**The synthetic benchmark set** (no real descriptor collection ships with the repo, and no trained weights):
references are unit vectors with a power-law spectrum (standard deviation of direction i ∝ 1 / (i + 1), a
random rotation, a shared offset along the first direction: real descriptors have a dominant mean and a
decaying spectrum); *copy* queries are a reference plus an "edit" made of a nuisance part shaped like the data
(it moves along the dominant directions, as global colour / contrast edits do) and a small isotropic part;
*distractor* queries are fresh draws. Whitening is learned on a separate training draw. What whitening gains
on this set is a consequence of that noise model (whitening divides out exactly the dominant directions the
nuisance lives in); the compression columns (recall of the exact neighbours in the same space) are the part
that transfers. Nothing here predicts μAP on DISC21.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np


def synthetic_set(m: int, n_train: int, n_copies: int, n_distractors: int, d: int = 512, nuisance: float = 0.4,
                  isotropic: float = 0.012, seed: int = 0):
    """``(references (m, d), train (n_train, d), queries (n_copies + n_distractors, d), truth)`` float32 unit
    rows; ``truth[i]`` is the reference row query ``i`` copies, -1 for distractors (module docstring)."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    scale = 1.0 / (np.arange(d) + 1.0)
    offset = 0.5 * rotation[:, 0]

    def shaped(n):  # the data's own covariance
        return (rng.standard_normal((n, d)) * scale).astype(np.float32) @ rotation.T

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    refs, train = unit(shaped(m) + offset), unit(shaped(n_train) + offset)
    typical = float(np.linalg.norm(shaped(256) + offset, axis=1).mean())  # edits scale with the raw norm
    src = rng.choice(m, n_copies, replace=False)
    edit = nuisance * shaped(n_copies) + isotropic * rng.standard_normal((n_copies, d)).astype(np.float32)
    queries = np.concatenate([unit(refs[src] + edit / typical), unit(shaped(n_distractors) + offset)])
    return refs, train, queries, np.concatenate([src, np.full(n_distractors, -1)])


def _overlap10(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x[:10]) & set(y[:10])) / 10 for x, y in zip(a, b)]))


def compact_rows(m: int, n_queries: int, d: int = 512, nprobes=(16, 64, "all"), seed: int = 0) -> list[dict]:
    """One row per (dimension, storage, nprobe) on the synthetic set: bytes per reference (the code, plus the
    8-byte id an IVF list stores), index bytes on disk per reference, build seconds, search ms per query
    (all queries in one call), and

    * ``recall10_same``: recall@10 of exact float32 search *in the same space* (same whitening): what the
      storage alone loses (IVF probing, PQ codes, float16);
    * ``recall10_raw``: recall@10 of exact float32 search on the raw d-dim descriptors;
    * ``copy_r1`` / ``copy_r10``: copy queries whose original is ranked first / in the top 10.

    ``nprobe="all"`` visits every list: what the codes lose without the IVF probing loss. The synthetic set
    has no cluster structure (one Gaussian), the worst case for IVF probing, and whitening makes it isotropic,
    which is worse still: real descriptor collections cluster, so the probing losses here are pessimistic.
    """
    import faiss

    from copynce_fast.search.features import Features
    from copynce_fast.search.index import make_index
    from copynce_fast.search.whitening import learn_whitening

    refs, train, queries, truth = synthetic_set(m, min(m, 50_000), n_queries // 2, n_queries - n_queries // 2, d,
                                                seed=seed)
    feats = Features(np.array([str(i) for i in range(m)]), refs, {"model": "synthetic", "img_size": 0})
    copies = truth >= 0
    exact_raw = make_index(feats).search(queries, 10)[1]
    whitenings = {dim: learn_whitening(train, dim) for dim in (d // 2, d // 4)}
    exact_in = {None: exact_raw, **{dim: make_index(feats, whitening=w).search(queries, 10)[1]
                                    for dim, w in whitenings.items()}}
    configs = [(None, "float32", "flat", None), (None, "float16", "flat", None), (d // 2, "float32", "flat", None),
               (d // 4, "float32", "flat", None), (None, "-", "ivfpq", d // 8), (d // 2, "-", "ivfpq", d // 8),
               (d // 2, "-", "ivfpq", d // 16), (d // 4, "-", "ivfpq", d // 32), (d // 2, "float32", "ivf", None)]
    rows = []
    for dim, dtype, kind, pq_m in configs:
        whitening = whitenings.get(dim)
        # float16 is storage only: the rows after a float16 round trip, searched exactly
        source = feats if dtype != "float16" else Features(feats.ids, refs.astype(np.float16).astype(np.float32),
                                                           feats.meta)
        t0 = time.perf_counter()
        index = make_index(source, kind=kind, whitening=whitening, pq_m=pq_m)
        build_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index._index, f"{tmp}/i")
            disk = os.path.getsize(f"{tmp}/i") / m
        width = dim or d
        code = pq_m if kind == "ivfpq" else width * (2 if dtype == "float16" else 4)
        name = (f"PCA-w {width}" if whitening is not None else f"{width}") + \
            {"flat": f" {dtype}", "ivf": " IVF-Flat", "ivfpq": f" IVF-PQ{pq_m}"}[kind]
        for nprobe in (nprobes if kind != "flat" else (None,)):
            nprobe = index.meta["nlist"] if nprobe == "all" else nprobe
            t0 = time.perf_counter()
            got = index.search(queries, 10, nprobe=nprobe)[1]
            ms = (time.perf_counter() - t0) * 1e3 / len(queries)
            rows.append({"config": name, "bytes": code + (8 if kind != "flat" else 0), "disk_bytes": round(disk, 1),
                         "nlist": index.meta["nlist"], "nprobe": nprobe, "build_s": round(build_s, 2),
                         "ms_per_query": round(ms, 4), "recall10_same": _overlap10(got, exact_in[dim]),
                         "recall10_raw": _overlap10(got, exact_raw),
                         "copy_r1": float(np.mean(got[copies, 0] == truth[copies])),
                         "copy_r10": float(np.mean((got[copies] == truth[copies, None]).any(1)))})
    return rows


def scan_rows(m: int, d: int, n_queries: int, pq_ms=(32, 64), nlist: int = 64, nprobe: int = 8) -> list[dict]:
    """IVF-PQ code-scan rate, the number a billion-scale estimate rests on: few, long lists (M / nlist codes
    each) so that scanning dominates; ``codes_per_s = queries · nprobe · M / nlist / seconds``, and the time
    spent per query on the coarse quantiser (``nlist · d`` multiply-adds) is negligible at this nlist."""
    from copynce_fast.search.knn import faiss_index

    rng = np.random.default_rng(2)
    base = rng.standard_normal((m, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(m, n_queries, replace=False)]
    rows = []
    for pq_m in pq_ms:
        index = faiss_index(base, "ivfpq", "ip", nlist, pq_m)
        index.nprobe = nprobe
        index.search(queries[:10], 10)
        t0 = time.perf_counter()
        index.search(queries, 10)
        seconds = time.perf_counter() - t0
        scanned = n_queries * nprobe * m / nlist
        rows.append({"pq_m": pq_m, "m": m, "d": d, "nlist": nlist, "nprobe": nprobe, "queries": n_queries,
                     "seconds": round(seconds, 3), "codes_per_s": scanned / seconds,
                     "ms_per_query": round(seconds * 1e3 / n_queries, 3)})
    return rows


def shard_rows(m: int, n_queries: int, d: int, shard_counts=(1, 2, 4), k: int = 10, reps: int = 3) -> list[dict]:
    """Exact flat search over ``m`` references split in S shards: faiss IndexShards (threaded; GPUs when faiss
    has them) and our exact merge over the same shards, S = 1, 2, 4; median of ``reps`` calls."""
    import faiss

    from copynce_fast.search.knn import faiss_gpu_count
    from copynce_fast.search.sharded import faiss_search_fn, gpu_sharded_index, search_shards

    rng = np.random.default_rng(1)
    base = rng.standard_normal((m, d)).astype(np.float32)
    queries = rng.standard_normal((n_queries, d)).astype(np.float32)
    gpus = faiss_gpu_count()
    rows = []
    for s in shard_counts:
        parts = np.array_split(base, s)
        subs = []
        sharded = faiss.IndexShards(d, True, True)
        for p in parts:
            sub = faiss.IndexFlatIP(d)
            sub.add(p)
            sharded.add_shard(sub)
            subs.append(sub)
        variants = {"faiss IndexShards (CPU threads)": lambda: sharded.search(queries, k),
                    "exact merge (search_shards)": lambda: search_shards(
                        [(faiss_search_fn(x), x.ntotal) for x in subs], queries, k)}
        if gpus >= s:
            whole = faiss.IndexFlatIP(d)
            whole.add(base)
            on_gpus = gpu_sharded_index(whole, list(range(s)))
            variants["faiss IndexShards (GPUs)"] = lambda: on_gpus.search(queries, k)
        for name, fn in variants.items():
            fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            rows.append({"provider": name, "shards": s, "m": m, "d": d, "queries": n_queries,
                         "ms": float(np.median(times)), "ms_min": min(times), "ms_max": max(times)})
    return rows


RANK_WORKER = textwrap.dedent("""
    import json, sys, time
    import torch, torch.distributed as dist
    from copynce_fast import CopyDetector
    folder, out, size, report = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    det = CopyDetector.random_init(arch="vit_small", img_size=size, dim=512, device=device, num_workers=2,
                                   batch_size=32)
    det.extract(folder, out + "_warm", max_images=4, progress=False)  # joins the group, warms up
    multi = dist.is_initialized()  # one rank: no process group
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # sync point: the clock starts with the device idle
    if multi:
        dist.barrier()
    t0 = time.perf_counter()
    result = det.extract(folder, out, progress=False)
    if multi:
        dist.barrier()
    if not multi or dist.get_rank() == 0:
        json.dump({"seconds": time.perf_counter() - t0, "images": result.extracted}, open(report, "w"))
""")


def rank_rows(n_images: int, size: int, ranks=(1, 2)) -> list[dict]:
    """Images/s of a whole extraction (decode + resize + ViT-S/16 + shard writes) on R ranks under torchrun,
    one thread per rank on CPU; the wall clock of rank 0 between two barriers."""
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 256, (size + 32, size + 48, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")
        (Path(tmp) / "worker.py").write_text(RANK_WORKER)
        for r in ranks:
            report = Path(tmp) / f"r{r}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={r}",
                   str(Path(tmp) / "worker.py"), str(folder), str(Path(tmp) / f"out{r}"), str(size), str(report)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            got = __import__("json").loads(report.read_text())
            rows.append({"ranks": r, "images": got["images"], "img_size": size, "seconds": round(got["seconds"], 2),
                         "img_per_s": round(got["images"] / got["seconds"], 1)})
    return rows
