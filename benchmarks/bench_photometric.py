"""Photometric ops and occluders of the torch executor, per op kind: how often a preset draws each, and its CPU cost
with the C++ helpers (csrc/photometric.h) and with the torch fallback, on one thread.

Views come from the preset's plans over synthetic 500x375 originals; their geometry is drawn once, then each op of
each view is timed on that view's pixels in plan order (an occluder's time includes drawing its layer: the layer
cache is emptied before every round, as in a loader that meets each plan once). The two paths alternate round by
round (CPU time of this process: ``time.process_time``), so a machine shared with other jobs slows both alike.

    python benchmarks/bench_photometric.py --quick          # CPU smoke (< 30 s)
    OMP_NUM_THREADS=1 python benchmarks/bench_photometric.py --pairs 128 --rounds 3

CPU timings are informational (never written to results).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from copynce_fast import _cpp
from copynce_fast.data import occluders, photometric
from copynce_fast.data.executor_torch import render_plan
from copynce_fast.data.plan import Occluder, PhotoOp
from copynce_fast.data.plan_sampler import sample_pair
from copynce_fast.data.presets import descriptor_preset, matcher_preset
from copynce_fast.data.synthetic import synthetic_images
from copynce_fast.utils import benchmarking as bench

SOURCE_HW = (375, 500)


def views_and_pixels(preset_name: str, size: int, pairs: int):
    """(plans, geometry-only uint8 views): both views of ``pairs`` pairs."""
    preset = descriptor_preset(size=size) if preset_name == "descriptor" else matcher_preset(size=size)
    images = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in synthetic_images(8, SOURCE_HW, 0)]
    plans = [p for k in range(pairs) for p in (lambda pp: (pp.query, pp.reference))(
        sample_pair(preset, 0, k // len(images), k % len(images), lambda i: SOURCE_HW, len(images)))]
    pixels = [render_plan(p, images[p.source_index], images[p.overlay.index] if p.overlay is not None else None,
                          photometric=False) for p in plans]
    return plans, pixels


def one_round(plans, pixels, cost: dict, count: dict) -> None:
    """Adds each op's CPU seconds to cost[kind] (and its number to count[kind]), ops in plan order."""
    occluders.render_occluder.cache_clear()
    for plan, img in zip(plans, pixels):
        for op in plan.ops:
            t0 = time.process_time()
            if isinstance(op, PhotoOp):
                img = photometric.apply_photo_op(img, op)
            elif isinstance(op, Occluder):
                img = occluders.composite(img, occluders.render_occluder(op, plan.out_hw))
            cost[op.kind] += time.process_time() - t0
            count[op.kind] += 1


def run(plans, pixels, rounds: int) -> dict:
    """{path: {kind: [seconds per round]}} for the C++ and torch paths, alternating round by round."""
    fast = (photometric._CPP, occluders._CPP)
    paths = {"C++": fast, "torch": (None, None)} if _cpp.HAS_PHOTOMETRIC else {"torch": (None, None)}
    out = {name: defaultdict(list) for name in paths}
    counts = {}
    try:
        for r in range(rounds + 1):  # round 0 warms both (fonts, allocator, index caches)
            for name, (p_cpp, o_cpp) in paths.items():
                photometric._CPP, occluders._CPP = p_cpp, o_cpp
                cost, count = defaultdict(float), defaultdict(int)
                one_round(plans, pixels, cost, count)
                if r:
                    for kind, secs in cost.items():
                        out[name][kind].append(secs)
                counts = count
    finally:
        photometric._CPP, occluders._CPP = fast
    return {"times": out, "counts": counts}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=["descriptor", "matcher"], default="descriptor")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.rounds, args.size = 16, 1, 96
    torch.set_num_threads(1)
    plans, pixels = views_and_pixels(args.preset, args.size, args.pairs)
    res = run(plans, pixels, args.rounds)
    times, counts = res["times"], res["counts"]
    n_views = len(plans)
    rows = []
    totals = defaultdict(float)
    for kind in sorted(counts, key=lambda k: -float(np.median(times["torch"][k]))):
        row = {"op": kind, "per_view": counts[kind] / n_views}
        for name in times:
            secs = float(np.median(times[name][kind]))
            row[f"{name} ms/op"] = 1e3 * secs / counts[kind]
            row[f"{name} ms/pair"] = 2e3 * secs / n_views
            totals[name] += 2e3 * secs / n_views
        rows.append(row)
    rows.append({"op": "all ops + occluders", **{f"{name} ms/pair": totals[name] for name in times}})
    cols = ["op", "per_view"] + [f"{name} {unit}" for name in times for unit in ("ms/op", "ms/pair")]
    bench.print_table(rows, cols, title=f"photometric ops per kind ({args.preset}, {args.size} px, "
                                        f"{args.pairs} pairs; CPU time, one thread; medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
