"""Thin entry point: `python scripts/extract.py ARGS` is `copynce-fast extract ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
