"""Summary of a ``benchmarks/gpu_proof.sh`` run: part and step statuses, headline numbers against issue 10's targets.

Reads the step table the script writes (tab-separated: part, step, status, seconds, command) and the JSONL rows of
the benchmarks (``copynce_fast.utils.benchmarking.write_jsonl``); writes one markdown file. Standard library only,
so it runs even when torch is broken. Rows not measured on CUDA (``"performance": false``) never give a headline
number: a CPU or interpreter timing is a smoke test, not performance.

    python benchmarks/gpu_proof_summary.py --steps STEPS.tsv --results results.jsonl --out summary.md
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

PARTS = ("install", "tests", "kernels", "models", "search", "official")
NO_CUDA = "skipped: no CUDA"
OUT_OF_TIME = "skipped: out of time"


@dataclass(frozen=True)
class Target:
    """One headline: the best ``key`` over the CUDA rows of ``bench`` that match ``where``.

    ``where`` maps a row field to its value; a string value ending in ``*`` matches by prefix.
    """
    what: str
    bench: str
    where: dict
    key: str
    unit: str
    target: float | None  # None: reported, no target
    higher_is_better: bool
    note: str = ""
    scale: float = 1.0  # value = row[key] * scale

    def matches(self, row: dict) -> bool:
        if row.get("bench") != self.bench or row.get(self.key) is None:
            return False
        for k, v in self.where.items():
            got = row.get(k)
            if isinstance(v, str) and v.endswith("*"):
                if not str(got).startswith(v[:-1]):
                    return False
            elif got != v:
                return False
        return True

    def value(self, row: dict) -> float:
        return row[self.key] * self.scale


FUSED_256 = dict(provider="triton", batch=256, patches=196, channels=384, dtype="bf16", mode="fwd+bwd")
TARGETS = [
    Target("CopyNCE fused fwd+bwd, bf16, B=256 L=196 C=384", "copynce", FUSED_256, "ms", "ms", 0.25, False),
    Target("  the same vs the compiled torch reference", "copynce", FUSED_256, "x_vs_compiled", "x", 10.0, True),
    Target("CopyNCE fused fwd+bwd, bf16, B=32 L=441 C=384", "copynce",
           dict(provider="triton", batch=32, patches=441, dtype="bf16", mode="fwd+bwd"), "ms", "ms", 0.2, False,
           "BENCHMARKS.md target"),
    Target("overlap counts from geometry, B=256, 224 px", "overlap",
           dict(provider="triton", source="geometry", occluders=False, batch=256, size=224), "ms", "ms", 0.1, False),
    Target("overlap counts from dense maps, B=256, 224 px", "overlap",
           dict(provider="triton", source="dense", batch=256, size=224), "ms", "ms", None, False,
           "predicted 0.07-0.09 ms"),
    Target("CopyNCE from plans as the trainer calls it, B=192", "copynce_plans", dict(provider="ours", batch=192),
           "x_vs_official", "x vs official 83 ms", 250.0, True, "official time: H100, DESIGN.md"),
    Target("descriptor training ViT-S/16 224, loader-fed (16 workers)", "train",
           dict(config="ours + loader*", arch="vit_small", img=224), "img_per_s", "img/s", 6500.0, True,
           "official step: 924 img/s"),
    Target("descriptor step, ours (fixed batch on the device)", "train", dict(config="ours", arch="vit_small", img=224),
           "img_per_s", "img/s", None, True),
    Target("  the same vs the reference configuration in this run", "train",
           dict(config="ours", arch="vit_small", img=224), "speedup", "x", None, True, "predicted >= 5x"),
    Target("ViT-S/16 224 train step, SDPA, compiled", "models",
           dict(arch="vit_small", img=224, attn="sdpa", compiled=True, mode="train"), "img_per_s", "img/s", None, True,
           "predicted 7.8k img/s (H100)"),
    Target("ViT-S/16 224 inference, SDPA, compiled", "models",
           dict(arch="vit_small", img=224, attn="sdpa", compiled=True, mode="infer"), "img_per_s", "img/s", None, True,
           "predicted 19.2k img/s (H100)"),
    Target("extraction, end to end (torch loader, decode included)", "eval",
           dict(kind="extract", stage="end-to-end", loader="torch", arch="vit_small", img_size=224), "images_per_s",
           "img/s", 15000.0, True),
    Target("exact search 50k x 1M x 512, top-10 (best provider)", "eval",
           dict(kind="search", n=50000, m=1000000, d=512), "ms", "s", 5.0, False, scale=1e-3),
]


def read_steps(path: Path) -> list[dict]:
    steps = []
    if path.is_file():
        for line in path.read_text().splitlines():
            cells = line.split("\t")
            if len(cells) >= 4:
                steps.append({"part": cells[0], "step": cells[1], "status": cells[2], "seconds": cells[3]})
    return steps


def read_rows(path: Path) -> tuple[list[dict], int]:
    """The JSONL rows and the number of unreadable lines (a run killed mid-write leaves half a line)."""
    rows, bad = [], 0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return rows, bad


def part_status(steps: list[dict]) -> str:
    """fail > timeout > out of time > no CUDA > ok > any other skip (the first reason)."""
    statuses = [s["status"] for s in steps]
    if not statuses:
        return "not run"
    for word, label in (("fail", "fail"), ("timeout", "timeout"), (OUT_OF_TIME, "incomplete (out of time)"),
                        (NO_CUDA, NO_CUDA)):
        if any(s.startswith(word) for s in statuses):
            return label
    if "ok" in statuses:
        return "ok"
    return statuses[0]


def verdict(t: Target, v: float) -> str:
    if t.target is None:
        return "reported"
    met = v >= t.target if t.higher_is_better else v <= t.target
    if met:
        return "met"
    factor = t.target / v if t.higher_is_better else v / t.target
    return f"missed ({factor:.2f}x off)"


def headline(t: Target, rows: list[dict]) -> tuple[str, str]:
    """(measured, verdict) of one target from the rows of its benchmark."""
    found = [r for r in rows if t.matches(r)]
    if not found:
        return "-", "no row"
    real = [r for r in found if r.get("performance")]
    if not real:
        return "CPU smoke only", "not a measurement"
    best = (max if t.higher_is_better else min)(real, key=t.value)
    v = t.value(best)
    extra = f" ({best['provider']})" if t.bench == "eval" and "provider" in best else ""
    return f"{v:.3g} {t.unit}{extra}", verdict(t, v)


def render(steps: list[dict], rows: list[dict], bad_lines: int, mode: str, elapsed: int | None,
           budget: int | None) -> str:
    env = next((r for r in rows if r.get("performance")), rows[0] if rows else {})
    out = ["# GPU proof summary", ""]
    out.append(f"mode: {mode} | device: {env.get('device', '?')} | torch {env.get('torch', '?')} "
               f"(CUDA {env.get('cuda', '?')}) | triton {env.get('triton', '?')} | git {env.get('git', '?')} | "
               f"{env.get('date', '?')} | elapsed {elapsed if elapsed is not None else '?'} s of "
               f"{budget if budget is not None else '?'} s")
    if mode == "quick" or not any(r.get("performance") for r in rows):
        out.append("")
        out.append("Dry run: no CUDA timings. CPU / interpreter numbers are smoke tests, not performance; "
                   "no headline number is shown for them.")
    out += ["", "## Parts", "", "| part | status | steps |", "|---|---|---|"]
    for part in PARTS:
        mine = [s for s in steps if s["part"] == part]
        detail = "; ".join(f"{s['step']}: {s['status']} ({s['seconds']} s)" for s in mine) or "-"
        out.append(f"| {part} | {part_status(mine)} | {detail} |")
    out += ["", "## Headline numbers vs the targets (issue 10; H200)", "",
            "| what | measured | target | verdict | note |", "|---|---|---|---|---|"]
    for t in TARGETS:
        measured, v = headline(t, rows)
        cmp = "-" if t.target is None else f"{'>=' if t.higher_is_better else '<='} {t.target:g} {t.unit}"
        out.append(f"| {t.what} | {measured} | {cmp} | {v} | {t.note} |")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("bench", "?")] = counts.get(r.get("bench", "?"), 0) + 1
    out += ["", "rows in results.jsonl: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
            + (f"; {bad_lines} unreadable line(s)" if bad_lines else "")]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=Path, required=True, help="the step table written by gpu_proof.sh")
    ap.add_argument("--results", type=Path, required=True, help="the JSONL rows of the benchmarks")
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write")
    ap.add_argument("--mode", default="full", choices=["full", "quick"])
    ap.add_argument("--elapsed", type=int, default=None, help="seconds since the start")
    ap.add_argument("--budget", type=int, default=None, help="the run's budget in seconds")
    args = ap.parse_args(argv)
    rows, bad = read_rows(args.results)
    text = render(read_steps(args.steps), rows, bad, args.mode, args.elapsed, args.budget)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
