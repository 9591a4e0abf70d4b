"""Pair loader throughput: the full augmentation preset + PixTrace paths, torch CPU vs DALI CPU vs DALI GPU.

Reports training pairs/s and images/s (2 images per pair) from a folder of JPEGs (``--data``; default: synthetic
500x375 JPEGs generated into a temporary folder), next to what the reference's CPU pipeline would do (~15.5
pairs/s per core: 41 ms augmentation + 21 ms PixTrace per pair, DESIGN.md).

Per core: providers that run in this process (``torch-1core``: the executor without workers, torch on one
thread; ``dali-cpu-1``: DALI's CPU pipeline on one thread; ``dali-cpu``: on ``--threads`` threads) are also timed
in CPU seconds (user + system of this process, all threads): ``pairs_per_cpu_s`` is the throughput of one
busy core, unaffected by other jobs sharing the machine. ``torch-workers`` (DataLoader processes) is wall-clock
only. ``torch-1core+counts`` adds the patch overlap counts a CPU trainer's workers make (C++ kernel).
``--breakdown`` prints where a torch-executor pair's CPU time goes (decode, plan, warps, photometric ops and
occluders, collate + paths; each part timed on pairs it has not met, so per-plan caches miss as in a loader) and the
JPEG decode of the same files timed alone (the floor of a loader that decodes), ours and PIL's bare open + load.

    python benchmarks/bench_loader.py --quick                 # CPU smoke (< 60 s)
    python benchmarks/bench_loader.py --data DIR --threads 8   # torch workers and DALI threads
    python benchmarks/bench_loader.py --providers torch-1core,dali-cpu-1 --breakdown   # one core
    python benchmarks/bench_loader.py --providers torch-1core --official-src ../shared/official-copynce  # + official

CPU timings are informational (never written to results); GPU rows go to benchmarks/results/loader.jsonl.
"""
from __future__ import annotations

import argparse
import io
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
    provider: str  # "torch-1core" | "torch-1core+counts" | "torch-workers" | "dali-cpu-1" | "dali-cpu" | "dali-gpu"
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


def _timed(loader, warmup: int, steps: int, sync) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (this process, all its threads) for ``steps`` batches after ``warmup``
    batches (iterating across epochs), and pairs seen."""
    it, seen, t0, c0, pairs = None, 0, None, None, 0
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
            t0, c0 = time.perf_counter(), time.process_time()
        elif seen > warmup:
            pairs += batch["query"].shape[0]
        seen += 1
    sync()
    # The first timed batch starts the clock; count the ones after it.
    return time.perf_counter() - t0, time.process_time() - c0, pairs


def prefill_glyphs(preset) -> str:
    """Fill this process's glyph cache for the preset's text occluders (inherited by forked workers): the steady
    state of a long-lived loader worker, which draws each glyph once (~0.3 s for a 224 px preset). Without it a
    run of a few hundred pairs would time those first draws instead."""
    from copynce_fast.data.glyphs import prefill
    from copynce_fast.data.plan_sampler import TEXT_CHARS, text_font_sizes

    t0 = time.process_time()
    n = prefill(text_font_sizes(preset), TEXT_CHARS)
    return f"glyph cache prefilled before timing (steady state): {n} glyphs in {time.process_time() - t0:.2f} CPU s"


def run(cfg: BenchConfig, source, warmup: int, steps: int, workers: int, py_workers: int) -> dict:
    preset = descriptor_preset(size=cfg.size) if cfg.preset == "descriptor" else matcher_preset(size=cfg.size)
    sync = lambda: None  # noqa: E731
    in_process = cfg.provider in ("torch-1core", "torch-1core+counts", "dali-cpu-1", "dali-cpu")
    if cfg.provider.startswith("torch"):
        torch.set_num_threads(1)
        n_workers = 0 if cfg.provider.startswith("torch-1core") else workers
        counts = 16 if cfg.provider.endswith("+counts") else None
        loader = PairLoader(source, preset, cfg.batch, num_workers=n_workers, seed=0, counts_patch_size=counts)
        cores = max(1, n_workers)
    else:
        from copynce_fast.data.dali_loader import DaliPairLoader
        gpu = cfg.provider == "dali-gpu"
        threads = 1 if cfg.provider == "dali-cpu-1" else cfg.threads
        loader = DaliPairLoader(source, preset, cfg.batch, device_id=0 if gpu else None, num_threads=threads,
                                seed=0, py_workers=py_workers, normalize=gpu)
        if gpu:
            sync = torch.cuda.synchronize  # sync point: one before and one after the timed loop
        cores = threads + py_workers
    secs, cpu_secs, pairs = _timed(loader, warmup, steps, sync)
    pps = pairs / secs
    row = {"provider": cfg.provider, "preset": cfg.preset, "size": cfg.size, "batch": cfg.batch,
           "threads": cores, "pairs_per_s": pps, "images_per_s": 2 * pps, "pairs_per_s_per_core": pps / cores,
           "vs_reference_per_core": pps / cores / REFERENCE_PAIRS_PER_CORE, "skipped": len(source.skips.files)}
    if in_process:  # what one busy core does, however busy the machine is
        row["cpu_ms_per_pair"] = 1e3 * cpu_secs / pairs
        row["pairs_per_cpu_s"] = pairs / cpu_secs
        row["vs_reference_per_core"] = pairs / cpu_secs / REFERENCE_PAIRS_PER_CORE
    return row


def breakdown(source, preset_name: str, size: int, pairs: int = 64) -> list[dict]:
    """CPU ms per torch-executor pair by part (one core, this process), and the JPEG decode and header read alone."""
    from copynce_fast.data import PairKey
    from copynce_fast.data.batch import collate_pairs
    from copynce_fast.data.executor_torch import _render_layers, render_plan, to_tensor_image
    from copynce_fast.data.pair_of_key import plan_pair

    torch.set_num_threads(1)
    preset = descriptor_preset(size=size) if preset_name == "descriptor" else matcher_preset(size=size)

    def pair_set(epoch: int):
        keys = [PairKey(i % len(source), epoch) for i in range(pairs)]
        plans = [plan_pair(source, preset, 0, k)[0] for k in keys]
        needed = [sorted({p.source_index for p in (pp.query, pp.reference)}
                         | {p.overlay.index for p in (pp.query, pp.reference) if p.overlay is not None})
                  for pp in plans]
        return keys, plans, needed

    warm, timed = pair_set(2), pair_set(1)

    def cpu_ms(fn) -> float:
        """``fn(keys, plans, needed)`` on other pairs first (header cache, fonts, allocator warm), then timed on
        pairs it has not met: per-plan caches (occluder layers, shuffle indices) miss, as in a loader."""
        fn(*warm)
        t0 = time.process_time()
        fn(*timed)
        return 1e3 * (time.process_time() - t0) / pairs

    images = {i: to_tensor_image(source.decode(i)) for s in (warm, timed) for n in s[2] for i in n}

    def views(plans, fn):
        for pp in plans:
            for p in (pp.query, pp.reference):
                fn(p, images[p.source_index], images[p.overlay.index] if p.overlay is not None else None)

    ds_samples = []
    t = {
        "decode (the pair's originals + overlays)": cpu_ms(lambda keys, plans, needed: [
            source.decode(i) for n in needed for i in n]),
        "plan (sample_pair + traced views)": cpu_ms(lambda keys, plans, needed: [
            (pp := plan_pair(source, preset, 0, k)[0], pp.traced_views()) for k in keys]),
        "warps + canvas tests (2 views)": cpu_ms(lambda keys, plans, needed: views(
            plans, lambda p, a, o: _render_layers(p, a, o, "bilinear", True))),
        "render_plan (2 views, all ops)": cpu_ms(lambda keys, plans, needed: views(
            plans, lambda p, a, o: render_plan(p, a, o))),
    }
    t["photometric ops + occluders"] = t.pop("render_plan (2 views, all ops)") - t["warps + canvas tests (2 views)"]
    from copynce_fast.data.torch_loader import CopyPairDataset
    ds = CopyPairDataset(source, preset, seed=0)
    t["whole pair (dataset item)"] = cpu_ms(lambda keys, plans, needed: ds_samples.extend(ds[k] for k in keys))
    batch = ds_samples[pairs:]
    t["collate + PixTrace paths (per pair)"] = cpu_ms(lambda *_: collate_pairs(batch))
    t["patch overlap counts, both directions (C++)"] = cpu_ms(lambda *_: collate_pairs(batch, 16)) - \
        t["collate + PixTrace paths (per pair)"]
    files = sorted({i for n in timed[2] for i in n})
    raw = [source.read_bytes(i) for i in files]
    from copynce_fast.data.decode import DecodeLimits, _pil_header, decode_bytes, read_header

    def per_image(decode) -> float:
        t0 = time.process_time()
        for _ in range(3):
            for b in raw:
                decode(b)
        return 1e3 * (time.process_time() - t0) / (3 * len(raw))

    t["JPEG decode alone, per image"] = per_image(decode_bytes)
    t["PIL open + load alone, per image (pixels left in PIL)"] = per_image(lambda b: Image.open(io.BytesIO(b)).load())
    # A source reads each header once per worker, the first time it meets the image: once per image in a real epoch.
    t["header read, per image (first sight)"] = per_image(read_header)
    t["header read by PIL alone, per image (before the marker reader)"] = per_image(
        lambda b: _pil_header(b, DecodeLimits()))
    return [{"part": k, "cpu_ms": v} for k, v in t.items()]


def official_rows(official, root: Path, args) -> list[dict]:
    """The official pipeline beside ours on the images in ``root``: bench_official.py's item 3 (descriptor preset,
    ``--batch`` pairs per batch, ``--threads`` workers, ``--official-reps`` interleaved repetitions)."""
    import bench_official

    if not official.full:
        print("official rows skipped: the official data pipeline needs its dependencies (benchmarks/official_venv.sh)")
    # 8 batches a repetition: fewer would time the workers' prefetched batches, not their work
    ns = argparse.Namespace(loader_pairs=8 * args.batch, loader_batch=args.batch, workers=max(1, args.threads),
                            size=args.size, seed=0, reps=args.official_reps)
    return bench_official.bench_loaders(official, ns, root)


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
    p.add_argument("--providers", default="torch-1core,torch-1core+counts,torch-workers,dali-cpu-1,dali-cpu,dali-gpu")
    p.add_argument("--breakdown", action="store_true", help="CPU ms per torch-executor pair, by part")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    p.add_argument("--official-src", type=Path, help="the official CopyNCE checkout: its data pipeline side by side "
                   "(bench_official.py's item 3 on the same images: official fetch_sample and DataLoader, ours; "
                   "interleaved; needs the official code's dependencies, see benchmarks/official_venv.sh)")
    p.add_argument("--official-reps", type=int, default=3, help="interleaved repetitions of the --official-src rows")
    args = p.parse_args(argv)
    official = None
    if args.official_src is not None:  # load it first: a wrong path fails in one line before any timing
        import official_harness as H
        try:
            official = H.load_official(args.official_src)
        except (ValueError, H.OfficialUnavailable) as e:
            msg = str(e)
            p.exit(2, f"error: --{msg}\n" if msg.startswith("official-src:") else
                   f"error: --official-src {args.official_src}: {msg}\n")
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
        preset = descriptor_preset(size=args.size) if args.preset == "descriptor" else matcher_preset(size=args.size)
        print(prefill_glyphs(preset))
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
        parts = breakdown(source, args.preset, args.size, pairs=min(64, 4 * args.batch)) if args.breakdown else []
        side_by_side = official_rows(official, root, args) if official is not None else []
    rows.append({"provider": "reference (official CPU pipeline, per core)", "pairs_per_s": REFERENCE_PAIRS_PER_CORE,
                 "images_per_s": 2 * REFERENCE_PAIRS_PER_CORE, "threads": 1,
                 "pairs_per_s_per_core": REFERENCE_PAIRS_PER_CORE, "vs_reference_per_core": 1.0})
    cols = ["provider", "preset", "size", "batch", "threads", "pairs_per_s", "images_per_s", "pairs_per_s_per_core",
            "cpu_ms_per_pair", "pairs_per_cpu_s", "vs_reference_per_core"]
    bench.print_table(rows, cols, title="pair loader throughput (full augmentation preset + PixTrace paths)")
    if args.breakdown:
        bench.print_table(parts, ["part", "cpu_ms"], title="torch executor: CPU ms per pair by part (one core)")
    if side_by_side:
        bench.print_table(side_by_side, ["provider", "cores", "pairs_per_s_per_core", "per_core_min", "per_core_max",
                                         "vs_official_per_core", "pairs_per_cpu_s", "vs_official_per_cpu_s"],
                          title="side by side with the official pipeline (same images, interleaved)")
    bench.write_jsonl("loader", [r for r in rows if r["provider"] == "dali-gpu"])


if __name__ == "__main__":
    main()
