"""Shared benchmark plumbing: timing, environment header, markdown table and JSONL rows.

Every benchmark script times its providers side by side in the same run (eager torch reference,
``torch.compile``d reference, the fast path), reports medians and peak memory, and appends one JSONL
row per measurement to ``benchmarks/results/<name>.jsonl`` -- but only on CUDA: CPU or interpreter
timings are smoke tests, never performance, and are not written.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)"


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_header() -> dict:
    """Device, versions, git sha and date: stored with every row and printed above every table."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "git": git_sha(),
        "date": _dt.date.today().isoformat(),
    }


def time_ms(fn: Callable[[], object], warmup: int = 5, rep: int = 30) -> float:
    """Median wall time of ``fn()`` in milliseconds.

    On CUDA: CUDA events around each call (after ``warmup`` calls), median of ``rep``. On CPU: perf_counter,
    for smoke runs only.
    """
    for _ in range(warmup):
        fn()
    times = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        for _ in range(rep):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()  # sync point: one per timed repetition
            times.append(start.elapsed_time(end))
    else:
        for _ in range(rep):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_memory_mb(fn: Callable[[], object]) -> float | None:
    """Peak extra CUDA memory of one ``fn()`` call above what was allocated before it (None on CPU)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def print_table(rows: list[dict], columns: list[str], title: str = "") -> None:
    """Markdown table of ``rows`` restricted to ``columns``, preceded by the environment header."""
    env = env_header()
    if title:
        print(f"\n### {title}")
    print(f"device: {env['device']} | torch {env['torch']} | triton {env['triton']} | git {env['git']} | {env['date']}")
    if not torch.cuda.is_available():
        print("(CPU smoke run: these timings are not performance numbers and are not recorded)")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return "-" if v is None else str(v)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")


def write_jsonl(name: str, rows: list[dict]) -> Path | None:
    """Append rows (with the environment header) to ``benchmarks/results/<name>.jsonl``; CUDA only."""
    if not torch.cuda.is_available() or not rows:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.jsonl"
    env = env_header()
    with path.open("a") as f:
        for r in rows:
            f.write(json.dumps({**env, **r}) + "\n")
    return path
