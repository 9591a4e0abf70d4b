"""End-to-end training throughput: our configuration vs the reference's, side by side in one run.

Two measurements per configuration:

1. **step**: one optimiser step (forward, backward, AdamW) on a fixed batch already on the device — the model,
   the losses and the correspondence work, without the loader. The batch's geometry comes from the real
   descriptor augmentation preset (``copynce_fast.data.plan_sampler.sample_pair``).
2. **end to end** (``--data DIR`` or generated 500x375 JPEGs): the real loader (torch CPU workers) feeding the
   same step; reports images/s and the share of wall time spent waiting for data.

Configurations:
- ``ours``: bf16 autocast, SDPA attention, ``torch.compile`` (CUDA), kernels ``impl="auto"`` (Triton on CUDA),
  overlap counts straight from the plan geometry.
- ``reference-config``: fp32, explicit (math) attention, eager, and CopyNCE through the official dense-map
  route: float64 ``que_to_ori``/``ref_to_ori`` maps built on the CPU every step and shipped to the device,
  then inverted / composed / counted (our deterministic torch implementation of the official chain).

    python benchmarks/bench_train.py                       # CUDA: ViT-S/16 at 224, 192 pairs
    python benchmarks/bench_train.py --quick               # CPU smoke run (prints only)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from copynce_fast.config import Config, DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig
from copynce_fast.data.batch import normalise_images
from copynce_fast.data.presets import descriptor_preset
from copynce_fast.data.plan_sampler import sample_pair
from copynce_fast.losses import CopyNCELoss
from copynce_fast.models.loading import build_model
from copynce_fast.pixtrace import View, correspondence_map, pack_pairs, pack_paths
from copynce_fast.pixtrace import stages as S
from copynce_fast.train.loop import param_groups, train_step
from copynce_fast.train.objective import DescriptorObjective
from copynce_fast.utils import benchmarking as bench


def make_views(n: int, size: int, seed: int = 0):
    """Query/reference views of the descriptor preset for originals of typical DISC21 sizes."""
    cfg = descriptor_preset(size=size)
    rng = np.random.default_rng(seed)
    sizes = [(int(h), int(w)) for h, w in zip(rng.integers(300, 800, n), rng.integers(300, 1000, n))]
    pairs = [sample_pair(cfg, seed, 0, i, lambda j: sizes[j], n) for i in range(n)]
    return [p.traced_views() for p in pairs], sizes


def dense_maps_on_cpu(views, sizes, size: int):
    """The official inputs, built on the CPU as its loader does: float64 q->o and r->o maps in the S x S frame."""
    qs = [q for q, _ in views]
    rs = [r for _, r in views]
    frames = [View(hw, [S.resize(hw, (size, size))]) for hw in sizes]  # "o resized to S x S"
    que = correspondence_map(pack_paths(qs, frames, dtype=torch.float64)).double()
    ref = correspondence_map(pack_paths(rs, frames, dtype=torch.float64)).double()
    return que, ref


def setup(args, reference: bool, device):
    model_cfg = ModelConfig(arch=args.arch, img_size=args.img, dim=512, ln_eps=1e-4,
                            attn_impl="math" if reference else "sdpa")
    cfg = Config(model=model_cfg, data=DataConfig(batch_size=args.pairs),
                 loss=LossConfig(impl="torch" if reference else "auto", gather=False),
                 optim=OptimConfig(), run=RunConfig(compile=not reference and device.type == "cuda"))
    model = build_model(cfg.model).to(device)
    objective = DescriptorObjective(cfg.loss, 16).to(device)
    opt = torch.optim.AdamW(param_groups(model, objective, 0.04), lr=1e-4, fused=device.type == "cuda")
    params = [p for g in opt.param_groups for p in g["params"]]
    run_model = torch.compile(model) if cfg.run.compile else model
    return cfg, run_model, objective, opt, params


def step_fn(args, reference: bool, device, views, sizes):
    cfg, model, objective, opt, params = setup(args, reference, device)
    B, s = args.pairs, args.img
    g = torch.Generator().manual_seed(0)
    dtype = torch.float32 if reference else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    images = torch.randint(0, 256, (2, B, 3, s, s), generator=g, dtype=torch.uint8)
    paths_qr, paths_rq = pack_pairs([q for q, _ in views], [r for _, r in views])
    batch = {"query": normalise_images(images[0], device, dtype), "reference": normalise_images(images[1], device, dtype),
             "paths_qr": paths_qr.to(device), "paths_rq": paths_rq.to(device),
             "is_copy": torch.ones(B, dtype=torch.bool, device=device),
             "copynce": torch.ones(B, dtype=torch.bool, device=device)}
    amp = not reference and device.type == "cuda"
    counter = CopyNCELoss(gamma=3.0, impl="torch")

    def step():
        b = batch
        if reference:  # the official route: CPU dense maps every step, pageable copy, dense chain on the device
            que, ref = dense_maps_on_cpu(views, sizes, s)
            tokens = torch.empty(B, (s // 16) ** 2, 1, device=device)
            cqr, crq = counter.counts(tokens, tokens, que_to_ori=que.to(device), ref_to_ori=ref.to(device))
            b = {**batch, "counts_qr": cqr, "counts_rq": crq}
        return train_step(model, objective, opt, params, b, "descriptor", device, amp, 3.0)

    return step


def end_to_end(args, device, data_dir: Path) -> dict:
    """Our configuration fed by the real loader: images/s and the share of wall time spent waiting for data."""
    from copynce_fast.data.batch import to_device
    from copynce_fast.data.torch_loader import PairLoader
    from copynce_fast.data.sources import folder_source

    _, model, objective, opt, params = setup(args, False, device)
    amp = device.type == "cuda"
    dtype = torch.bfloat16 if amp else torch.float32
    loader = PairLoader(folder_source(data_dir), descriptor_preset(size=args.img), args.pairs,
                        num_workers=args.workers)
    it = iter(loader)
    wait = 0.0
    steps = args.rep + 2
    for k in range(steps):
        if k == 2:  # after warm-up (compile, worker start)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, wait = time.perf_counter(), 0.0
        tw = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            loader.set_epoch(k)
            it = iter(loader)
            batch = next(it)
        batch = to_device(batch, device, dtype)
        wait += time.perf_counter() - tw
        train_step(model, objective, opt, params, batch, "descriptor", device, amp, 3.0)
    if device.type == "cuda":
        torch.cuda.synchronize()  # sync point: end of the timed window
    wall = time.perf_counter() - t0  # wall clock: the loader and the device overlap
    return {"config": f"ours + loader ({args.workers} workers)", "arch": args.arch, "img": args.img,
            "pairs": args.pairs, "step_ms": wall / args.rep * 1e3, "img_per_s": 2 * args.pairs * args.rep / wall,
            "data_wait_share": wait / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vit_small", choices=("vit_tiny", "vit_small", "vit_base"))
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--pairs", type=int, default=192, help="pairs per step (2 images each)")
    ap.add_argument("--rep", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--data", type=Path, default=None, help="JPEG folder for the end-to-end row (default: generated)")
    ap.add_argument("--workers", type=int, default=16, help="loader worker processes for the end-to-end row")
    ap.add_argument("--no-end-to-end", dest="e2e", action="store_false", help="skip the loader-fed row")
    args = ap.parse_args()
    if args.quick:
        args.arch, args.img, args.pairs, args.rep, args.workers = "vit_tiny", 32, 4, 2, 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    views, sizes = make_views(args.pairs, args.img)
    rows = []
    for name, reference in (("reference-config", True), ("ours", False)):
        step = step_fn(args, reference, device, views, sizes)
        t = bench.measure(step, warmup=2 if args.quick else 5, min_reps=args.rep, whole_step=True)
        mem = bench.peak_memory_mb(step)
        rows.append({"config": name, "arch": args.arch, "img": args.img, "pairs": args.pairs, **t.row(),
                     "step_ms": t.median_ms, "img_per_s": 2 * args.pairs / t.median_ms * 1e3, "peak_mb": mem})
    base = rows[0]["step_ms"]
    for r in rows:
        r["speedup"] = base / r["step_ms"]
    bench.write_jsonl("train", rows)  # before the loader-fed row: a killed run keeps the step rows
    if args.e2e:
        import tempfile
        from bench_loader import make_jpegs  # a sibling script (the script's folder is on sys.path)
        with tempfile.TemporaryDirectory() as tmp:
            data = args.data or make_jpegs(Path(tmp), max(4 * args.pairs, 16))
            rows.append(end_to_end(args, device, data))
        bench.write_jsonl("train", rows[-1:])
    bench.print_table(rows, ["config", "arch", "img", "pairs", "step_ms", "min-max", "img_per_s", "peak_mb", "speedup",
                             "data_wait_share"],
                      title="descriptor training step: fixed batch on the device (rows 1-2), fed by the loader (row 3)")


if __name__ == "__main__":
    main()
