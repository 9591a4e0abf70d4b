"""Benchmark plumbing for ``benchmarks/bench_*.py``: one timing helper, peak memory, the environment header,
markdown tables and JSONL rows.

Timing (:func:`measure`), median with min and max over the timed calls:

- CUDA, an op or kernel call: ``triton.testing.do_bench`` (CUDA events, L2 flushed before every call), with
  at least ``min_reps`` timed calls.
- CUDA, a whole step (a training step that updates its weights, a model forward on a big batch;
  ``whole_step=True``), or CUDA without Triton: CUDA events around each of ``min_reps`` calls after
  ``warmup`` calls, no L2 flush (a step is far bigger than L2).
- CPU: ``time.perf_counter`` around each call. A smoke test of the script, never a performance number:
  :func:`print_table` says so above every CPU table, and JSONL rows carry ``"performance": false``.

Loops that must be timed as wall clock (a loader feeding the model) use :func:`sync` around
``time.perf_counter``.

JSONL rows go to the file named by ``$COPYNCE_BENCH_JSONL`` when it is set (one file for a whole run, as
``benchmarks/gpu_proof.sh`` does; CPU rows too, marked as not performance), else, on CUDA only, to
``benchmarks/results/<name>.jsonl`` under the current directory.

This module sits at the bottom of the package: it imports torch and triton only inside functions.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Timing", "measure", "peak_memory_mb", "sync", "cuda_available", "env_header", "print_table",
           "write_jsonl", "JSONL_ENV"]

JSONL_ENV = "COPYNCE_BENCH_JSONL"


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over ``reps`` timed calls (0: not reported); ``timer`` names the method."""
    median_ms: float
    min_ms: float
    max_ms: float
    reps: int
    timer: str

    def row(self) -> dict:
        """The columns every benchmark row carries: ``ms`` (median), ``ms_min``, ``ms_max``, ``reps``, ``timer``."""
        return {"ms": self.median_ms, "ms_min": self.min_ms, "ms_max": self.max_ms, "reps": self.reps,
                "timer": self.timer}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    """Wait for the device (no-op on CPU): brackets wall-clock timing of device work."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()  # sync point: the caller reads the wall clock next


def _summary(times: list[float], timer: str) -> Timing:
    return Timing(statistics.median(times), min(times), max(times), len(times), timer)


def _cuda_events(fn: Callable[[], object], reps: int) -> list[float]:
    import torch

    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for start, end in pairs:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()  # sync point: once, after all timed calls
    return [start.elapsed_time(end) for start, end in pairs]


def _do_bench(fn: Callable[[], object], min_reps: int, rep_ms: float) -> Timing | None:
    try:
        from triton.testing import do_bench
    except ImportError:
        return None
    estimate = min(_cuda_events(fn, 1)[0], 1e4)
    rep = max(rep_ms, 1.2 * min_reps * estimate)  # do_bench picks the call count from its own estimate
    warmup = max(25.0, min(rep / 4, 250.0))
    try:
        times = do_bench(fn, warmup=warmup, rep=rep, return_mode="all")
    except (AssertionError, TypeError):  # a Triton without return_mode="all": median, min, max only
        med, lo, hi = do_bench(fn, warmup=warmup, rep=rep, quantiles=[0.5, 0.0, 1.0])
        return Timing(float(med), float(lo), float(hi), 0, "triton.testing.do_bench")
    return _summary([float(t) for t in times], "triton.testing.do_bench")


def measure(fn: Callable[[], object], *, warmup: int = 3, min_reps: int = 10, rep_ms: float = 100.0,
            whole_step: bool = False, host: bool = False) -> Timing:
    """Time ``fn()`` (see the module docstring for the method per device).

    Args:
        fn: the call to time; it is called ``warmup`` times first (compilation, autotuning, allocator).
        warmup: untimed calls before timing.
        min_reps: at least this many timed calls.
        rep_ms: do_bench only: at least this much timed GPU time.
        whole_step: CUDA events per call instead of do_bench (no L2 flush; for steps that update state).
        host: ``fn`` works on the CPU only (a CPU baseline next to a GPU): perf_counter on any machine.
    """
    import torch

    if warmup < 0 or min_reps < 1:
        raise ValueError(f"warmup/min_reps: need warmup >= 0 and min_reps >= 1, got {warmup}, {min_reps}")
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available() and not host:
        torch.cuda.synchronize()
        if not whole_step:
            timing = _do_bench(fn, min_reps, rep_ms)
            if timing is not None:
                return timing
        return _summary(_cuda_events(fn, min_reps), "cuda events")
    times = []
    for _ in range(min_reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return _summary(times, "perf_counter")


def peak_memory_mb(fn: Callable[[], object]) -> float | None:
    """Peak extra CUDA memory (MiB) of one ``fn()`` call above what was allocated before it (None on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()  # sync point: the peak is read after the call finished
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)"


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_header() -> dict:
    """Device, versions, git sha and date: stored with every JSONL row and printed above every table."""
    import torch

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": _device_name(),
        "performance": torch.cuda.is_available(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "git": _git_sha(),
        "date": _dt.date.today().isoformat(),
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return "-" if v is None else str(v)


def print_table(rows: list[dict], columns: list[str], title: str = "") -> None:
    """Markdown table of ``rows`` restricted to ``columns``, under the environment header.

    The pseudo-column ``"min-max"`` shows a row's ``ms_min``-``ms_max`` (from :meth:`Timing.row`).
    """
    env = env_header()
    if title:
        print(f"\n### {title}")
    print(f"device: {env['device']} | torch {env['torch']} (CUDA {env['cuda']}) | triton {env['triton']} | "
          f"python {env['python']} | git {env['git']} | {env['date']}")
    if not env["performance"]:
        print("(CPU smoke run: these timings are not performance numbers)")

    def cell(r: dict, c: str) -> str:
        if c == "min-max":
            return "-" if r.get("ms_min") is None else f"{_fmt(r['ms_min'])}-{_fmt(r['ms_max'])}"
        return _fmt(r.get(c))

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(cell(r, c) for c in columns) + " |")
    sys.stdout.flush()


def write_jsonl(name: str, rows: list[dict]) -> Path | None:
    """Append ``rows`` with the environment header and ``"bench": name`` (see the module docstring for where)."""
    if not rows:
        return None
    import torch

    target = os.environ.get(JSONL_ENV)
    if target:
        path = Path(target)
    elif torch.cuda.is_available():
        path = Path("benchmarks") / "results" / f"{name}.jsonl"
    else:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    env = env_header()
    with path.open("a") as f:
        for r in rows:
            f.write(json.dumps({"bench": name, **env, **r}, default=str) + "\n")
    print(f"appended {len(rows)} rows to {path}")
    return path
