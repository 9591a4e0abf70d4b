"""Thin entry point: `python scripts/compare.py ARGS` is `copynce-fast compare ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
