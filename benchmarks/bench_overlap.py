"""Patch overlap counts: eager reference vs ``torch.compile``d reference vs Triton, from geometry and dense maps.

From geometry also the C++ CPU kernel (``impl="cpp"``, csrc/overlap.cpp) on host copies of the same paths, with
``torch.get_num_threads()`` threads over the batch: host time, never GPU performance. Per-pair single-core numbers
and thread scaling: ``benchmarks/bench_overlap_cpu.py``.

Geometry: B pairs of random view chains (crop / resize / flips / rotation / shear / perspective / pad / paste)
at S x S px with P x P patches, optionally with occluder masks. Dense: the reference-layout int64 maps of the
same pairs. Formulas (per call, L = (S/P)², T steps, m = bytes per map element):
    Bytes (geometry) = B·T·(9·4 + 2·4) + occluders 2·B·S² [if any] + output B·L·(L+1)·4
    Bytes (dense)    = B·2·S²·m + output B·L·(L+1)·4
    floor = Bytes / 3.35 TB/s (H100 SXM); the geometry kernel is compute-bound in practice (~25 fp32 ops per
    pixel per step), so its floor is optimistic.

Usage: python benchmarks/bench_overlap.py [--quick] [--batch 256] [--size 224]
``--quick`` is a tiny CPU smoke run (Triton interpreter, compile backend aot_eager); its timings mean nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import asdict, dataclass

if shutil.which("nvidia-smi") is None:  # before triton is imported: no GPU -> the Triton interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from copynce_fast.ops.overlap import (patch_overlap, patch_overlap_from_dense, patch_overlap_from_dense_ref,  # noqa: E402
                                      patch_overlap_ref)
from copynce_fast.pixtrace import PackedPaths, correspondence_map, pack_paths  # noqa: E402
from copynce_fast.pixtrace.random_views import random_view  # noqa: E402
from copynce_fast.utils import benchmarking as bench  # noqa: E402

PEAK_BW = 3.35e12


@dataclass(frozen=True)
class BenchConfig:
    source: str  # "geometry" | "dense"
    batch: int
    size: int
    patch: int
    occluders: bool


def make_paths(cfg: BenchConfig, device) -> PackedPaths:
    rng = np.random.default_rng(0)
    hw = (cfg.size, cfg.size)
    original = (int(cfg.size * 1.5), int(cfg.size * 2))
    q = [random_view(rng, original, hw, n_stages=4) for _ in range(cfg.batch)]
    r = [random_view(rng, original, hw, n_stages=1) for _ in range(cfg.batch)]
    if cfg.occluders:
        q = [v.with_occluder(rng.random(hw) < 0.1) for v in q]
        r = [v.with_occluder(rng.random(hw) < 0.1) for v in r]
    return pack_paths(q, r).to(device)


def providers(cfg: BenchConfig, paths: PackedPaths, quick: bool):
    backend = "aot_eager" if quick else "inductor"  # inductor's C++ build would dominate a CPU smoke run
    p, hw = cfg.patch, paths.dst_hw
    if cfg.source == "geometry":
        def ref(m, c, so, do):
            return patch_overlap_ref(PackedPaths(m, c, paths.src_hw, hw, so, do), p)
        args = (paths.matrices, paths.canvases, paths.src_occluder, paths.dst_occluder)
        triton = lambda: patch_overlap(paths, p, impl="triton")  # noqa: E731  (as the trainer calls it)
        cpu_paths = paths.to("cpu")  # the C++ kernel (csrc/overlap.cpp) on the host, as CPU trainers / workers run it
        cpp = lambda: patch_overlap(cpu_paths, p, impl="cpp")  # noqa: E731
        nbytes = paths.matrices.numel() * 4 + paths.canvases.numel() * 4
        nbytes += sum(o.numel() for o in (paths.src_occluder, paths.dst_occluder) if o is not None)
    else:
        maps = correspondence_map(paths)

        def ref(m):
            return patch_overlap_from_dense_ref(m, hw, p)
        args = (maps,)
        triton = lambda: patch_overlap_from_dense(maps, hw, p, impl="triton")  # noqa: E731
        nbytes = maps.numel() * maps.element_size()
    compiled = torch.compile(ref, backend=backend, dynamic=False)
    out = triton()
    nbytes += out.numel() * out.element_size()
    if not torch.equal(out, ref(*args)):  # sync point: a benchmark that computes the wrong thing is worthless
        raise AssertionError(f"{cfg}: Triton counts differ from the reference")
    fns = {"eager": lambda: ref(*args), "compiled": lambda: compiled(*args), "triton": triton}
    if cfg.source == "geometry":
        fns["cpp (host, %d thr)" % torch.get_num_threads()] = cpp
    return fns, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quick = args.quick or device == "cpu"
    batch, size = (2, 32) if quick else (args.batch, args.size)
    warmup, rep = (1, 3) if quick else (3, 20)
    torch._dynamo.config.recompile_limit = 64  # one static graph per config, never a silent eager fallback
    rows = []
    for source, occ in (("geometry", False), ("geometry", True), ("dense", False)):
        cfg = BenchConfig(source, batch, size, args.patch, occ)
        paths = make_paths(cfg, device)
        fns, nbytes = providers(cfg, paths, quick)
        times = {name: bench.measure(fn, warmup=warmup, min_reps=rep, host=name.startswith("cpp"))
                 for name, fn in fns.items()}
        for name, fn in fns.items():
            ms = times[name].median_ms
            rows.append({**asdict(cfg), "steps": paths.matrices.shape[1], "provider": name, **times[name].row(),
                         "peak_mb": bench.peak_memory_mb(fn), "gbps": nbytes / (ms * 1e-3) / 1e9,
                         "floor_us": nbytes / PEAK_BW * 1e6, "x_vs_eager": times["eager"].median_ms / ms,
                         "x_vs_compiled": times["compiled"].median_ms / ms})
        bench.write_jsonl("overlap", rows[-len(fns):])  # as it goes: a killed run keeps what it measured
    cols = ["source", "batch", "size", "patch", "occluders", "steps", "provider", "ms", "min-max", "peak_mb", "gbps",
            "floor_us", "x_vs_eager", "x_vs_compiled"]
    bench.print_table(rows, cols, title="Patch overlap counts (bytes = inputs + int32 [B, L, L+1] output)")


if __name__ == "__main__":
    main()
