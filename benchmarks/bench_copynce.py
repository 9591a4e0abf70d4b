"""CopyNCE: eager ``copynce_ref`` vs ``torch.compile(copynce_ref)`` vs the fused Triton kernels.

Modes fwd, bwd (backward only, graph retained) and fwd+bwd; median (min-max) times (``triton.testing.do_bench``),
peak extra memory, achieved TFLOP/s and GB/s, and the H100 floor. Formulas (per call, B pairs, L = Lq = Lr, C channels, e = token bytes):
    FLOPs  = 2·B·L²·C per similarity-sized product; useful work: fwd 1×, bwd 2× (dQ, dR), fwd+bwd 3×.
             (the Triton kernels recompute S: they execute fwd 2×, bwd 4×; TFLOP/s counts useful work only).
    Bytes  = tokens in 2·B·L·C·e + int32 counts read 2·B·L·(L+1)·4 [+ gradients out 2·B·L·C·e in bwd modes]
             (the minimum any implementation must move; GB/s = Bytes / time).
    floor  = max(Bytes / 3.35 TB/s, FLOPs / peak), peak = 989 TFLOP/s bf16 dense, 67 TFLOP/s fp32 (H100 SXM).

Usage: python benchmarks/bench_copynce.py [--quick] [--dtype bf16] [--mode fwd+bwd] [--shape descriptor-S-256]
``--quick`` is a tiny CPU smoke run (Triton interpreter, compile backend aot_eager); its timings mean nothing.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
from dataclasses import asdict, dataclass

if shutil.which("nvidia-smi") is None:  # before triton is imported: no GPU -> the Triton interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from copynce_fast.ops.copynce import copynce, copynce_ref  # noqa: E402
from copynce_fast.utils import benchmarking as bench  # noqa: E402

PEAK_BW = 3.35e12  # H100 SXM HBM3 bytes/s
PEAK_FLOPS = {torch.bfloat16: 989e12, torch.float16: 989e12, torch.float32: 67e12}
MODES = ("fwd", "bwd", "fwd+bwd")
PROVIDERS = ("eager", "compiled", "triton")


@dataclass(frozen=True)
class BenchConfig:
    name: str
    batch: int
    patches: int
    channels: int
    dtype: str
    mode: str


@dataclass(frozen=True)
class BenchResult:
    provider: str
    ms: float
    ms_min: float
    ms_max: float
    peak_mb: float | None
    tflops: float
    gbps: float
    floor_us: float


# name -> (batch, patches, channels)
SHAPES = {"descriptor-S-192": (192, 196, 384), "descriptor-S-256": (256, 196, 384), "descriptor-B-192": (192, 196, 768),
          "matcher-336": (32, 441, 384)}


def configs(quick: bool, shapes, dtypes, modes) -> list[BenchConfig]:
    if quick:
        return [BenchConfig("quick", 2, 16, 32, "fp32", m) for m in modes]
    return [BenchConfig(n, *SHAPES[n], d, m) for n, d, m in itertools.product(shapes, dtypes, modes)]


def make_inputs(cfg: BenchConfig, device):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.dtype]
    b, l, c = cfg.batch, cfg.patches, cfg.channels
    q = torch.randn(b, l, c, device=device).to(dtype).requires_grad_()
    r = torch.randn(b, l, c, device=device).to(dtype).requires_grad_()

    def counts():  # 256 pixels per patch, most of them in a few patches, some invalid: like real overlaps
        idx = torch.randint(0, l + 1, (b, l, 256), device=device)
        near = torch.arange(l, device=device).view(1, l, 1) + torch.randint(0, 3, (b, l, 192), device=device)
        idx[..., :192] = near % (l + 1)
        return torch.zeros(b, l, l + 1, dtype=torch.int32, device=device).scatter_add_(
            2, idx, torch.ones_like(idx, dtype=torch.int32))

    flags = torch.rand(b, device=device) < 0.9
    return dtype, q, r, counts(), counts(), flags


def loss_fns(quick: bool):
    hp = dict(scale=16.0, gamma=3.0, lamb=0.5, weight=5.0)

    def ref(q, r, cqr, crq, flags):
        return copynce_ref(q, r, cqr, crq, flags, **hp)

    def triton(q, r, cqr, crq, flags):
        return copynce(q, r, cqr, crq, flags, impl="triton", **hp)

    # CPU smoke runs use aot_eager: inductor's C++ build would dominate a 60 s budget. Static shapes: one graph
    # per (shape, dtype), like a trainer with fixed shapes; the recompile limit is raised so that no config
    # silently falls back to eager.
    torch._dynamo.config.recompile_limit = 64
    compiled = torch.compile(ref, backend="aot_eager" if quick else "inductor", dynamic=False)
    return {"eager": ref, "compiled": compiled, "triton": triton}


def flops_bytes(cfg: BenchConfig, elem: int) -> tuple[float, float]:
    b, l, c = cfg.batch, cfg.patches, cfg.channels
    unit = 2.0 * b * l * l * c
    flops = {"fwd": 1, "bwd": 2, "fwd+bwd": 3}[cfg.mode] * unit
    tokens, counts = 2.0 * b * l * c * elem, 2.0 * b * l * (l + 1) * 4
    grads = 0.0 if cfg.mode == "fwd" else tokens
    return flops, tokens + counts + grads


def run_one(cfg: BenchConfig, provider: str, fn, device, warmup: int, rep: int) -> BenchResult:
    """Median (min-max) of ``rep`` or more timed calls after ``warmup`` calls."""
    dtype, q, r, cqr, crq, flags = make_inputs(cfg, device)
    args = (q, r, cqr, crq, flags)
    if cfg.mode == "fwd":
        call = lambda: fn(*args)  # noqa: E731
    elif cfg.mode == "bwd":
        loss = fn(*args)
        call = lambda: torch.autograd.grad(loss, (q, r), retain_graph=True)  # noqa: E731
    else:
        call = lambda: torch.autograd.grad(fn(*args), (q, r))  # noqa: E731
    t = bench.measure(call, warmup=warmup, min_reps=rep)
    peak = bench.peak_memory_mb(call)
    flops, nbytes = flops_bytes(cfg, q.element_size())
    floor_us = max(nbytes / PEAK_BW, flops / PEAK_FLOPS[dtype]) * 1e6
    ms = t.median_ms
    return BenchResult(provider, ms, t.min_ms, t.max_ms, peak, flops / (ms * 1e-3) / 1e12,
                       nbytes / (ms * 1e-3) / 1e9, floor_us)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    ap.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--mode", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--provider", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    ap.add_argument("--shape", nargs="+", default=list(SHAPES), choices=list(SHAPES),
                    help="shapes to time (default: all)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quick = args.quick or device == "cpu"
    warmup, rep = (1, 3) if quick else (3, 20)
    fns = loss_fns(quick)
    rows = []
    for cfg in configs(quick, args.shape, args.dtype, args.mode):
        results = {p: run_one(cfg, p, fns[p], device, warmup, rep) for p in args.provider}
        for p, res in results.items():
            row = {**asdict(cfg), **asdict(res)}
            for base in ("eager", "compiled"):
                if base in results:
                    row[f"x_vs_{base}"] = results[base].ms / res.ms
            rows.append(row)
        bench.write_jsonl("copynce", rows[-len(results):])  # as it goes: a killed run keeps what it measured
        if device == "cuda":
            torch.cuda.empty_cache()
    cols = ["name", "batch", "patches", "channels", "dtype", "mode", "provider", "ms", "min-max", "peak_mb", "tflops",
            "gbps", "floor_us", "x_vs_eager", "x_vs_compiled"]
    bench.print_table(rows, cols, title="CopyNCE (useful FLOPs 2BL²C x {fwd 1, bwd 2, fwd+bwd 3}; bytes = "
                                        "tokens + int32 counts [+ grads])")


if __name__ == "__main__":
    main()
