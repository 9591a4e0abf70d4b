"""CopyNCE as a trainer calls it: from a batch of augmentation plans to the loss and its gradient.

One call = overlap counts for both directions + the CopyNCE loss forward + backward to the tokens. Providers:

- ``ours``: the plans' exact geometry (``PackedPaths``, on the device) -> Triton overlap counts -> fused Triton
  CopyNCE (``CopyNCELoss(impl="auto")``, what ``DescriptorObjective`` runs);
- ``dense chain eager`` / ``dense chain compiled``: the official route, reimplemented in torch on the device:
  float64 ``que_to_ori`` / ``ref_to_ori`` maps (already on the device) -> invert, compose, invert -> counts from
  the dense maps -> the torch reference loss (``CopyNCELoss(impl="torch", que_to_ori=..., ref_to_ori=...)``),
  eager and ``torch.compile``d;
- the official implementation itself is not run here: its time as its trainer calls it (83 ms at B=192, 94 ms at
  B=256, H100, DESIGN.md) is the ``x_vs_official`` column's constant, labelled as such.

Batches come from the real descriptor preset (``bench_train.make_views``); tokens are random, ViT-S/16 sized.

    python benchmarks/bench_copynce_plans.py            # CUDA: B=192 and 256, 224 px, C=384, bf16
    python benchmarks/bench_copynce_plans.py --quick    # tiny CPU smoke run (Triton interpreter)
"""
from __future__ import annotations

import argparse
import os
import shutil

if shutil.which("nvidia-smi") is None:  # before triton is imported: no GPU -> the Triton interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from copynce_fast.losses import CopyNCELoss  # noqa: E402
from copynce_fast.pixtrace import pack_pairs  # noqa: E402
from copynce_fast.utils import benchmarking as bench  # noqa: E402
from bench_train import dense_maps_on_cpu, make_views  # noqa: E402  (a sibling script)

OFFICIAL_MS = {192: 83.0, 256: 94.0}  # official CopyNCE as its trainer calls it, H100 (DESIGN.md), not measured here
HPARAMS = dict(scale=16.0, gamma=3.0, lamb=0.5, weight=5.0)  # the descriptor's


def make_batch(batch: int, size: int, channels: int, dtype: torch.dtype, device):
    views, sizes = make_views(batch, size)
    paths_qr, paths_rq = pack_pairs([q for q, _ in views], [r for _, r in views])
    que, ref = dense_maps_on_cpu(views, sizes, size)
    tokens = (size // 16) ** 2
    q = torch.randn(batch, tokens, channels, device=device).to(dtype).requires_grad_()
    r = torch.randn(batch, tokens, channels, device=device).to(dtype).requires_grad_()
    flags = torch.ones(batch, dtype=torch.bool, device=device)
    return q, r, flags, (paths_qr.to(device), paths_rq.to(device)), (que.to(device), ref.to(device))


def providers(q, r, flags, geometry, maps, quick: bool) -> dict:
    ours_loss = CopyNCELoss(**HPARAMS, impl="auto")
    ref_loss = CopyNCELoss(**HPARAMS, impl="torch")

    def ours():
        return torch.autograd.grad(ours_loss(q, r, geometry=geometry, flags=flags, patch_size=16), (q, r))

    def chain(a, b, que, ref):
        return ref_loss(a, b, que_to_ori=que, ref_to_ori=ref, flags=flags, patch_size=16)

    # static shapes like a trainer's; aot_eager on CPU (inductor's C++ build would dominate a smoke run)
    compiled = torch.compile(chain, backend="aot_eager" if quick else "inductor", dynamic=False)
    return {
        "ours": ours,
        "dense chain eager": lambda: torch.autograd.grad(chain(q, r, *maps), (q, r)),
        "dense chain compiled": lambda: torch.autograd.grad(compiled(q, r, *maps), (q, r)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--batch", type=int, nargs="+", default=[192, 256], help="pairs per batch")
    ap.add_argument("--size", type=int, default=224, help="view size in px (16 px patches)")
    ap.add_argument("--channels", type=int, default=384, help="token channels (ViT-S: 384)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="token dtype")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    batches, size, channels = ([4], 32, 32) if quick else (args.batch, args.size, args.channels)
    dtype = torch.float32 if quick or args.dtype == "fp32" else torch.bfloat16
    warmup, reps = (1, 3) if quick else (3, 20)
    torch._dynamo.config.recompile_limit = 64  # one static graph per batch size, never a silent eager fallback
    rows = []
    for batch in batches:
        q, r, flags, geometry, maps = make_batch(batch, size, channels, dtype, device)
        fns = providers(q, r, flags, geometry, maps, quick)
        times = {name: bench.measure(fn, warmup=warmup, min_reps=reps) for name, fn in fns.items()}
        for name, fn in fns.items():
            ms = times[name].median_ms
            official = OFFICIAL_MS.get(batch)
            rows.append({"provider": name, "batch": batch, "size": size, "channels": channels,
                         "dtype": str(dtype).removeprefix("torch."), **times[name].row(),
                         "peak_mb": bench.peak_memory_mb(fn), "x_vs_eager": times["dense chain eager"].median_ms / ms,
                         "x_vs_compiled": times["dense chain compiled"].median_ms / ms,
                         "x_vs_official": official / ms if official and not quick else None})
        del q, r, geometry, maps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bench.print_table(rows, ["provider", "batch", "size", "channels", "dtype", "ms", "min-max", "peak_mb", "x_vs_eager",
                             "x_vs_compiled", "x_vs_official"],
                      title="CopyNCE as the trainer calls it: counts (both directions) + loss fwd+bwd "
                            "(x_vs_official: the official 83 ms @B=192 / 94 ms @B=256 on an H100, DESIGN.md)")
    bench.write_jsonl("copynce_plans", rows)


if __name__ == "__main__":
    main()
