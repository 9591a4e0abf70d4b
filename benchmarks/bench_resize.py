"""The antialiased uint8 resize of the executors' layers (data.resize.resize_antialiased): the C++ kernel
(csrc/resize.h) against torch's F.interpolate, side by side on the loader's shapes, one thread.

Each shape alternates the two paths rep by rep (CPU time of this process: ``time.process_time``), so a machine
shared with other jobs slows both alike; the table shows the median CPU-time ratio torch / C++ (CPU timings are
informational and shown as ratios only; never written to results). Inputs are 375x500 HWC-backed images, as the
loader decodes them; the torch side includes the dense channels-last copy of a box it needs for its vector path.

    python benchmarks/bench_resize.py --quick        # CPU smoke (seconds)
    OMP_NUM_THREADS=1 python benchmarks/bench_resize.py --reps 400
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.data.resize import resize_antialiased
from copynce_fast.utils import benchmarking as bench

SOURCE_HW = (375, 500)
# (name, box (top, left, height, width) or None for the whole image, out_hw)
SHAPES = [
    ("whole 375x500 -> 224x224 (box)", (0, 0, 375, 500), (224, 224)),
    ("box 300x340 -> 224x224", (30, 50, 300, 340), (224, 224)),
    ("box 150x200 -> 224x224 (up)", (100, 120, 150, 200), (224, 224)),
    ("pre-shrink 375x500 -> 167x223", None, (167, 223)),
    ("pre-shrink 375x500 -> 55x73", None, (55, 73)),
]


def time_pair(image: torch.Tensor, box, out_hw, reps: int) -> tuple[float, float]:
    """Median CPU seconds of (torch, C++), alternating call by call after a warm-up."""
    paths = ("torch", "cpp")
    times = {p: [] for p in paths}
    for p in paths:
        for _ in range(10):
            resize_antialiased(image, box, out_hw, impl=p)
    for _ in range(reps):
        for p in paths:
            t0 = time.process_time()
            resize_antialiased(image, box, out_hw, impl=p)
            times[p].append(time.process_time() - t0)
    return float(np.median(times["torch"])), float(np.median(times["cpp"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 20
    if not _cpp.HAS_RESIZE:
        raise SystemExit("bench_resize: copynce_fast._C is not built (or lacks resize_bilinear_aa); "
                         "rebuild with pip install -e .")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (*SOURCE_HW, 3), dtype=np.uint8)).permute(2, 0, 1)
    rows = []
    for name, box, out_hw in SHAPES:
        t_torch, t_cpp = time_pair(image, box, out_hw, args.reps)
        rows.append({"shape": name, "torch / C++ (CPU time)": t_torch / t_cpp})
    simd = "AVX2" if _cpp._C.resize_has_avx2() else "scalar"
    bench.print_table(rows, ["shape", "torch / C++ (CPU time)"],
                      title=f"antialiased uint8 resize, 3 channels, one thread ({simd} path; medians of {args.reps} "
                            "alternating reps)")


if __name__ == "__main__":
    main()
