"""Interleaved timing of the side-by-side benchmarks (``bench_official.py`` and ``official_training.py``).

Every provider runs once per repetition, in turn, so a slow drift of the machine (clocks, other jobs) reaches all
of them alike; results are milliseconds per call, summarised as median [min-max].
"""
from __future__ import annotations

import statistics
import time

from copynce_fast.utils.benchmarking import sync


CPU_MS: dict[str, list[float]] = {}  # this process's CPU time per call, from the last ``interleaved`` run


def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Milliseconds of each ``fns[name]()`` call, every provider once per repetition (after ``warmup`` rounds).

    Returns wall times. The CPU time this process spent meanwhile (all its threads, no worker processes) goes to
    ``CPU_MS``: on a machine shared with other jobs it is the steadier measure of in-process providers.
    """
    times = {k: [] for k in fns}
    CPU_MS.clear()
    CPU_MS.update({k: [] for k in fns})
    for rep in range(warmup + reps):
        for name, fn in fns.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            if rep >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
                CPU_MS[name].append((time.process_time() - c0) * 1e3)
    return times


def spread(ts: list[float]) -> dict:
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "n": len(ts)}
