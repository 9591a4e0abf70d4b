"""Thin entry point: `python scripts/evaluate.py ARGS` is `copynce-fast evaluate ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
