"""Deprecated: benchmarks import ``copynce_fast.utils.benchmarking`` (the one timing helper). This shim only keeps
``benchmarks/bench_official.py`` working until it moves over; delete it when nothing imports ``_bench``."""
from pathlib import Path

from copynce_fast.utils.benchmarking import _device_name as device_name  # noqa: F401
from copynce_fast.utils.benchmarking import env_header, peak_memory_mb, print_table, write_jsonl  # noqa: F401

RESULTS_DIR = Path(__file__).resolve().parent / "results"
