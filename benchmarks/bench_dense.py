"""Official dense-map chain (``reference_correspondence``: invert, compose, invert) at the training size.

Providers: torch on the available device (CUDA if any, else CPU), eager and ``torch.compile``d, the C++ helpers on
CPU (batch spread over ``torch.get_num_threads()`` threads) and the numpy fallback. Inputs are float64 maps like the official ones:
the reference view is a pure resize from a 500x375 native image (``floor(i*H_o/S)*S/H_o``, REFERENCE.md 1.8), the
query a random crop + rescale (+ horizontal flip for half the batch) with fractional coordinates, so the inverses
have both holes and collisions.

    python benchmarks/bench_dense.py            # B=192, S=224
    python benchmarks/bench_dense.py --quick    # tiny CPU smoke run
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.pixtrace.dense import reference_correspondence
from copynce_fast.utils import benchmarking as bench


def make_maps(batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(que_to_ori, ref_to_ori) [B,2,S,S] float64, coordinates in the S x S original frame."""
    rng = np.random.default_rng(seed)
    idx = np.arange(size, dtype=np.float64)
    native_h, native_w = 375, 500
    ry = np.floor(idx * native_h / size) * size / native_h
    rx = np.floor(idx * native_w / size) * size / native_w
    ref = np.broadcast_to(np.stack(np.meshgrid(ry, rx, indexing="ij")), (batch, 2, size, size)).copy()
    que = np.empty((batch, 2, size, size))
    for b in range(batch):
        crop = rng.uniform(0.3, 1.2, 2) * size  # > size: the query sees past the original -> invalid pixels
        off = rng.uniform(-0.1 * size, size - 0.5 * crop)
        cy = off[0] + (idx + 0.5) * crop[0] / size - 0.5
        cx = off[1] + (idx + 0.5) * crop[1] / size - 0.5
        if b % 2:
            cx = cx[::-1]
        que[b, 0], que[b, 1] = cy[:, None], cx[None, :]
    return que, ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    batch, size = (4, 64) if args.quick else (args.batch, args.size)
    rep = 3 if args.quick else 10
    que, ref = make_maps(batch, size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    que_t, ref_t = torch.from_numpy(que).to(device), torch.from_numpy(ref).to(device)

    def chain(q, r):
        return reference_correspondence(q, r, impl="torch")

    # inductor's C++ build would dominate a CPU smoke run; static shapes like a trainer's
    compiled = torch.compile(chain, backend="aot_eager" if args.quick else "inductor", dynamic=False)
    for got, want in zip(compiled(que_t, ref_t)[:2], chain(que_t, ref_t)[:2]):
        if not torch.equal(got, want):  # sync point: a benchmark that computes the wrong thing is worthless
            raise AssertionError("compiled reference_correspondence differs from eager")
    # (name, call, timed calls, runs on the host only)
    providers = [(f"torch eager ({device})", lambda: chain(que_t, ref_t), rep, device == "cpu"),
                 (f"torch compiled ({device})", lambda: compiled(que_t, ref_t), rep, device == "cpu")]
    if _cpp.HAS_CPP:
        providers.append((f"cpp (cpu, {torch.get_num_threads()} thr)",
                          lambda: reference_correspondence(que, ref, impl="cpp"), rep, True))
    providers.append(("numpy fallback (cpu)", lambda: reference_correspondence(que, ref, impl="numpy"),
                      min(rep, 3), True))

    _, r2q, info = reference_correspondence(que, ref)
    holes = float(np.mean(info["ref_to_que_holes"])) / size**2
    rows = []
    for name, fn, n, host in providers:
        t = bench.measure(fn, warmup=1, min_reps=n, whole_step=True, host=host)
        rows.append({"op": "reference_correspondence", "provider": name, "B": batch, "S": size, "dtype": "float64",
                     **t.row(), "ref_to_que_holes": round(holes, 4)})
    base = rows[-1]["ms"]
    for r in rows:
        r["speedup_vs_numpy"] = base / r["ms"]
    bench.print_table(rows, ["provider", "B", "S", "dtype", "ms", "min-max", "speedup_vs_numpy", "ref_to_que_holes"],
                      title="dense maps: official chain (invert, compose, invert)")
    bench.write_jsonl("dense", rows)


if __name__ == "__main__":
    main()
