"""Sharded search: the merged top-k of per-shard searches equals searching the union, ties broken by global row,
whatever order a backend gives tied scores; faiss shards (flat, IVF-PQ copies of one trained index, faiss'
IndexShards); one shard per rank with 2 gloo processes under torchrun."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from copynce_fast.search.knn import faiss_available
from copynce_fast.search.sharded import (
    canonical_topk,
    faiss_search_fn,
    merge_topk,
    search_shards,
    split_trained_index,
    tie_safe_search,
)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def reference_topk(queries, base, k, metric="ip"):
    """Independent oracle: the full score matrix, sorted by (score, row) with a stable lexsort."""
    if metric == "ip":
        s = queries.astype(np.float64) @ base.T.astype(np.float64)
        key = -s
    else:
        s = ((queries[:, None, :].astype(np.float64) - base[None].astype(np.float64)) ** 2).sum(-1)
        key = s
    rows = np.stack([np.lexsort((np.arange(len(base)), key[i]))[:k] for i in range(len(queries))])
    return np.take_along_axis(s, rows, 1), rows


def tied_data(n_base=60, n_q=12, d=4, seed=0):
    """Integer-valued vectors from a tiny grid: scores are exact small integers in float32, with many ties
    (and duplicated rows) that a backend may order any way."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-1, 2, (n_base, d)).astype(np.float32)
    base[10:15] = base[3]  # exact duplicates across future shard boundaries
    return rng.integers(-1, 2, (n_q, d)).astype(np.float32), base


def adversarial_search(base, metric="ip"):
    """A correct top-k by score whose tied entries come in *descending* row order (the worst legal order)."""
    def search(q, k):
        s = q.astype(np.float64) @ base.T if metric == "ip" else \
            ((q[:, None, :].astype(np.float64) - base[None]) ** 2).sum(-1)
        key = -s if metric == "ip" else s
        rows = np.stack([np.lexsort((-np.arange(len(base)), key[i]))[:k] for i in range(len(q))])
        return np.take_along_axis(s, rows, 1).astype(np.float32), rows
    return search


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("sizes", [(60,), (20, 25, 15), (1, 0, 30, 29), (7, 7, 7, 7, 7, 7, 7, 7, 4)])
@pytest.mark.parametrize("k", [1, 5, 13])
def test_merged_shards_equal_the_union_with_ties(metric, sizes, k):
    queries, base = tied_data()
    cuts = np.cumsum((0,) + sizes)
    shards = [(adversarial_search(base[a:b], metric), b - a) for a, b in zip(cuts[:-1], cuts[1:])]
    scores, rows = search_shards(shards, queries, k, metric)
    want_s, want_r = reference_topk(queries, base, k, metric)
    np.testing.assert_array_equal(rows, want_r)
    np.testing.assert_array_equal(scores, want_s.astype(np.float32))


def test_tie_safe_search_widens_past_a_tied_boundary():
    queries, base = tied_data(seed=1)
    calls = []
    inner = adversarial_search(base)

    def spy(q, k):
        calls.append(k)
        return inner(q, k)

    s, r = tie_safe_search(spy, queries, 3, len(base))
    np.testing.assert_array_equal(r, reference_topk(queries, base, 3)[1])
    assert calls[0] == 11 and len(calls) > 1  # k + 8 first, then wider while the boundary is tied
    # the naive per-shard top-k (no widening) would be wrong here: it keeps the highest tied rows
    naive = inner(queries, 3)[1]
    assert not np.array_equal(naive, r)


def test_canonical_topk_pads_and_checks():
    s = np.array([[0.5, 0.9, 0.1]], np.float32)
    r = np.array([[4, 2, -1]])
    out_s, out_r = canonical_topk(s, r, 4)
    np.testing.assert_array_equal(out_r, [[2, 4, -1, -1]])
    assert out_s[0, 0] == np.float32(0.9) and np.isneginf(out_s[0, 2:]).all()
    np.testing.assert_array_equal(canonical_topk(s, r, 2, "l2")[1], [[4, 2]])
    with pytest.raises(ValueError, match="metric"):
        canonical_topk(s, r, 1, "cos")
    with pytest.raises(ValueError, match="parts: shards disagree"):
        merge_topk([(s, r), (s[:0], r[:0])], 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        search_shards([(adversarial_search(np.eye(3, dtype=np.float32)), 3)], np.eye(3, dtype=np.float32), 4)


@needs_faiss
def test_faiss_flat_shards_equal_one_flat_index():
    import faiss

    queries, base = tied_data(n_base=200, n_q=30, d=6, seed=2)
    parts = np.array_split(base, 3)
    shards = []
    for p in parts:
        idx = faiss.IndexFlatIP(6)
        idx.add(p)
        shards.append((faiss_search_fn(idx), len(p)))
    whole = faiss.IndexFlatIP(6)
    whole.add(base)
    single = tie_safe_search(faiss_search_fn(whole), queries, 10, len(base))
    merged = search_shards(shards, queries, 10)
    np.testing.assert_array_equal(merged[1], single[1])
    np.testing.assert_array_equal(merged[1], reference_topk(queries, base, 10)[1])


@needs_faiss
@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_shards_copied_from_one_trained_index_equal_the_union(kind):
    """Same quantiser and codebooks: each shard probes the same lists and scores a vector as the union does."""
    import faiss

    rng = np.random.default_rng(3)
    base = rng.standard_normal((2000, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:40] + 0.05 * rng.standard_normal((40, 16)).astype(np.float32)
    quantizer = faiss.IndexFlatIP(16)
    trained = faiss.IndexIVFFlat(quantizer, 16, 20, faiss.METRIC_INNER_PRODUCT) if kind == "ivf" else \
        faiss.IndexIVFPQ(quantizer, 16, 20, 4, 8, faiss.METRIC_INNER_PRODUCT)
    trained.train(base)
    union = faiss.clone_index(trained)
    union.add(base)
    want = tie_safe_search(faiss_search_fn(union, nprobe=4), queries, 10, len(base))
    shards = split_trained_index(trained, base, 4)
    got = search_shards([(faiss_search_fn(s, nprobe=4), s.ntotal) for s in shards], queries, 10)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    with pytest.raises(ValueError, match="trained and empty"):
        split_trained_index(union, base, 2)


@needs_faiss
def test_faiss_index_shards_on_cpu_agree_with_our_merge():
    """faiss' own IndexShards (the class gpu_sharded_index builds on GPUs) over CPU flat shards: same scores as
    our merge (its tie order is its own, so rows are compared on untied data)."""
    import faiss

    rng = np.random.default_rng(4)
    base = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    sharded = faiss.IndexShards(8, True, True)  # threaded, successive ids
    subs = []
    for p in np.array_split(base, 3):
        sub = faiss.IndexFlatIP(8)
        sub.add(p)
        sharded.add_shard(sub)
        subs.append((faiss_search_fn(sub), len(p)))
    s_faiss, r_faiss = sharded.search(queries, 7)
    s_ours, r_ours = search_shards(subs, queries, 7)
    np.testing.assert_allclose(s_faiss, s_ours, rtol=1e-6)
    np.testing.assert_array_equal(r_faiss, r_ours)


@pytest.mark.gpu
def test_gpu_sharded_index_matches_cpu():
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss without GPU support")
    from copynce_fast.search.sharded import gpu_sharded_index

    rng = np.random.default_rng(5)
    base = rng.standard_normal((4000, 32)).astype(np.float32)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    cpu = faiss.IndexFlatIP(32)
    cpu.add(base)
    gpu = gpu_sharded_index(cpu)
    np.testing.assert_array_equal(gpu.search(queries, 10)[1], cpu.search(queries, 10)[1])


RANK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch.distributed as dist
    from copynce_fast.search.copy_index import CopyIndex
    from copynce_fast.search.features import Features
    from copynce_fast.search.sharded import search_across_ranks, ids_across_ranks

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = np.load(sys.argv[1])
    base, queries, k = data["base"], data["queries"], int(data["k"])
    cut = int(data["cut"])  # uneven shards: rank 0 gets base[:cut]
    lo, hi = (0, cut) if rank == 0 else (cut, len(base))
    mine = base[lo:hi]

    def search(q, kk):  # tied entries in descending row order: the merge must not depend on it
        s = q.astype(np.float64) @ mine.T.astype(np.float64)
        rows = np.stack([np.lexsort((-np.arange(len(mine)), -s[i]))[:kk] for i in range(len(q))])
        return np.take_along_axis(s, rows, 1).astype(np.float32), rows

    scores, rows, offsets = search_across_ranks(search, len(mine), queries, k)
    ids = ids_across_ranks(rows, np.array([f"ref{i}" for i in range(lo, hi)]), offsets)
    index = CopyIndex.build(Features(np.array([f"ref{i}" for i in range(lo, hi)]), mine, {"model": "m"}),
                            backend="torch")
    hits = index.search_across_ranks(queries, k)
    np.savez(sys.argv[2] + f".{rank}.npz", scores=scores, rows=rows, offsets=offsets, ids=ids,
             hit_ids=hits.ids, hit_scores=hits.scores)
    dist.destroy_process_group()
""")


def torchrun(script, args, tmp_path, nproc=2, timeout=90):
    path = tmp_path / "worker.py"
    path.write_text(script)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(path),
           *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**__import__("os").environ,
                                                                                     "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_one_shard_per_rank_two_gloo_processes(tmp_path):
    queries, base = tied_data(n_base=50, n_q=9, d=4, seed=6)
    k = 12
    np.savez(tmp_path / "data.npz", base=base, queries=queries, k=k, cut=17)
    torchrun(RANK_SCRIPT, [tmp_path / "data.npz", tmp_path / "out"], tmp_path)
    want_s, want_r = reference_topk(queries, base, k)
    for rank in (0, 1):
        got = np.load(tmp_path / f"out.{rank}.npz")
        np.testing.assert_array_equal(got["rows"], want_r)  # every rank holds the merged result
        np.testing.assert_array_equal(got["scores"], want_s.astype(np.float32))
        np.testing.assert_array_equal(got["offsets"], [0, 17, 50])
        np.testing.assert_array_equal(got["ids"], np.char.add("ref", want_r.astype(str)))
        np.testing.assert_array_equal(got["hit_ids"], got["ids"])  # CopyIndex.search_across_ranks: the same
        np.testing.assert_allclose(got["hit_scores"], want_s, atol=1e-6)
