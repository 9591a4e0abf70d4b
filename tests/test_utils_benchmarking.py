"""copynce_fast.utils.benchmarking on the CPU: the timing helper's statistics and call counts, JSONL rows marked as
not performance, the table's min-max column."""
import json
import time

import pytest
import torch

from copynce_fast.utils import benchmarking as bench


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path (perf_counter)")
def test_measure_counts_calls_and_orders_its_statistics():
    calls = []
    sleeps = iter([0.0] * 2 + [0.001, 0.05, 0.001, 0.001, 0.003])  # 2 warm-up calls, then 5 timed ones

    def fn():
        calls.append(1)
        time.sleep(next(sleeps))

    t = bench.measure(fn, warmup=2, min_reps=5)
    assert len(calls) == 7 and t.reps == 5 and t.timer == "perf_counter"
    assert t.min_ms <= t.median_ms <= t.max_ms
    assert t.max_ms >= 50.0 and t.median_ms < 10.0  # the median (not the mean, ~11 ms) ignores the slow call
    assert set(t.row()) == {"ms", "ms_min", "ms_max", "reps", "timer"} and t.row()["ms"] == t.median_ms


def test_measure_rejects_bad_counts():
    with pytest.raises(ValueError, match="min_reps"):
        bench.measure(lambda: None, min_reps=0)
    with pytest.raises(ValueError, match="warmup"):
        bench.measure(lambda: None, warmup=-1)


def test_write_jsonl_goes_to_the_named_file_with_the_header(tmp_path, monkeypatch):
    target = tmp_path / "rows.jsonl"
    monkeypatch.setenv(bench.JSONL_ENV, str(target))
    bench.write_jsonl("demo", [{"ms": 1.5}, {"ms": 2.5}])
    bench.write_jsonl("other", [{"ms": 3.0}])
    assert bench.write_jsonl("demo", []) is None
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["bench"], r["ms"]) for r in rows] == [("demo", 1.5), ("demo", 2.5), ("other", 3.0)]
    for r in rows:
        assert r["performance"] is torch.cuda.is_available()
        assert {"device", "torch", "triton", "python", "git", "date"} <= set(r)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU default: no file without the variable")
def test_write_jsonl_writes_nothing_on_cpu_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv(bench.JSONL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert bench.write_jsonl("demo", [{"ms": 1.0}]) is None
    assert not (tmp_path / "benchmarks").exists()


def test_print_table_shows_the_range_and_says_when_it_is_a_smoke_run(capsys):
    bench.print_table([{"name": "a", "ms": 1.25, "ms_min": 1.0, "ms_max": 2.0}, {"name": "b", "ms": None}],
                      ["name", "ms", "min-max"], title="demo")
    out = capsys.readouterr().out
    assert "### demo" in out and "| a | 1.250 | 1.000-2.000 |" in out and "| b | - | - |" in out
    assert ("CPU smoke run" in out) is not torch.cuda.is_available()
