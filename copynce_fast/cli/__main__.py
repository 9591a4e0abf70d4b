"""``python -m copynce_fast.cli`` (what torchrun launches): the same as the ``copynce-fast`` command."""
import sys

from copynce_fast.cli import main

sys.exit(main())
