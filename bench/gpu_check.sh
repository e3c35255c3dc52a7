#!/usr/bin/env bash
# GPU acceptance check (issue 8 item 10): one command to run on a machine with a CUDA GPU.
#
#   bash bench/gpu_check.sh            # from the repository root (or anywhere: it cds there)
#
# Runs, in this order, each step with its own time limit so the whole stays under 8 minutes on one GPU:
#   1. the CUDA build + tests (tests/ops, CUDA ones included: they run when a GPU is visible)
#   2. compute-sanitizer (memcheck) on one op (threshold forward + backward), when the tool exists
#   3. bench/kernels.py on cuda in float32 and bfloat16  -> bench/results/kernels-gpu-{fp32,bf16}.md
#   4. bench/overhead.py on cuda (real SNGAN step) in fp32 and bf16 autocast -> bench/results/overhead-gpu-*.md
#   5. a short patched StyleGAN2-ADA run on cuda with its fp16 layers on (the default), RG-GAN and Re-GAN
#   6. with two or more GPUs: a two-process NCCL DDP run checking that every rank holds the same masks
# and writes bench/results/gpu-check-gpu.md (what ran, pass/fail, times). Exit status: 0 when every step that
# applies passed; 1 when one failed; 2 without a GPU (it says so and runs nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
RESULTS=bench/results
SUMMARY="$RESULTS/gpu-check-gpu.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
export SPARSE_CORE_EXT_DIR="${SPARSE_CORE_EXT_DIR:-$WORK/ext}"

ngpu="$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)"
if [ "${ngpu:-0}" -lt 1 ]; then
    echo "gpu_check: no CUDA GPU visible to torch on this machine ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo 'torch not importable')); nothing was run." >&2
    rm -rf "$WORK"
    exit 2
fi
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; c = torch.cuda.get_device_capability(); print(f"{c[0]}.{c[1]}")')}"
gpu_name="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
started=$(date +%s)
failed=0
rows=()

BUDGET=${GPU_CHECK_BUDGET_S:-480}   # the whole check must finish within 8 minutes

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a limit, record pass/fail and the wall time
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s) rc
    local left=$(( BUDGET - (t0 - started) ))
    if [ "$left" -le 5 ]; then
        rows+=("| $name | FAIL (not run: the ${BUDGET}s budget is spent) |  |"); failed=1; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    tail -n 15 "$WORK/$name.log"
    local dt=$(( $(date +%s) - t0 )) status=pass
    if [ $rc -ne 0 ]; then status="FAIL (exit $rc$([ $rc -eq 124 ] && echo ', time limit'))"; failed=1; fi
    rows+=("| $name | $status | ${dt} s |")
    echo "== $name: $status after ${dt}s"
}

step build 240 "$PY" -m sparse_core.ops.build
step cuda-tests 240 env SPARSE_CORE_TEST_CUDA_BUILD=1 "$PY" -m pytest -q -x tests/ops
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x "$CUDA_HOME/bin/compute-sanitizer" ]; then
    SAN="$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")"
    step sanitizer 120 "$SAN" --tool memcheck --error-exitcode 1 "$PY" -c '
import torch, sparse_core.ops as ops
w = torch.randn(64, 32, 3, 3, device="cuda", requires_grad=True)
t = torch.full((64,), 0.3, device="cuda", requires_grad=True)
ops.threshold_masked_weight(w, t).square().sum().backward()
torch.cuda.synchronize()
assert ops.backend_for(w) == "native", "the CUDA threshold kernel did not serve the call"
print("threshold op under memcheck: ok")'
else
    rows+=("| sanitizer | not run: compute-sanitizer not found |  |")
fi
step kernels-fp32 120 "$PY" bench/kernels.py --device cuda --dtype float32 --reps 7 --out "$RESULTS/kernels-gpu-fp32.md"
step kernels-bf16 120 "$PY" bench/kernels.py --device cuda --dtype bfloat16 --reps 7 --out "$RESULTS/kernels-gpu-bf16.md"
step overhead-fp32 120 "$PY" bench/overhead.py --model sngan --device cuda --batch 64 --reps 10 --steps 3 \
    --out "$RESULTS/overhead-gpu-fp32.md"
step overhead-bf16 120 "$PY" bench/overhead.py --model sngan --device cuda --batch 64 --reps 10 --steps 3 --amp bf16 \
    --out "$RESULTS/overhead-gpu-bf16.md"

# Patched StyleGAN2-ADA: fp16 layers are on by default on CUDA (num_fp16_res 4; --fp32 is not passed).
"$PY" -m sparse_core apply patches/stylegan2_ada.patch --src vendor/stylegan2_ada --out "$WORK/sg2" > /dev/null
for method in rggan regan; do
    step "stylegan2-$method" 150 "$PY" "$WORK/sg2/train.py" --outdir "$WORK/sg2-$method" --data digits --device cuda \
        --cbase 4096 --cmax 128 --batch 16 --kimg 0.32 --tick 0.16 --snap 100 --metrics none --img-snap 0 \
        --workers 0 --sparse "$method" --interval 5 --warmup 5
done

if [ "$ngpu" -ge 2 ]; then
    step ddp-masks 120 "$PY" - "$WORK" <<'PYEOF'
"""Two NCCL processes, Re-GAN on G and D: after pruning, every rank must hold the same masks."""
import os, sys
import torch, torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
import sparse_core as sc

def run(rank, work):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{work}/.ddp", rank=rank, world_size=2)
    torch.manual_seed(rank)   # different weights per rank: only the broadcast makes masks agree
    G = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16)).cuda()
    D = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=2, warmup=1, target="both"), G=G, D=D)
    G, D = nn.parallel.DistributedDataParallel(G), nn.parallel.DistributedDataParallel(D)
    opt = torch.optim.Adam(list(G.parameters()) + list(D.parameters()), 1e-3)
    for _ in range(2):   # warm-up iteration, then one in the sparse phase
        loss = D(G(torch.randn(8, 16, device="cuda"))).mean()
        opt.zero_grad(); loss.backward(); ctrl.before_step("G"); ctrl.before_step("D"); opt.step()
        ctrl.after_step("G"); ctrl.after_step("D"); ctrl.advance(8)
    masks = torch.cat([b.flatten() for n, b in list(G.named_buffers()) + list(D.named_buffers()) if "mask" in n])
    gathered = [torch.empty_like(masks) for _ in range(2)]
    dist.all_gather(gathered, masks)
    assert torch.equal(gathered[0], gathered[1]), "ranks hold different masks"
    assert masks.mean() < 1, "nothing was pruned"
    if rank == 0:
        print("DDP (nccl, 2 ranks): masks identical on every rank")
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1],), nprocs=2)
PYEOF
else
    rows+=("| ddp-masks | not run: one GPU (needs two) |  |")
fi

total=$(( $(date +%s) - started ))
{
    echo "# GPU acceptance check"
    echo
    echo "- command: \`bash bench/gpu_check.sh\`"
    echo "- device: $ngpu x $gpu_name; torch $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); total ${total} s"
    echo
    echo "| step | result | wall time |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Per-step outputs: bench/results/kernels-gpu-*.md, bench/results/overhead-gpu-*.md; logs were in $WORK."
} > "$SUMMARY"
cat "$SUMMARY"
exit $failed
