"""Thin entry point: `python scripts/search.py ARGS` is `copynce-fast search ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
