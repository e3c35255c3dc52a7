#!/usr/bin/env bash
# GPU acceptance check (issue 20): one command for a machine with a CUDA GPU, run from a plain checkout.
#
#   bash bench/gpu_check.sh [--out DIR] [--plan] [--dry-run]
#
# Needs only a Python with torch (>= 2.11) and pytest; the project need not be installed: the checkout is put
# on PYTHONPATH. The interpreter is the first of: $PYTHON, .venv/bin/python, python3, python (one that has
# torch installed; $PYTHON, when set, must). The CUDA toolkit is found the way the extension's loader finds it
# (CUDA_HOME / CUDA_PATH, /usr/local/cuda, nvcc on PATH): this script sets neither.
#
# Steps, most informative per second first, each under its own time limit (the plan below; `--plan` prints it
# with the arithmetic): the build; the CUDA kernel tests against the reference in every dtype (alone, first);
# the self-check verdicts (which ops run natively, per dtype, under autocast and TF32); kernel and overhead
# benchmarks in fp32, then bf16 / autocast, then TF32; one short patched StyleGAN2-ADA run each with RG-GAN and
# Re-GAN (fp16 layers on); then, only if the time they need is left, compute-sanitizer (memcheck on both kernel
# families with the caching allocator off, racecheck on the modulated-conv kernel); with two or more GPUs,
# the DDP mask check.
#
# Output: everything lands in --out DIR (default: $OUT when set, else runs/gpu-check-<UTC time>/ in the
# checkout): summary.md (also bench/results/gpu-check-gpu.md), env.txt, results-gpu.md (every result table),
# gpu-check.tar.gz (logs + results). Result tables also go to bench/results/*-gpu.md.
# Exit status: 0 every step that ran passed; 1 a step failed; 2 nothing could run (no interpreter with torch,
# no GPU, a bad argument, a plan over the budget).
# --plan: print the steps, limits and budget arithmetic and exit (0, or 2 when the plan exceeds the budget).
# --dry-run: go through the whole sequence without a GPU, each step only echoing its command (tests use this;
# GPU_CHECK_DRY_FAIL=STEP makes that step report a failure).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2

die() { echo "gpu_check: $*" >&2; exit 2; }
OUT_DIR="${OUT:-}"
PLAN_ONLY=0
DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] && [ -n "$2" ] || die "--out needs a folder"; OUT_DIR="$2"; shift 2 ;;
        --out=*) OUT_DIR="${1#--out=}"; [ -n "$OUT_DIR" ] || die "--out needs a folder"; shift ;;
        --plan) PLAN_ONLY=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (usage: bash bench/gpu_check.sh [--out DIR] [--plan] [--dry-run])" ;;
    esac
done

# ---- the plan: budget arithmetic ---------------------------------------------------------------------------
# One H100, the whole check in 8 minutes including the CUDA build. RESERVE_S covers what runs outside the steps
# (interpreter and GPU probes before the first step, summary and archive after the last). Every step's limit
# is also cut to the time left, so the total holds even when a step overruns its estimate.
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
RESERVE_S=20
# name:limit_s:when  (when: always | if-time = only if its whole limit is still left | 2gpu = with >= 2 GPUs,
# if time is left; not part of the one-GPU plan)
PLAN=(
    "build:110:always"
    "cuda-tests:60:always"
    "self-check:20:always"
    "kernels-fp32:30:always"
    "overhead-fp32:25:always"
    "kernels-bf16:20:always"
    "overhead-bf16:20:always"
    "kernels-tf32:15:always"
    "overhead-tf32:15:always"
    "stylegan2-rggan:45:always"
    "stylegan2-regan:35:always"
    "memcheck:30:if-time"
    "racecheck:20:if-time"
    "ddp-masks:45:2gpu"
)
case "$BUDGET_S" in ''|*[!0-9]*) die "GPU_CHECK_BUDGET_S must be a whole number of seconds, got '$BUDGET_S'" ;; esac
plan_sum=0
for entry in "${PLAN[@]}"; do
    IFS=: read -r _name limit when <<< "$entry"
    [ "$when" = 2gpu ] || plan_sum=$((plan_sum + limit))
done
print_plan() {
    echo "| step | limit s | runs |"
    echo "|---|---|---|"
    for entry in "${PLAN[@]}"; do
        IFS=: read -r name limit when <<< "$entry"
        echo "| $name | $limit | $when |"
    done
    echo
    echo "one-GPU plan: steps ${plan_sum} s + reserve ${RESERVE_S} s = $((plan_sum + RESERVE_S)) s of a ${BUDGET_S} s budget"
}
if [ $((plan_sum + RESERVE_S)) -gt "$BUDGET_S" ]; then
    print_plan >&2
    die "the plan needs $((plan_sum + RESERVE_S)) s but the budget is ${BUDGET_S} s (GPU_CHECK_BUDGET_S)"
fi
if [ "$PLAN_ONLY" = 1 ]; then print_plan; exit 0; fi

started=$(date +%s)
[ -n "$OUT_DIR" ] || OUT_DIR="$ROOT/runs/gpu-check-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT_DIR" 2>/dev/null && [ -w "$OUT_DIR" ] || die "cannot write to the output folder '$OUT_DIR'"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")" || die "cannot make a work folder"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/logs" "$WORK/results"
ENV_TXT="$OUT_DIR/env.txt"
SUMMARY="$OUT_DIR/summary.md"

# ---- the interpreter and the import path ---------------------------------------------------------------------
PY=""
tried=()
# Whether torch is installed, without importing it (an import takes seconds; the probe below imports it once).
HAS_TORCH='import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'
if [ -n "${PYTHON:-}" ]; then
    tried+=("\$PYTHON=$PYTHON")
    "$PYTHON" -c "$HAS_TORCH" >/dev/null 2>&1 || die "\$PYTHON=$PYTHON has no torch"
    PY="$PYTHON"
else
    for cand in "$ROOT/.venv/bin/python" python3 python; do
        if [ "${cand#/}" != "$cand" ]; then [ -x "$cand" ] || continue; else command -v "$cand" >/dev/null 2>&1 || continue; fi
        tried+=("$cand")
        if "$cand" -c "$HAS_TORCH" >/dev/null 2>&1; then PY="$cand"; break; fi
    done
fi
if [ -z "$PY" ]; then
    msg="no Python with torch found (tried: ${tried[*]:-none of \$PYTHON, .venv/bin/python, python3, python exists})"
    echo "gpu_check: $msg" > "$ENV_TXT"
    printf '# GPU acceptance check\n\nNOT RUN: %s\n' "$msg" > "$SUMMARY"
    die "$msg"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export SPARSE_CORE_EXT_DIR="${SPARSE_CORE_EXT_DIR:-$WORK/ext}"

"$PY" - "$ROOT" > "$ENV_TXT" 2>&1 <<'PYEOF'
import os, shutil, subprocess, sys
root = sys.argv[1]
print(f"python: {sys.executable} ({sys.version.split()[0]})")
print(f"python bin: {os.path.dirname(sys.executable)}")
import torch
print(f"torch: {torch.__version__} (CUDA {torch.version.cuda})")
if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 11):
    sys.exit(f"torch {torch.__version__} is older than 2.11, the oldest this project supports")
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"gpus: {n}" + "".join(f"\n  cuda:{i}: {torch.cuda.get_device_name(i)}, capability "
                             f"{'.'.join(map(str, torch.cuda.get_device_capability(i)))}" for i in range(n)))
import sparse_core, vendor
from sparse_core.ops import loader
for mod in (sparse_core, vendor):
    where = os.path.dirname(os.path.abspath(mod.__file__))
    print(f"import {mod.__name__}: {where}" + ("" if where.startswith(root) else "  (NOT this checkout)"))
print(f"extension sources: {loader.source_dir()}")
home = loader._cuda_home()
nvcc = os.path.join(home, "bin", "nvcc") if home else None
if nvcc and os.path.exists(nvcc):
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    print(f"nvcc: {nvcc} ({version[-1] if version else '?'})")
else:
    print("nvcc: not found (CUDA_HOME, CUDA_PATH, /usr/local/cuda, PATH)")
ninja = shutil.which("ninja") or shutil.which("ninja", path=os.path.dirname(sys.executable))
print(f"ninja: {ninja or 'not found (pip install ninja)'}")
sanitizer = shutil.which("compute-sanitizer") or (home and os.path.join(home, "bin", "compute-sanitizer"))
print(f"compute-sanitizer: {sanitizer if sanitizer and os.path.exists(sanitizer) else 'not found'}")
PYEOF
probe_rc=$?
cat "$ENV_TXT"
if [ $probe_rc -ne 0 ] || grep -q "NOT this checkout" "$ENV_TXT"; then
    printf '# GPU acceptance check\n\nNOT RUN: the environment probe failed (env.txt)\n' > "$SUMMARY"
    die "the environment probe failed with $PY (see $ENV_TXT)"
fi
ngpu="$(sed -n 's/^gpus: //p' "$ENV_TXT")"
# The interpreter's own bin folder (a venv's ninja lives there) goes on PATH for torch's extension builder.
PY_BIN="$(sed -n 's/^python bin: //p' "$ENV_TXT")"
[ -n "$PY_BIN" ] && export PATH="$PATH:$PY_BIN"
SANITIZER="$(sed -n 's/^compute-sanitizer: //p' "$ENV_TXT")"
if [ "$DRY_RUN" = 1 ]; then
    ngpu=1
elif [ "${ngpu:-0}" -lt 1 ]; then
    printf '# GPU acceptance check\n\nNOT RUN: no CUDA GPU visible to torch (%s). Environment: env.txt\n' "$PY" > "$SUMMARY"
    die "no CUDA GPU visible to torch ($PY); nothing was run. Environment written to $ENV_TXT"
fi
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && [ "$DRY_RUN" = 0 ]; then   # build for this GPU only: half the nvcc time
    TORCH_CUDA_ARCH_LIST="$(sed -n 's/^  cuda:0: .*, capability \([0-9.]*\)$/\1/p' "$ENV_TXT")"
    [ -n "$TORCH_CUDA_ARCH_LIST" ] && export TORCH_CUDA_ARCH_LIST || unset TORCH_CUDA_ARCH_LIST
fi

# ---- steps ----------------------------------------------------------------------------------------------------
failed=0
rows=()
limit_of() { local e; for e in "${PLAN[@]}"; do IFS=: read -r n l w <<< "$e"; [ "$n" = "$1" ] && { echo "$l $w"; return; }; done; }

step() {  # step NAME COMMAND...: run under the plan's limit (cut to the time left), log, record the result
    local name="$1"; shift
    local limit when; read -r limit when <<< "$(limit_of "$name")"
    [ -n "$limit" ] || { echo "gpu_check: internal error: step $name is not in the plan" >&2; exit 2; }
    local t0; t0=$(date +%s)
    local left=$(( BUDGET_S - RESERVE_S / 2 - (t0 - started) ))
    if [ "$when" != always ] && [ "$left" -lt "$limit" ]; then
        rows+=("| $name | skipped: ${left} s left, needs ${limit} s | 0 s | $limit s |"); return
    fi
    if [ "$left" -le 5 ]; then
        rows+=("| $name | FAIL: not run, the ${BUDGET_S} s budget is spent | 0 s | $limit s |"); failed=1; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit} s)"
    local rc
    if [ "$DRY_RUN" = 1 ]; then
        { printf 'dry run:'; printf ' %q' "$@"; echo; } > "$WORK/logs/$name.log"; rc=0
        [ "$name" = "${GPU_CHECK_DRY_FAIL:-}" ] && rc=3   # lets a test see how a failed step is reported
    else
        timeout -k 5 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1; rc=$?
    fi
    tail -n 12 "$WORK/logs/$name.log"
    local dt=$(( $(date +%s) - t0 )) status=pass
    [ "$DRY_RUN" = 1 ] && status="dry run"
    if [ $rc -ne 0 ]; then
        status="FAIL (exit $rc$( [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ', time limit'))"; failed=1
    fi
    rows+=("| $name | $status | ${dt} s | $limit s |")
    echo "== $name: $status after ${dt} s"
}

R="$WORK/results"
step build "$PY" -m sparse_core.ops.build --no-cpu
step cuda-tests "$PY" -m pytest -q -rs tests/ops/test_native_cuda.py
step self-check bash -c '"$0" -m sparse_core.ops.build --no-cpu --check > "$1"; rc=$?; cat "$1"; exit $rc' \
    "$PY" "$R/selfcheck-gpu.md"
step kernels-fp32 "$PY" bench/kernels.py --device cuda --dtype float32 --reps 7 --out "$R/kernels-gpu-fp32.md"
step overhead-fp32 "$PY" bench/overhead.py --model sngan --device cuda --batch 64 --reps 10 --steps 3 \
    --out "$R/overhead-gpu-fp32.md"
step kernels-bf16 "$PY" bench/kernels.py --device cuda --dtype bfloat16 --reps 5 --out "$R/kernels-gpu-bf16.md"
step overhead-bf16 "$PY" bench/overhead.py --model sngan --device cuda --batch 64 --reps 8 --steps 3 --amp bf16 \
    --out "$R/overhead-gpu-bf16.md"
step kernels-tf32 "$PY" bench/kernels.py --device cuda --dtype float32 --tf32 --reps 5 --out "$R/kernels-gpu-tf32.md"
step overhead-tf32 "$PY" bench/overhead.py --model sngan --device cuda --batch 64 --reps 8 --steps 3 --tf32 \
    --out "$R/overhead-gpu-tf32.md"

# Patched StyleGAN2-ADA: fp16 layers are on by default on CUDA (--fp32 is not passed). A copy, not the checkout.
if [ "$DRY_RUN" = 1 ] || "$PY" -m sparse_core apply patches/stylegan2_ada.patch --src vendor/stylegan2_ada \
        --out "$WORK/sg2" > "$WORK/logs/stylegan2-apply.log" 2>&1; then
    for method in rggan regan; do
        step "stylegan2-$method" "$PY" "$WORK/sg2/train.py" --outdir "$WORK/sg2-$method" --data digits \
            --device cuda --cbase 4096 --cmax 128 --batch 16 --kimg 0.32 --tick 0.16 --snap 100 --metrics none \
            --img-snap 0 --workers 0 --sparse "$method" --interval 5 --warmup 5
    done
else
    rows+=("| stylegan2 | FAIL: the patch did not apply (logs/stylegan2-apply.log) |  |  |"); failed=1
fi

if [ "$DRY_RUN" = 1 ] || [ "$SANITIZER" != "not found" ]; then
    step memcheck env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool memcheck --error-exitcode 1 \
        "$PY" bench/gpu_sanitize.py all
    step racecheck "$SANITIZER" --tool racecheck --error-exitcode 1 "$PY" bench/gpu_sanitize.py modconv-weights
else
    rows+=("| memcheck, racecheck | not run: compute-sanitizer not found |  |  |")
fi
if [ "$ngpu" -ge 2 ]; then
    step ddp-masks "$PY" bench/gpu_ddp_masks.py "$WORK"
else
    rows+=("| ddp-masks | not run: $ngpu GPU (needs two) |  |  |")
fi

# ---- summary, results, archive ---------------------------------------------------------------------------------
total=$(( $(date +%s) - started ))
{
    echo "# GPU acceptance check"
    echo
    echo "- command: \`bash bench/gpu_check.sh\`$([ "$DRY_RUN" = 1 ] && echo ' --dry-run (nothing executed)')"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); total ${total} s of a ${BUDGET_S} s budget"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
    echo
    echo '```'
    cat "$ENV_TXT"
    echo '```'
    echo
    echo "| step | result | wall time | limit |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Result tables: results-gpu.md (also bench/results/*-gpu.md); logs: gpu-check.tar.gz (logs/)."
} > "$SUMMARY"
{
    for f in "$R"/*.md; do [ -e "$f" ] && { echo "<!-- $(basename "$f") -->"; cat "$f"; echo; }; done
} > "$OUT_DIR/results-gpu.md"
cp "$SUMMARY" "$R/gpu-check-gpu.md"
if [ "$DRY_RUN" = 0 ]; then cp "$R"/*-gpu.md "$ROOT/bench/results/" 2>/dev/null; fi
tar -czf "$OUT_DIR/gpu-check.tar.gz" -C "$WORK" logs results 2>/dev/null || echo "gpu_check: could not write the archive" >&2
cat "$SUMMARY"
echo "gpu_check: everything is in $OUT_DIR"
exit $failed
