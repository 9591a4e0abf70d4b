#!/usr/bin/env bash
# GPU proof (issue 10): on a bare GPU machine, in one call of at most ~9 minutes, install the package, run the GPU
# tests and the kernel tests on CUDA, the benchmarks at their real shapes (each baseline timed in the same run) and
# a short bf16 + compile trainer run; then write a summary table against the targets.
#
#   bash benchmarks/gpu_proof.sh              # on the GPU machine (device tool): everything, ~9 min
#   bash benchmarks/gpu_proof.sh --quick      # CPU dry run in a couple of minutes: tiny shapes, GPU steps skipped
#   options: --official (also the side-by-side official run, needs COPYNCE_OFFICIAL_SRC and
#            benchmarks/bench_official.py), --no-install (use the environment as it is), --parts=A,B (only these
#            of install,tests,kernels,models,search,official; e.g. a second call on a still-warm machine)
#   environment: OUT (default out/gpu_proof), PYTHON (default python3), GPU_PROOF_BUDGET_S (default 540),
#                GPU_PROOF_OFFICIAL=1 (= --official), COPYNCE_OFFICIAL_SRC (a folder inside the checkout on the
#                device: ../shared does not travel), GPU_PROOF_OFFICIAL_ITEMS (default 1,2,4)
#
# Output, all under $OUT (the device tool returns at most 8 files, no deeper than 2 folders, so there are exactly
# these 8): summary.md (status of every part and step, headline numbers vs the targets), results.jsonl (one row
# per measurement, with device / versions / git sha / date), and one log per part: install.log, tests.log,
# kernels.log, models.log, search.log, official.log. Scratch files (step statuses, JPEGs, a trainer run) go to a
# temporary folder outside $OUT.
#
# Robustness: no `set -e`; every step runs under its own `timeout` (its limit, cut to what is left of the total
# budget), its exit status is recorded (ok / fail (rc N) / timeout), steps run in priority order (correctness,
# then the targets, then the rest) so running out of time skips the least important ones, and the summary is
# rewritten after every step, so a killed call still leaves one. CPU timings are never performance numbers: the
# summary shows no CPU number as a headline.
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

QUICK=0
INSTALL=1
OFFICIAL=${GPU_PROOF_OFFICIAL:-0}
PARTS=install,tests,kernels,models,search,official
NO_CUDA="skipped: no CUDA"
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --official) OFFICIAL=1 ;;
    --parts=*) PARTS=${arg#--parts=} ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_proof.sh: unknown argument $arg (--quick, --no-install, --official, --parts=A,B)" >&2; exit 2 ;;
  esac
done

OUT=${OUT:-$ROOT/out/gpu_proof}
mkdir -p "$OUT" || { echo "gpu_proof.sh: OUT: cannot create $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_PROOF_BUDGET_S:-540}
RESERVE=15  # seconds kept for the final summary
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_proof.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STEPS=$WORK/steps.tsv
: > "$STEPS"
rm -f "$OUT"/summary.md "$OUT"/results.jsonl "$OUT"/*.log
export COPYNCE_BENCH_JSONL=$OUT/results.jsonl PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_proof.sh: PYTHON: $PY cannot import torch (set PYTHON to the interpreter that has torch)" >&2
  exit 2
fi
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
# Real kernels on CUDA. Without CUDA the kernel benchmarks (and tests/conftest.py) switch the Triton interpreter on
# themselves; the model / trainer / search benchmarks then use the torch paths (the interpreter would dominate).
unset TRITON_INTERPRET
if [ "$HAS_CUDA" != 1 ] && [ "$QUICK" = 0 ]; then
  echo "gpu_proof.sh: no CUDA here: running the --quick configuration (GPU steps skipped)"
  QUICK=1
fi
if [ "$QUICK" = 1 ]; then
  INSTALL=0  # a dry run uses the environment as it is
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # smoke runs: no thread spinning on a small shared CPU
fi
BIN=$("$PY" -c "import os, sys; print(os.path.dirname(sys.executable))")
PYTEST=("$PY" -m pytest)  # fallback only: `python -m pytest` puts the repo root on sys.path
[ -x "$BIN/pytest" ] && PYTEST=("$BIN/pytest")
XDIST=()
[ "$HAS_CUDA" = 1 ] && "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
Q=()
[ "$QUICK" = 1 ] && Q=(--quick)

# step PART LIMIT_S NAME CMD...: run CMD under `timeout`, output appended to $OUT/PART.log, status to $STEPS.
step() {
  local part=$1 limit=$2 name=$3
  shift 3
  local left=$((START + BUDGET - RESERVE - $(date +%s)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    skip "$part" "$name" "skipped: out of time"
    return
  fi
  local log=$OUT/$part.log t0 rc status
  printf '\n=== %s | %s | limit %ss | %s\n' "$name" "$(date -u +%FT%TZ)" "$limit" "$*" >> "$log"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124) status="timeout (${limit}s)" ;;
    137) status="timeout or killed (rc 137)" ;;
    *) status="fail (rc $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$part" "$name" "$status" "$(($(date +%s) - t0))" "$*" >> "$STEPS"
  printf '%-8s %-56s %s (%ss)\n' "$part" "$name" "$status" "$(($(date +%s) - t0))"
}

# skip PART NAME REASON: record a step that did not run.
skip() {
  printf '%s\t%s\t%s\t0\t-\n' "$1" "$2" "$3" >> "$STEPS"
  printf '\n=== %s | %s\n' "$2" "$3" >> "$OUT/$1.log"
  printf '%-8s %-56s %s\n' "$1" "$2" "$3"
}

summary() {
  "$PY" benchmarks/gpu_proof_summary.py --steps "$STEPS" --results "$OUT/results.jsonl" --out "$OUT/summary.md" \
    --mode "$([ "$QUICK" = 1 ] && echo quick || echo full)" --elapsed $(($(date +%s) - START)) --budget "$BUDGET" \
    > /dev/null || echo "gpu_proof.sh: the summary failed" >&2
}

# ---------------------------------------------------------------------------------------------------------- tasks
# One function per step (or two), each naming its part (= its log).

t_env() {
  cat > "$WORK/env.sh" <<ENV
nvidia-smi || echo "nvidia-smi: not available"
uname -a; nproc; free -g 2>/dev/null; df -h "$ROOT" 2>/dev/null
"$PY" -V
"$PY" -m pip list 2>/dev/null | grep -iE '^(torch|triton|timm|pytest|pytest-xdist|hypothesis|opencv[a-z-]*|numpy|pillow|matplotlib|faiss[a-z-]*|nvidia-dali[a-z0-9-]*|xformers|av|setuptools|pybind11) '
exit 0
ENV
  step install 30 "environment (nvidia-smi, versions)" bash "$WORK/env.sh"
}

t_pip() {
  # The C++ CPU helpers (_C: the loader's executor and resize, overlap counts) are built when the image can (it
  # lists pybind11, setuptools and a compiler): the trainer's CPU workers then run the loader as measured on the
  # CPU. Where the build fails, the package goes in without them (torch fallbacks, same pixels, slower loader).
  if [ "$INSTALL" = 1 ]; then
    step install 150 "pip install -e . (builds the C++ helpers _C)" "$PY" -m pip install --no-deps \
      --no-build-isolation --no-index -q -e .
    if ! "$PY" -c "import copynce_fast._C" >> "$OUT/install.log" 2>&1; then
      step install 120 "pip install -e . (COPYNCE_NO_EXT=1: _C did not build)" env COPYNCE_NO_EXT=1 "$PY" -m pip \
        install --no-deps --no-build-isolation --no-index -q -e .
    fi
  else
    skip install "pip install -e . (builds the C++ helpers _C)" "skipped: uses the current environment"
  fi
}

t_imports() {
  cat > "$WORK/imports.py" <<'PYTHON'
"""Every module of the installed package imports, from this checkout; device and versions."""
import importlib, os, pkgutil, sys
import torch
import copynce_fast
OPTIONAL = {"av", "nvidia", "faiss", "xformers", "onnx", "onnxruntime", "tensorboard"}  # extras, absent on the device
root = os.path.dirname(os.path.abspath(copynce_fast.__file__))
print("copynce_fast from", root)
if not root.startswith(os.getcwd()):
    sys.exit(f"copynce_fast is not imported from this checkout ({os.getcwd()})")
bad = []
for m in pkgutil.walk_packages(copynce_fast.__path__, "copynce_fast."):
    if m.name.endswith(".__main__"):  # runs the CLI
        continue
    try:
        importlib.import_module(m.name)
    except Exception as e:  # report every broken module, not only the first
        optional = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in OPTIONAL
        print(f"{'optional extra missing' if optional else 'BROKEN'}: {m.name}: {type(e).__name__}: {e}")
        bad += [] if optional else [m.name]
import copynce_fast.kernels.copynce, copynce_fast.kernels.overlap  # the setup.py package mapping
import triton
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
print(f"{len(bad)} broken module(s)")
sys.exit(1 if bad else 0)
PYTHON
  step install 60 "imports" "$PY" "$WORK/imports.py"
}

t_pytest_gpu() {
  if [ "$HAS_CUDA" = 1 ]; then
    step tests 120 "pytest -m gpu" "${PYTEST[@]}" -q -p no:cacheprovider "${XDIST[@]}" -m gpu tests
  else  # the same selection collected: the command cannot rot on CPU
    local files=() f
    for f in tests/test_*.py; do
      grep -q "mark.gpu" "$f" && files+=("$f")
    done
    skip tests "pytest -m gpu" "$NO_CUDA"
    step tests 90 "collect: pytest -m gpu" "${PYTEST[@]}" -qq -p no:cacheprovider --collect-only -m gpu "${files[@]}"
  fi
}

t_kernel_tests() {
  local files=() f
  for f in tests/test_ops_copynce.py tests/test_ops_overlap.py; do  # forward, backward, bf16/fp16, compile
    [ -f "$f" ] && files+=("$f")
  done
  if [ "$HAS_CUDA" = 1 ]; then
    step tests 150 "kernel tests on CUDA (${#files[@]} files)" "${PYTEST[@]}" -q -p no:cacheprovider "${XDIST[@]}" \
      -m "not gpu" "${files[@]}"
  else
    skip tests "kernel tests on CUDA" "$NO_CUDA"
    step tests 60 "collect: kernel tests (${#files[@]} files)" "${PYTEST[@]}" -qq -p no:cacheprovider --collect-only \
      "${files[@]}"
  fi
}

t_copynce() {
  step kernels 150 "CopyNCE fwd/bwd/fwd+bwd bf16, B=256 L=196 + B=32 L=441" "$PY" benchmarks/bench_copynce.py \
    "${Q[@]}" --shape descriptor-S-256 matcher-336 --dtype bf16
  [ "$QUICK" = 1 ] && return  # --quick times one tiny fp32 config whatever it is asked
  step kernels 90 "CopyNCE fwd/bwd/fwd+bwd fp32, B=256 L=196" "$PY" benchmarks/bench_copynce.py \
    --shape descriptor-S-256 --dtype fp32
}

t_overlap() {
  step kernels 120 "overlap counts: geometry, dense (B=256, 224 px)" "$PY" benchmarks/bench_overlap.py "${Q[@]}" \
    --batch 256 --size 224
}

t_plans() {
  step kernels 90 "CopyNCE from plans as the trainer calls it, B=192" "$PY" benchmarks/bench_copynce_plans.py \
    "${Q[@]}" --batch 192
}

t_train() {
  if [ "$QUICK" = 1 ]; then
    step models 60 "descriptor train step + loader (quick)" "$PY" benchmarks/bench_train.py --quick
  else
    step models 180 "descriptor step ours vs reference + loader (16 workers)" "$PY" benchmarks/bench_train.py \
      --arch vit_small --img 224 --pairs 192 --rep 10 --workers 16
  fi
}

t_search() {
  if [ "$QUICK" = 1 ]; then
    step search 90 "extraction + exact search (quick)" "$PY" benchmarks/bench_eval.py --quick --no-dali --workers 0 \
      --arch vit_tiny --img-size 64 --images 8 --batch 4
  else
    step search 150 "extraction img/s + exact search 50k x 1M x 512" "$PY" benchmarks/bench_eval.py --images 8192 \
      --batch 256 --workers 16 --search 50000,1000000,512
  fi
}

t_vit() {
  if [ "$QUICK" = 1 ]; then
    step models 60 "ViT train/infer (quick)" "$PY" benchmarks/bench_models.py --quick
    return
  fi
  step models 150 "ViT-S/16 train/infer, SDPA eager vs compiled" "$PY" benchmarks/bench_models.py --arch vit_small \
    --img 224 --attn sdpa --compile both --mode train infer --batch 256 --rep 10
  step models 60 "ViT-S/16 train/infer, math attention eager" "$PY" benchmarks/bench_models.py --arch vit_small \
    --img 224 --attn math --compile eager --mode train infer --batch 256 --rep 10
}

t_dense() {
  step kernels 75 "dense-map chain (official route, ours), B=192" "$PY" benchmarks/bench_dense.py "${Q[@]}" \
    --batch 192 --size 224
}

t_trainer() {
  # the trainer as a user runs it: bf16 autocast + torch.compile + Triton kernels + the torch loader
  local cli=("$BIN/copynce-fast")
  [ -x "$BIN/copynce-fast" ] || cli=("$PY" -m copynce_fast.cli)
  local train=("${cli[@]}" train --preset descriptor_vits_224 --data.source builtin --data.synthetic_images 1024
               --data.backend torch --data.num_workers 16 --run.max_steps 20 --run.log_every 5
               --run.eval_after false --run.progress false --run.out_dir "$WORK/train_smoke")
  if [ "$HAS_CUDA" = 1 ]; then
    step tests 150 "trainer: 20 steps bf16 + compile + Triton" "${train[@]}"
  else  # the same flags parsed and validated
    skip tests "trainer: 20 steps bf16 + compile + Triton" "$NO_CUDA"
    step tests 60 "trainer flags (--print-config)" "${train[@]}" --print-config
  fi
}

t_video() {
  # video copy detection: PyAV decode + embedding throughput, and localisation of a 1 h x 1 h pair (issue 15);
  # PyAV is not part of the device's stack: without it the step says so instead of failing
  local name="video: extraction frames/s + 1 h x 1 h localisation"
  if ! "$PY" -c "import av" 2>/dev/null; then
    skip search "$name" "skipped: PyAV (av) not installed"
  elif [ "$QUICK" = 1 ]; then
    step search 60 "$name (quick)" "$PY" benchmarks/bench_video.py --quick
  else
    step search 150 "$name" "$PY" benchmarks/bench_video.py --hours 1 --workers 8
  fi
}

t_official() {
  local name="official implementation side by side (items ${GPU_PROOF_OFFICIAL_ITEMS:-1,2,4})"
  if [ "$OFFICIAL" != 1 ]; then
    skip official "$name" "skipped: not requested (--official)"
  elif [ ! -f benchmarks/bench_official.py ]; then
    skip official "$name" "skipped: benchmarks/bench_official.py absent"
  elif [ -z "${COPYNCE_OFFICIAL_SRC:-}" ]; then
    skip official "$name" "skipped: COPYNCE_OFFICIAL_SRC unset"
  elif [ "$HAS_CUDA" != 1 ]; then
    skip official "$name" "$NO_CUDA"
  else
    # stdout (its markdown tables) goes to official.log; its own md/JSONL/PNG stay in benchmarks/results/ (the
    # device returns 8 files from $OUT). Items 3 and 5 need the official code's dependencies, absent on the device.
    step official 600 "$name" "$PY" benchmarks/bench_official.py --official-src "$COPYNCE_OFFICIAL_SRC" \
      --items "${GPU_PROOF_OFFICIAL_ITEMS:-1,2,4}"
  fi
}

# task:part in priority order: correctness first, then the targets of issue 10, then the rest
TASKS=(env:install pip:install imports:install pytest_gpu:tests kernel_tests:tests copynce:kernels overlap:kernels
       plans:kernels train:models search:search vit:models dense:kernels trainer:tests video:search
       official:official)

echo "gpu_proof: mode $([ "$QUICK" = 1 ] && echo quick || echo full), CUDA $HAS_CUDA, budget ${BUDGET}s," \
  "parts $PARTS, OUT $OUT"
for part in install tests kernels models search official; do
  : >> "$OUT/$part.log"
done
for task in "${TASKS[@]}"; do
  case ",$PARTS," in
    *",${task#*:},"*) "t_${task%%:*}"; summary ;;
  esac
done
echo "total $(($(date +%s) - START))s"
cat "$OUT/summary.md"
# exit status: 0 when every step ran and passed (or was skipped by choice or for want of CUDA)
! cut -f3 "$STEPS" | grep -qE '^(fail|timeout|skipped: out of time)'
