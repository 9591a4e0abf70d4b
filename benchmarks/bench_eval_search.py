"""Exact descriptor search: torch matmul + top-k vs faiss flat, N queries × M database × D dims.

Times the public ``copynce_fast.eval.search.knn`` call end to end (median): for torch the tensors already
sit on the device; for faiss the call includes building the flat index (``add``) and, on a GPU machine,
the host/device copies. The issue target is 50k × 1M × 512-d on an H100 in ≤ 5 s; this script measures at
sizes that fit and prints a linear-in-N·M extrapolation, labelled as such (``--full`` also measures
50k × 1M directly with torch).

    python benchmarks/bench_eval_search.py            # CUDA: realistic sizes; CPU: a small run
    python benchmarks/bench_eval_search.py --quick    # CPU smoke run (< 30 s)

Scale-out tables (issue 16; benchmarks/search_scale.py): ``--compact`` recall@10 vs bytes per reference for
PCA-whitening 512 -> 256 -> 128 and IVF-PQ codes against exact search (synthetic set, see there), ``--shards``
search time vs shard count, ``--ranks`` extraction images/s vs torchrun ranks; ``--scale`` runs all three
(``--scale-m`` references). Add ``--quick`` for tiny sizes.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import asdict, dataclass

import torch

from copynce_fast.search.knn import faiss_available, faiss_gpu_count, knn
from copynce_fast.utils import benchmarking as bench

TARGET_N, TARGET_M, TARGET_S = 50_000, 1_000_000, 5.0


@dataclass(frozen=True)
class BenchConfig:
    n: int
    m: int
    d: int
    k: int


@dataclass(frozen=True)
class BenchResult:
    provider: str
    n: int
    m: int
    d: int
    k: int
    ms: float
    ms_min: float
    ms_max: float
    tflops: float
    peak_mb: float | None


def configs(quick: bool, cuda: bool, d: int, k: int) -> list[BenchConfig]:
    if quick:
        return [BenchConfig(256, 8192, d, k)]
    if cuda:
        return [BenchConfig(n, m, d, k) for n, m in itertools.product((4096, 16384), (262_144, 1_000_000))]
    return [BenchConfig(1024, 65_536, d, k)]


def providers(device: torch.device, smallest: bool) -> dict[str, dict]:
    """name -> knn keyword arguments (plus the input dtype)."""
    out = {"torch fp32": dict(backend="torch", dtype=torch.float32)}
    if device.type == "cuda":
        out["torch fp16"] = dict(backend="torch", dtype=torch.float16)
    if faiss_available():
        if device.type == "cuda" and faiss_gpu_count() > 0:
            out["faiss-gpu flat"] = dict(backend="faiss", gpu=True, dtype=torch.float32)
        elif device.type == "cpu" or smallest:  # faiss-cpu next to a GPU: only the smallest size, it is slow
            out["faiss-cpu flat"] = dict(backend="faiss", gpu=False, dtype=torch.float32)
    return out


def run_one(cfg: BenchConfig, name: str, kw: dict, device: torch.device, reps: int) -> BenchResult:
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(cfg.n, cfg.d, device=device, generator=g), dim=1)
    db = torch.nn.functional.normalize(torch.randn(cfg.m, cfg.d, device=device, generator=g), dim=1)
    kw = dict(kw)
    dtype = kw.pop("dtype")
    q, db = q.to(dtype), db.to(dtype)

    def fn():
        return knn(q, db, cfg.k, **kw)

    # a whole search (hundreds of matmul + top-k chunks, maybe a host copy): CUDA events per call, no L2 flush
    t = bench.measure(fn, warmup=1, min_reps=reps, whole_step=True)
    peak = bench.peak_memory_mb(fn)
    tflops = 2 * cfg.n * cfg.m * cfg.d / (t.median_ms * 1e-3) / 1e12
    return BenchResult(name, cfg.n, cfg.m, cfg.d, cfg.k, t.median_ms, t.min_ms, t.max_ms, tflops, peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one tiny CPU-sized config (smoke test)")
    ap.add_argument("--full", action="store_true", help="CUDA: also measure 50k x 1M directly (torch)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--compact", action="store_true", help="whitening + PQ recall@10 vs bytes per reference")
    ap.add_argument("--shards", action="store_true", help="search time vs shard count")
    ap.add_argument("--ranks", action="store_true", help="extraction images/s vs torchrun ranks")
    ap.add_argument("--scale", action="store_true", help="--compact, --shards and --ranks")
    ap.add_argument("--scale-m", type=int, default=100_000, help="references of the --compact / --shards sets")
    args = ap.parse_args()
    if args.scale or args.compact or args.shards or args.ranks:
        return scale_tables(args)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    cfgs = configs(args.quick, device.type == "cuda", args.d, args.k)
    if args.full and device.type == "cuda":
        cfgs.append(BenchConfig(TARGET_N, TARGET_M, args.d, args.k))
    results: list[BenchResult] = []
    for i, cfg in enumerate(cfgs):
        for name, kw in providers(device, smallest=i == 0).items():
            if cfg.n == TARGET_N and not name.startswith("torch"):
                continue
            results.append(run_one(cfg, name, kw, device, 3 if cfg.n * cfg.m > 2**34 else args.reps))

    rows = [asdict(r) for r in results]
    bench.print_table(rows, ["provider", "n", "m", "d", "k", "ms", "min-max", "tflops", "peak_mb"],
                      title=f"exact kNN search (knn() end to end), device {device}")
    bench.write_jsonl("eval_search", rows)

    print(f"\nEXTRAPOLATED (linear in N·M, from each provider's largest measured N·M) to "
          f"{TARGET_N:,} x {TARGET_M:,} x {args.d}-d, target <= {TARGET_S:.0f} s on an H100:")
    for name in dict.fromkeys(r.provider for r in results):
        big = max((r for r in results if r.provider == name), key=lambda r: r.n * r.m)
        est = big.ms * 1e-3 * (TARGET_N * TARGET_M) / (big.n * big.m)
        measured = " (measured directly)" if big.n * big.m == TARGET_N * TARGET_M else ""
        print(f"  {name:16s} from {big.n} x {big.m}: {big.ms:.1f} ms -> {est:.2f} s (extrapolated){measured}")
    if device.type != "cuda":
        print("  (CPU run: the extrapolation says nothing about the H100 target)")


def scale_tables(args) -> None:
    """The issue-16 tables (module docstring); each prints its own table and JSONL rows."""
    import search_scale  # noqa: E402  (a sibling file)

    m = 3000 if args.quick else args.scale_m
    if args.scale or args.compact:
        rows = search_scale.compact_rows(m, 200 if args.quick else 2000, d=64 if args.quick else 512,
                                         nprobes=(8,) if args.quick else (16, 64, "all"))
        bench.print_table(rows, ["config", "bytes", "disk_bytes", "nlist", "nprobe", "build_s", "ms_per_query",
                                 "recall10_same", "recall10_raw", "copy_r1", "copy_r10"],
                          title=f"compact descriptors on {m} synthetic references (benchmarks/search_scale.py): "
                                f"recall@10 of exact float32 search in the same space / on the raw descriptors, "
                                f"copy recall@1 / @10; bytes = code + 8-byte id for IVF")
        bench.write_jsonl("eval_search_compact", rows)
        rows = search_scale.scan_rows(20_000 if args.quick else 200_000, 256, 100 if args.quick else 1000)
        bench.print_table(rows, ["pq_m", "m", "d", "nlist", "nprobe", "queries", "seconds", "codes_per_s",
                                 "ms_per_query"], title="IVF-PQ code-scan rate (long lists: scanning dominates)")
        bench.write_jsonl("eval_search_scan", rows)
    if args.scale or args.shards:
        rows = search_scale.shard_rows(m, 256 if args.quick else 1000, 128 if args.quick else 256)
        bench.print_table(rows, ["provider", "shards", "m", "d", "queries", "ms", "min-max"],
                          title="exact search vs shard count (the merge equals the unsharded result)")
        bench.write_jsonl("eval_search_shards", rows)
    if args.scale or args.ranks:
        rows = search_scale.rank_rows(16 if args.quick else 256, 64 if args.quick else 224,
                                      ranks=(1, 2) if not torch.cuda.is_available() else
                                      tuple(r for r in (1, 2, 4, 8) if r <= torch.cuda.device_count()))
        bench.print_table(rows, ["ranks", "images", "img_size", "seconds", "img_per_s"],
                          title="extraction vs ranks (torchrun; ViT-S/16 random weights, decode included)")
        bench.write_jsonl("eval_search_ranks", rows)


if __name__ == "__main__":
    main()
