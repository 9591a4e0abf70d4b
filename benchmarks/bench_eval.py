"""Evaluation throughput: descriptor extraction images/s (decode included) and exact search time.

Extraction runs the public ``copynce_fast.eval.extract.extract_features`` end to end on a folder of JPEGs
(500×375, the typical DISC21 size, written once to a temp folder): file read + decode + S×S bicubic resize
(PIL in DataLoader workers, or DALI on the GPU when installed) + normalise + descriptor forward (bf16
autocast on CUDA) + writing the feature shards. Two reference rows bound it: decode only (the loader
iterated without a model) and model only (uint8 batches already on the device).

Search times ``copynce_fast.eval.search.knn`` (exact, inner product, top-10): torch matmul + top-k on the
device, and faiss flat when installed.

    python benchmarks/bench_eval.py            # CUDA: ViT-S/16 at 224 bf16, 4096 images; 25k x 1M search
    python benchmarks/bench_eval.py --quick    # CPU smoke run (< 60 s); timings are not performance numbers
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from copynce_fast.inference.extract import ImageDataset, extract_features, make_loader  # noqa: E402
from copynce_fast.inference.extract_dali import DaliImageBatches, dali_available  # noqa: E402
from copynce_fast.inference.images import ImageItem, normalize  # noqa: E402
from copynce_fast.models.loading import load_model  # noqa: E402
from copynce_fast.utils.device import autocast  # noqa: E402
from copynce_fast.utils import benchmarking as bench  # noqa: E402
from bench_eval_search import BenchConfig, BenchResult, providers, run_one  # noqa: E402  (a sibling script)


@dataclass(frozen=True)
class ExtractRow:
    stage: str  # "end-to-end", "decode only", "model only"
    loader: str
    arch: str
    img_size: int
    images: int
    batch: int
    workers: int
    seconds: float
    images_per_s: float


def make_jpegs(folder: Path, n: int, size=(375, 500), seed: int = 0, unique: int = 1024) -> list[ImageItem]:
    """``n`` items over ``min(n, unique)`` JPEG files with smooth random content (realistic file sizes, unlike
    white noise); items past ``unique`` reuse the files under their own ids (every item is decoded; writing
    thousands of distinct files would cost more than the extraction being timed)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(min(n, unique)):
        small = rng.integers(0, 256, (size[0] // 25 + 1, size[1] // 25 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC)
        detail = rng.integers(-12, 13, (*size, 3))
        arr = np.clip(np.asarray(img, dtype=np.int32) + detail, 0, 255).astype(np.uint8)
        path = folder / f"I{i:06d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return [ImageItem(f"I{i:06d}", paths[i % len(paths)]) for i in range(n)]


def bench_extraction(items, loaded, batch: int, workers: int, loaders: list[str], arch: str) -> list[ExtractRow]:
    rows = []
    size = loaded.img_size
    device = loaded.device
    common = dict(arch=arch, img_size=size, images=len(items), batch=batch, workers=workers)

    # model only: uint8 batches already on the device
    x8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    n_batches = max(1, len(items) // batch)

    def model_pass():
        with torch.inference_mode(), autocast(device, "bf16"):
            for _ in range(n_batches):
                loaded.model(normalize(x8, device))["feat"].float()

    model_pass()  # warm-up (kernels, allocator)
    bench.sync()
    t0 = time.perf_counter()
    model_pass()
    bench.sync()
    dt = time.perf_counter() - t0
    rows.append(ExtractRow("model only", "-", seconds=dt, images_per_s=n_batches * batch / dt, **common))

    for loader in loaders:
        # decode only
        if loader == "dali":
            it = DaliImageBatches(items, size, batch, device.index or 0 if device.type == "cuda" else None,
                                  max(1, workers))
        else:
            it = make_loader(ImageDataset(items, size), batch, workers, device.type == "cuda")
        t0 = time.perf_counter()
        n = 0
        for idx, images, _ in it:
            if images is not None:
                images.to(device, non_blocking=True)
            n += len(idx)
        bench.sync()
        dt = time.perf_counter() - t0
        rows.append(ExtractRow("decode only", loader, seconds=dt, images_per_s=n / dt, **common))

        # end to end (fresh output folder, nothing to resume)
        with tempfile.TemporaryDirectory() as out:
            extract_features(loaded, items[: min(len(items), 2 * batch)], Path(out) / "warm", batch_size=batch,
                             num_workers=workers, loader=loader, progress=False)  # warm-up
            bench.sync()
            t0 = time.perf_counter()
            res = extract_features(loaded, items, Path(out) / "feats", batch_size=batch, num_workers=workers,
                                   loader=loader, progress=False)
            bench.sync()
            dt = time.perf_counter() - t0
        rows.append(ExtractRow("end-to-end", loader, seconds=dt, images_per_s=res.extracted / dt, **common))
    return rows


def bench_search(n: int, m: int, d: int, k: int) -> list[BenchResult]:
    """Exact search at one size with the providers of bench_eval_search.py (one implementation of the timing)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = BenchConfig(n, m, d, k)
    return [run_one(cfg, name, kw, device, reps=3) for name, kw in providers(device, smallest=True).items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU smoke configuration (< 60 s)")
    ap.add_argument("--images", type=int, default=None, help="images to extract (default 4096; quick 16)")
    ap.add_argument("--arch", default="vit_small", choices=("vit_tiny", "vit_small", "vit_base"))
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 256; quick 8)")
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default min(16, cpus); quick 1)")
    ap.add_argument("--search", default=None, help="N,M,D for the search (default 25000,1000000,512 on CUDA)")
    ap.add_argument("--no-dali", action="store_true", help="skip the DALI loader")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    n_images = args.images or (16 if args.quick else (4096 if cuda else 64))
    batch = args.batch or (8 if args.quick else (256 if cuda else 16))
    workers = args.workers if args.workers is not None else (1 if args.quick else min(16, os.cpu_count() or 1))
    search = args.search or ("500,5000,512" if args.quick else ("25000,1000000,512" if cuda else "2000,50000,512"))
    n, m, d = (int(v) for v in search.split(","))
    loaders = ["torch"] + (["dali"] if dali_available() and not args.no_dali and (cuda or args.quick) else [])

    device = "cuda" if cuda else "cpu"
    loaded = load_model("descriptor", random_init=True, arch=args.arch, img_size=args.img_size, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        items = make_jpegs(Path(tmp), n_images)
        ext_rows = bench_extraction(items, loaded, batch, workers, loaders, args.arch)
    bench.print_table([asdict(r) for r in ext_rows],
                      ["stage", "loader", "arch", "img_size", "images", "batch", "workers", "seconds", "images_per_s"],
                      title=f"descriptor extraction ({'bf16 autocast' if cuda else 'fp32 CPU'}; decode included "
                            f"in end-to-end)")
    bench.write_jsonl("eval", [{"kind": "extract", **asdict(r)} for r in ext_rows])  # before the search
    search_rows = bench_search(n, m, d, 10)
    bench.print_table([asdict(r) for r in search_rows], ["provider", "n", "m", "d", "k", "ms", "min-max", "tflops",
                                                         "peak_mb"],
                      title="exact search (knn, inner product, top-10)")
    bench.write_jsonl("eval", [{"kind": "search", **asdict(r)} for r in search_rows])


if __name__ == "__main__":
    main()
