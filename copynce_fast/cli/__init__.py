"""The ``copynce-fast`` command line: one argparse parser, one module per subcommand.

Each subcommand lives in ``copynce_fast/cli/<name>.py`` (``-`` in a name is ``_`` in the file) and exposes
``add_parser(subparsers)`` (adds its sub-parser) and ``run(args) -> int`` (the exit code). Modules import torch,
faiss and the models inside ``run``, so ``copynce-fast --help`` stays fast.

Errors: a bad argument or file is reported as one line ``copynce-fast <cmd>: error: ...`` on stderr with a
non-zero exit code (2 for usage errors found by argparse, 1 for everything found while running);
``--debug`` re-raises instead, to get the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from copynce_fast import __version__
from copynce_fast.cli._common import CliError, name_the_flag, one_line

# The subcommands, in --help order.
COMMANDS = ("extract", "index", "search", "evaluate", "rescore", "compare", "match-video", "export", "bench", "train",
            "demo", "knn")


def _register(subparsers, module_name: str) -> None:
    module = importlib.import_module(module_name)
    before = set(subparsers.choices)
    module.add_parser(subparsers)
    added = [name for name in subparsers.choices if name not in before]
    if not added:
        raise RuntimeError(f"{module_name}.add_parser added no subcommand")
    for name in added:
        subparsers.choices[name].set_defaults(_run=module.run, _command=name)


def build_parser() -> argparse.ArgumentParser:
    """The full ``copynce-fast`` parser (subcommands included)."""
    parser = argparse.ArgumentParser(
        prog="copynce-fast",
        description="Image copy detection with CopyNCE models: extract descriptors, index, search, evaluate "
                    "(μAP / RP90), rescore with the matcher, compare two images, match videos (copied segments, "
                    "VSC2022 metrics), export, benchmark.",
        epilog="Run 'copynce-fast <command> --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"copynce-fast {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        _register(subparsers, f"copynce_fast.cli.{name.replace('-', '_')}")  # match-video -> match_video.py
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if argv[:1] == ["bench"] and "--" in argv:  # the benchmark script's own arguments follow "--"
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    try:
        args, extras = parser.parse_known_args(argv)
        sub = parser._subparsers._group_actions[0].choices.get(args.command, parser)  # "copynce-fast <cmd>: error"
        if extras and not getattr(args, "_accepts_overrides", False):  # only `train` takes --section.field=value
            sub.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = extras
    except SystemExit as e:  # --help, --version (code 0) and usage errors (code 2, message already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    command = getattr(args, "_command", args.command)
    if passthrough:
        args.script_args = passthrough
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"copynce-fast {command}: interrupted", file=sys.stderr)
        return 130
    except CliError as e:  # found by the CLI: the message names the flag
        if debug:
            raise
        print(f"copynce-fast {command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:  # found by the library: the message names the parameter, we name its flag
        if debug:
            raise
        print(f"copynce-fast {command}: error: {name_the_flag(one_line(e), sub)}", file=sys.stderr)
        return 1
    except Exception as e:  # anything else is unexpected: still one line, with the exception type
        if debug:
            raise
        print(f"copynce-fast {command}: error: {type(e).__name__}: {one_line(e)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


__all__ = ["main", "build_parser", "COMMANDS"]
