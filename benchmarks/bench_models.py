"""ViT-S/B training-step and inference throughput: attention backends × eager/compiled × resolution, bf16 autocast.

Per config: median step time, images/s, achieved TFLOP/s, MFU against the device's dense bf16 peak, and peak
CUDA memory. The training step is forward + backward + AdamW step of the backbone with a stand-in loss (mean
square of the CLS and patch tokens), so it times the model, not a loss.

FLOPs per image (forward): 2 · (matmul weights applied per token) · tokens + 4 · T² · C per block
(Q Kᵀ and A V); training counts 3× forward. This is the nanoGPT ``estimate_mfu`` convention.

    python benchmarks/bench_models.py                         # full sweep on the local GPU, writes results/models.jsonl
    python benchmarks/bench_models.py --arch vit_small --img 224 --attn sdpa --compile both
    python benchmarks/bench_models.py --quick                 # tiny CPU smoke run
"""
from __future__ import annotations

import argparse
import gc
import itertools
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn

from copynce_fast.models import vit_base, vit_small, vit_tiny
from copynce_fast.models.attention import resolve_attn_impl
from copynce_fast.utils import benchmarking as bench

BUILDERS = {"vit_tiny": vit_tiny, "vit_small": vit_small, "vit_base": vit_base}

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s; first substring match of the device name wins, so the
# more specific names come first. Override with --peak-tflops.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0),
    ("A10", 125.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
]


@dataclass(frozen=True)
class BenchConfig:
    arch: str
    img: int
    attn: str
    compiled: bool
    mode: str  # "train" | "infer"
    batch: int


def default_peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


def forward_flops_per_image(model: nn.Module, img: int) -> float:
    """2 · Σ(weights × tokens they touch) + attention 4 · T² · C per block, for one image at ``img``×``img``."""
    L = (img // 16) ** 2
    T = L + 1
    matmul = 2 * model.patch_embed.proj.weight.numel() * L
    for blk in model.blocks:
        per_token = sum(m.weight.numel() for m in blk.modules() if isinstance(m, nn.Linear))
        matmul += 2 * per_token * T
    attention = 4 * T * T * model.embed_dim * len(model.blocks)
    return float(matmul + attention)


def run_config(cfg: BenchConfig, dtype: torch.dtype, warmup: int, rep: int, peak_tflops: float | None) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch._dynamo.reset()  # each config compiles afresh; avoids hitting the recompile limit across configs
    model = BUILDERS[cfg.arch](img_size=cfg.img, attn_impl=cfg.attn, device=device)
    x = torch.randn(cfg.batch, 3, cfg.img, cfg.img, device=device)
    fwd = torch.compile(model) if cfg.compiled else model
    amp = torch.autocast(device, dtype=dtype) if dtype != torch.float32 else nullcontext()

    if cfg.mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")

        def step():
            opt.zero_grad(set_to_none=True)
            with amp:
                out = fwd(x)
                loss = out["cls"].float().square().mean() + out["patch_tokens"].float().square().mean()
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), amp:
                fwd(x)

    row = asdict(cfg) | {"dtype": str(dtype).removeprefix("torch.")}
    try:
        t = bench.measure(step, warmup=warmup, min_reps=rep, whole_step=True)  # a step updates the weights
        row.update(t.row())
        row["peak_mb"] = bench.peak_memory_mb(step)
    except torch.cuda.OutOfMemoryError:
        row["ms"] = None
        row["note"] = "oom"
        return row
    finally:
        del model, fwd, x
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    flops = forward_flops_per_image(BUILDERS[cfg.arch](img_size=cfg.img, device="meta"), cfg.img)
    flops *= cfg.batch * (3 if cfg.mode == "train" else 1)
    ms = t.median_ms
    tflops = flops / (ms * 1e-3) / 1e12
    row.update(img_per_s=cfg.batch / (ms * 1e-3), tflops=tflops,
               mfu_pct=100 * tflops / peak_tflops if peak_tflops else None)
    return row


def configs(args) -> list[BenchConfig]:
    compile_opts = {"eager": [False], "compiled": [True], "both": [False, True]}[args.compile]
    out = []
    for arch, img, attn, compiled, mode in itertools.product(args.arch, args.img, args.attn, compile_opts, args.mode):
        if resolve_attn_impl(attn) != attn:
            print(f"skip attn={attn}: not usable here (fell back to sdpa)")
            continue
        out.append(BenchConfig(arch, img, attn, compiled, mode, args.batch))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="+", default=["vit_small", "vit_base"], choices=sorted(BUILDERS))
    p.add_argument("--img", nargs="+", type=int, default=[224, 336])
    p.add_argument("--attn", nargs="+", default=["sdpa", "xformers", "math"], choices=["sdpa", "xformers", "math"])
    p.add_argument("--compile", default="both", choices=["eager", "compiled", "both"])
    p.add_argument("--mode", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="bf16 = torch.autocast(bfloat16)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device dense bf16 peak (default: by name)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rep", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="one tiny eager config (a CPU smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.img, args.attn, args.compile = ["vit_tiny"], [224], ["sdpa"], "eager"
        args.batch, args.dtype, args.warmup, args.rep = 2, "fp32", 1, 3
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    peak = args.peak_tflops or default_peak_tflops()

    rows = []
    for cfg in configs(args):
        rows.append(run_config(cfg, dtype, args.warmup, args.rep, peak))
        bench.write_jsonl("models", rows[-1:])  # as it goes: a killed run keeps what it measured
    bench.print_table(
        rows,
        ["arch", "img", "attn", "compiled", "mode", "batch", "dtype", "ms", "min-max", "img_per_s", "tflops",
         "mfu_pct", "peak_mb", "note"],
        title=f"ViT throughput (peak {peak} TFLOP/s bf16)" if peak else "ViT throughput",
    )


if __name__ == "__main__":
    main()
