"""``copynce-fast bench``: run a benchmark script of the repository's ``benchmarks/`` folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from copynce_fast.cli._common import CliError, add_common_args, add_subparser, info

# name -> candidate scripts, first existing wins
SCRIPTS = {
    "copynce": ("bench_copynce.py",),
    "overlap": ("bench_overlap.py",),
    "models": ("bench_models.py",),
    "loader": ("bench_loader.py",),
    "eval": ("bench_eval.py",),
    "search": ("bench_eval_search.py",),
    "dense": ("bench_dense.py",),
    "train": ("bench_train_step.py", "bench_train.py"),
    "official": ("bench_official.py",),
}

DESCRIPTION = f"""\
Run one of the benchmark scripts in the repository's benchmarks/ folder with this Python interpreter.
Benchmarks ship with the source tree, not the wheel: use an editable install (pip install -e .) or point
--benchmarks-dir at a checkout. Extra arguments after '--' go to the script.

names: {', '.join(SCRIPTS)} (or any benchmarks/bench_<name>.py)

examples:
  copynce-fast bench eval --quick
  copynce-fast bench models -- --batch 128
  copynce-fast bench official --official-src ../CopyNCE      # beside the official code (issue 11)
"""


def add_parser(subparsers) -> None:
    p = add_subparser(subparsers, "bench", "run a benchmark script (benchmarks/bench_*.py)", DESCRIPTION)
    p.usage = ("copynce-fast bench [-h] [--quick] [--benchmarks-dir DIR] [--official-src DIR] [--debug] name "
               "[-- SCRIPT_ARGS ...]")
    p.add_argument("name", help=f"benchmark: {', '.join(SCRIPTS)}")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke configuration")
    p.add_argument("--benchmarks-dir", type=Path, default=None,
                   help="benchmarks folder (default: <repo>/benchmarks next to the installed package)")
    p.add_argument("--official-src", default=None, metavar="DIR",
                   help="official CopyNCE checkout, passed to the 'official' benchmark (or set COPYNCE_OFFICIAL_SRC)")
    p.set_defaults(script_args=[])  # filled by cli.main from the arguments after "--"
    add_common_args(p)


def benchmarks_dir(override: Path | None = None) -> Path:
    """The benchmarks folder: ``override``, else ``<repo>/benchmarks`` beside the (editable) package."""
    import copynce_fast

    folder = override or Path(copynce_fast.__file__).resolve().parent.parent / "benchmarks"
    if not folder.is_dir():
        raise CliError(f"no benchmarks folder at {folder}: benchmarks live in the source tree; install with "
                       f"'pip install -e .' from a checkout or pass --benchmarks-dir")
    return folder


def resolve_script(name: str, folder: Path) -> Path:
    candidates = SCRIPTS.get(name, (f"bench_{name}.py",))
    for c in candidates:
        if (folder / c).is_file():
            return folder / c
    available = sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py"))
    raise CliError(f"name: no benchmark {name!r} in {folder} (looked for {', '.join(candidates)}); "
                   f"available scripts: {', '.join(available) or 'none'}")


def run(args) -> int:
    folder = benchmarks_dir(args.benchmarks_dir)
    script = resolve_script(args.name, folder)
    extra = list(args.script_args)
    if args.official_src:  # absolute: the script runs from the repository root, not from the caller's folder
        extra = ["--official-src", str(Path(args.official_src).expanduser().resolve()), *extra]
    cmd = [sys.executable, str(script), *(["--quick"] if args.quick else []), *extra]
    info(f"running {' '.join(cmd)}")
    return subprocess.run(cmd, cwd=folder.parent).returncode
