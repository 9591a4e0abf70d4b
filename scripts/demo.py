"""Thin entry point: `python scripts/demo.py ARGS` is `copynce-fast demo ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
