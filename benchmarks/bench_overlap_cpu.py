"""Patch overlap counts on CPU cores, per training pair, both directions: C++ vs torch vs the dense-map chain.

Providers (all single-threaded unless a thread count is named; the counts of the first two are checked equal):
    cpp           ``patch_overlap(paths, impl="cpp")``: csrc/overlap.cpp from the packed geometry
    torch         ``patch_overlap_ref``: the torch reference from the same geometry
    dense chain   the official approach in our C++ (csrc/dense_maps.cpp): ``reference_correspondence`` (invert,
                  compose, invert) on float64 dense maps, then counts from the two dense maps
    cpp N thr     the C++ kernel with N threads over the batch (scaling)
Inputs: the descriptor preset's plans (or the matcher's at 336 px) on 500x375 originals, B pairs, packed like the
trainer packs them; the dense chain gets maps like ``bench_dense.py`` makes (a resize reference, a crop query).
Timing: R rounds; in each round every provider runs once on the whole batch, in a rotating order (interleaved, so
a busy machine slows all of them alike); ms per pair = call time / B; median (min-max) over rounds. Wall time and
the process's CPU time (user + system, all threads) are both reported: on a machine shared with other jobs the
CPU time is what one core spends, the wall time what a caller waits.

    python benchmarks/bench_overlap_cpu.py                      # B=64, 224 px, descriptor preset
    python benchmarks/bench_overlap_cpu.py --preset matcher --size 336
    python benchmarks/bench_overlap_cpu.py --quick              # tiny smoke run
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.data import descriptor_preset, matcher_preset, sample_pair
from copynce_fast.ops.overlap import patch_overlap, patch_overlap_from_dense_ref, patch_overlap_ref
from copynce_fast.pixtrace import pack_pairs
from copynce_fast.pixtrace.dense import reference_correspondence
from copynce_fast.pixtrace.overlap_cpu import patch_overlap_cpu
from copynce_fast.utils import benchmarking as bench
from bench_dense import make_maps  # noqa: E402  (a sibling script)


def preset_paths(preset: str, size: int, batch: int, seed: int = 0):
    cfg = (descriptor_preset if preset == "descriptor" else matcher_preset)(size=size)
    plans = [sample_pair(cfg, seed, 0, i, lambda i: (375, 500), 100_000) for i in range(batch)]
    views = [p.traced_views() for p in plans]
    return pack_pairs([q for q, _ in views], [r for _, r in views])


def dense_chain(que: np.ndarray, ref: np.ndarray, size: int):
    """The official loss's geometry: both dense correspondences, then counts in both directions."""
    q2r, r2q, _ = reference_correspondence(que, ref, impl="cpp" if _cpp.HAS_CPP else "numpy")
    q2r, r2q = torch.from_numpy(q2r), torch.from_numpy(r2q)
    return patch_overlap_from_dense_ref(q2r, (size, size), 16), patch_overlap_from_dense_ref(r2q, (size, size), 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--preset", choices=["descriptor", "matcher"], default="descriptor")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, nargs="*", default=[2], help="extra thread counts for the C++ kernel")
    args = ap.parse_args()
    batch, size, rounds = (4, 64, 2) if args.quick else (args.batch, args.size, args.rounds)
    torch.set_num_threads(1)
    qr, rq = preset_paths(args.preset, size, batch)
    que, ref = make_maps(batch, size)
    got, want = patch_overlap(qr, 16, impl="cpp"), patch_overlap_ref(qr, 16)
    if not torch.equal(got, want):  # a benchmark that computes the wrong thing is worthless
        raise AssertionError("C++ counts differ from the reference")
    providers = {
        "cpp": lambda: (patch_overlap(qr, 16, impl="cpp"), patch_overlap(rq, 16, impl="cpp")),
        "torch": lambda: (patch_overlap_ref(qr, 16), patch_overlap_ref(rq, 16)),
        "dense chain (cpp)": lambda: dense_chain(que, ref, size),
    }
    for n in args.threads:
        providers[f"cpp {n} thr"] = lambda n=n: (patch_overlap_cpu(qr, 16, n), patch_overlap_cpu(rq, 16, n))
    names = list(providers)
    for fn in providers.values():
        fn()  # warm-up
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            providers[name]()
            times[name].append((time.perf_counter() - t0) * 1e3 / batch)
            cpu[name].append((time.process_time() - c0) * 1e3 / batch)
    base = statistics.median(times["cpp"])
    env = bench.env_header()
    print(f"### patch overlap counts per pair, both directions, on CPU cores ({args.preset} preset, {size} px, "
          f"B={batch}, torch threads 1, {rounds} interleaved rounds)")
    print(" | ".join(f"{k} {v}" for k, v in env.items() if k != "performance"))
    cpu_base = statistics.median(cpu["cpp"])
    print("| provider | wall ms/pair (median) | min-max | x cpp | CPU ms/pair (median) | x cpp |\n|---|---|---|---|---|---|")
    for name in names:
        t, c = times[name], cpu[name]
        print(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f}-{max(t):.3f} | {statistics.median(t) / base:.1f} "
              f"| {statistics.median(c):.3f} | {statistics.median(c) / cpu_base:.1f} |")

if __name__ == "__main__":
    main()
