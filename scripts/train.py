"""Thin entry point: `python scripts/train.py ARGS` is `copynce-fast train ARGS` (see --help)."""
import sys

from copynce_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
