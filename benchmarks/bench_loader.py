"""Pair loader throughput: the full augmentation preset + PixTrace paths, torch CPU vs DALI CPU vs DALI GPU.

Reports training pairs/s and images/s (2 images per pair) from a folder of JPEGs (``--data``; default: synthetic
500x375 JPEGs generated into a temporary folder), next to what the reference's CPU pipeline would do (~15.5
pairs/s per core: 41 ms augmentation + 21 ms PixTrace per pair, DESIGN.md).

    python benchmarks/bench_loader.py --quick                 # CPU smoke (< 60 s)
    python benchmarks/bench_loader.py --data DIR --threads 8   # torch workers and DALI threads

CPU timings are informational (never written to results); GPU rows go to benchmarks/results/loader.jsonl.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from copynce_fast.data.torch_loader import PairLoader
from copynce_fast.data.presets import descriptor_preset, matcher_preset
from copynce_fast.data.sources import folder_source
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.utils import benchmarking as bench

REFERENCE_PAIRS_PER_CORE = 15.5  # the official CPU pipeline per core: 41 ms augmentation + 21 ms PixTrace (DESIGN.md)


@dataclass(frozen=True)
class BenchConfig:
    provider: str  # "torch-1core" | "torch-workers" | "dali-cpu" | "dali-gpu"
    preset: str
    size: int
    batch: int
    threads: int


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` synthetic 500x375 JPEGs (quality 90) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(synthetic_images(n, (375, 500), seed)):
        Image.fromarray(img).save(root / f"img{k:05d}.jpg", quality=90)
    return root


def _timed(loader, warmup: int, steps: int, sync) -> tuple[float, int]:
    """Seconds for ``steps`` batches after ``warmup`` batches (iterating across epochs), and pairs seen."""
    it, seen, t0, pairs = None, 0, None, 0
    while seen < warmup + 1 + steps:
        if it is None:
            it = iter(loader)
        try:
            batch = next(it)
        except StopIteration:
            it = None
            continue
        if seen == warmup:
            sync()
            t0 = time.perf_counter()
        elif seen > warmup:
            pairs += batch["query"].shape[0]
        seen += 1
    sync()
    # The first timed batch starts the clock; count the ones after it.
    return time.perf_counter() - t0, pairs


def run(cfg: BenchConfig, source, warmup: int, steps: int, workers: int, py_workers: int) -> dict:
    preset = descriptor_preset(size=cfg.size) if cfg.preset == "descriptor" else matcher_preset(size=cfg.size)
    sync = lambda: None  # noqa: E731
    if cfg.provider.startswith("torch"):
        torch.set_num_threads(1)
        n_workers = 0 if cfg.provider == "torch-1core" else workers
        loader = PairLoader(source, preset, cfg.batch, num_workers=n_workers, seed=0)
        cores = max(1, n_workers)
    else:
        from copynce_fast.data.dali_loader import DaliPairLoader
        gpu = cfg.provider == "dali-gpu"
        loader = DaliPairLoader(source, preset, cfg.batch, device_id=0 if gpu else None, num_threads=cfg.threads,
                                seed=0, py_workers=py_workers, normalize=gpu)
        if gpu:
            sync = torch.cuda.synchronize  # sync point: one before and one after the timed loop
        cores = cfg.threads + py_workers
    secs, pairs = _timed(loader, warmup, steps, sync)
    pps = pairs / secs
    return {"provider": cfg.provider, "preset": cfg.preset, "size": cfg.size, "batch": cfg.batch,
            "threads": cores, "pairs_per_s": pps, "images_per_s": 2 * pps, "pairs_per_s_per_core": pps / cores,
            "vs_reference_per_core": pps / cores / REFERENCE_PAIRS_PER_CORE, "skipped": len(source.skips.files)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="folder of images (default: synthetic 500x375 JPEGs in a temp dir)")
    p.add_argument("--num-images", type=int, default=256, help="synthetic images to generate without --data")
    p.add_argument("--preset", choices=["descriptor", "matcher"], default="descriptor")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64, help="pairs per batch")
    p.add_argument("--threads", type=int, default=2, help="torch DataLoader workers and DALI CPU threads")
    p.add_argument("--py-workers", type=int, default=0, help="DALI Python workers planning pairs")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--providers", default="torch-1core,torch-workers,dali-cpu,dali-gpu")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.num_images, args.batch, args.steps, args.warmup = 24, 8, 2, 1
    providers = [s.strip() for s in args.providers.split(",") if s.strip()]
    try:
        import nvidia.dali  # noqa: F401
        has_dali = True
    except ImportError:
        has_dali = False
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or make_jpegs(Path(tmp) / "jpegs", args.num_images)
        source = folder_source(root)
        for prov in providers:
            if prov.startswith("dali") and not has_dali:
                print(f"skip {prov}: nvidia-dali is not installed")
                continue
            if prov == "dali-gpu" and not torch.cuda.is_available():
                print("skip dali-gpu: no CUDA")
                continue
            if prov == "torch-workers" and args.threads < 1:
                continue
            cfg = BenchConfig(prov, args.preset, args.size, args.batch, args.threads)
            rows.append(run(cfg, source, args.warmup, args.steps, args.threads, args.py_workers))
    rows.append({"provider": "reference (official CPU pipeline, per core)", "pairs_per_s": REFERENCE_PAIRS_PER_CORE,
                 "images_per_s": 2 * REFERENCE_PAIRS_PER_CORE, "threads": 1,
                 "pairs_per_s_per_core": REFERENCE_PAIRS_PER_CORE, "vs_reference_per_core": 1.0})
    cols = ["provider", "preset", "size", "batch", "threads", "pairs_per_s", "images_per_s", "pairs_per_s_per_core",
            "vs_reference_per_core"]
    bench.print_table(rows, cols, title="pair loader throughput (full augmentation preset + PixTrace paths)")
    bench.write_jsonl("loader", [r for r in rows if r["provider"] == "dali-gpu"])


if __name__ == "__main__":
    main()
