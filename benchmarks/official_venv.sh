#!/usr/bin/env bash
# A separate virtualenv for running copynce-fast beside the official CopyNCE code (bench_official.py, items 3-5):
# the project's torch, the torchvision release built for it, the official code's dependencies (the [official]
# extra) and copynce-fast itself with DALI and faiss. The project's own venv stays untouched.
#
#   bash benchmarks/official_venv.sh [VENV_DIR]          # default: ../official-venv beside the repository
#   VENV_DIR/bin/python benchmarks/bench_official.py --official-src /path/to/CopyNCE
#
# TORCH / TORCHVISION override the pair (defaults: the CPU torch 2.13.0 and torchvision 0.28.*, its release).
# torchvision is installed without dependencies so that pip cannot swap the torch build; on a CPU-only torch its
# C operators do not load, which official_harness.py works around (only its Python transforms are used).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$REPO/../official-venv}
TORCH=${TORCH:-torch==2.13.0}
TORCHVISION=${TORCHVISION:-torchvision==0.28.*}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$TORCH"
"$VENV/bin/pip" install -q --no-deps "$TORCHVISION"
"$VENV/bin/pip" install -q pybind11 setuptools wheel
"$VENV/bin/pip" install -q --no-build-isolation -e "$REPO[official,faiss,dali]"
"$VENV/bin/python" - "$REPO/benchmarks" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import official_harness as H
missing = H.missing_full_deps()
print(f"official venv: missing {', '.join(missing)}" if missing else "official venv ready")
sys.exit(1 if missing else 0)
EOF
