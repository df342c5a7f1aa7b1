#!/usr/bin/env bash
# The GPU check: on an NVIDIA H100/H200 machine, in under 8 minutes, into one markdown results file:
#   1. environment: versions, jax.devices() (and nvidia-smi in the header);
#   2. the kernel tests of spectral_filter and linear_attention compiled on the GPU (Mosaic GPU
#      kernels included), forward and gradients against the references (tests/kernels/backend.py);
#   3. benchmarks/spectral_filter.py and 4. benchmarks/linear_attention.py on their kernel shapes,
#      with every impl that runs on the GPU and the % of the HBM bound;
#   5. benchmarks/train_step.py: poolformer_s12, then caformer_s18 (one run each), in bf16 against
#      timm eager and torch.compile.
# Each step has its own time limit, so one hang cannot eat the others; a step that fails or times out
# is recorded with its exit code and the next one runs. Exit status 0 only if every step passed.
#
#   bash benchmarks/gpu_check.sh                    # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke        # the same steps, tiny, on a CPU (about a minute)
#   bash benchmarks/gpu_check.sh --out FILE         # results file; default gpu_check_results.md
#
# A relative results path is taken under $OUT when OUT is set, else under the current directory.
# Wheels in the repository's .whl/ folder, if any, are installed into /tmp/site first (no network).
# benchmarks/README.md, "GPU check", says how to read the results.
set -u

usage() {
    sed -n '2,/^set -u$/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

MODE=gpu
OUT_ARG=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --cpu-smoke) MODE=cpu-smoke ;;
        --out)
            if [ "$#" -lt 2 ] || [ -z "$2" ]; then
                echo "gpu_check.sh: --out needs a FILE" >&2
                exit 2
            fi
            OUT_ARG=$2
            shift
            ;;
        --out=*) OUT_ARG=${1#--out=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "gpu_check.sh: unknown argument '$1' (expected --cpu-smoke, --out FILE or --help)" >&2
            exit 2
            ;;
    esac
    shift
done

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P) || exit 2
RESULTS=${OUT_ARG:-gpu_check_results.md}
if [ -n "${OUT:-}" ] && [ "${RESULTS#/}" = "$RESULTS" ]; then
    RESULTS="$OUT/$RESULTS"
fi
if [ "${RESULTS#/}" = "$RESULTS" ]; then
    RESULTS="$PWD/$RESULTS"
fi
if ! mkdir -p -- "$(dirname -- "$RESULTS")" || ! : >"$RESULTS"; then
    echo "gpu_check.sh: cannot write the results file $RESULTS" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
trap 'rm -rf -- "$WORK"' EXIT
cd -- "$REPO" || exit 2

PYTHON=${PYTHON:-python3}
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ "$MODE" = gpu ]; then
    # Forced: tests/conftest.py would otherwise default the tests to the CPU, and a broken CUDA set-up
    # must fail loudly rather than benchmark the CPU.
    export JAX_PLATFORMS=cuda
    BUDGET=450 # seconds for the whole run: under 8 minutes with the kill grace of each step
else
    export JAX_PLATFORMS=cpu
    BUDGET=600 # only a guard against a hang: the smoke run takes about a minute
fi
START=$SECONDS
SHOWN="" # the command line run_step writes, where it differs from what it runs
FAILED=()
SUMMARY=()

say() { printf '%s\n' "$*" >>"$RESULTS"; }
progress() { printf '[gpu_check %3ds] %s\n' "$((SECONDS - START))" "$*"; }

# Appends a step's output as a fenced block, cut to its first 300 and last 3000 lines if longer.
append_log() {
    local log=$1 lines
    lines=$(wc -l <"$log")
    say '````text'
    if [ "$lines" -gt 3500 ]; then
        head -n 300 -- "$log" >>"$RESULTS"
        say "[... $((lines - 3300)) lines cut ...]"
        tail -n 3000 -- "$log" >>"$RESULTS"
    else
        cat -- "$log" >>"$RESULTS"
    fi
    say '````'
}

# A command as one line to paste: words of safe characters as they are, the others single-quoted.
shown() {
    local word line=""
    for word in "$@"; do
        if [[ ! $word =~ ^[A-Za-z0-9_./,=:+-]+$ ]]; then
            word="'${word//\'/\'\\\'\'}'"
        fi
        line+="${line:+ }$word"
    done
    printf '%s' "$line"
}

record() { # record ID STATUS RC SECONDS DETAIL
    say "STATUS $1: $2 ($5)"
    say ""
    SUMMARY+=("| $1 | $2 | $3 | $4 |")
    if [ "$2" != PASS ]; then
        FAILED+=("$1")
    fi
    progress "$1: $2 ($5)"
}

# run_step ID CAP RESERVE COMMAND...: runs COMMAND under `timeout` for at most CAP seconds, and for
# less if the budget left after RESERVE seconds (the later steps' shares) is smaller; appends the
# command, its status line and its output to the results file. Each step's RESERVE is the sum of
# the later steps' floors: kernel tests 90 s, each kernel benchmark 45 s, the poolformer_s12 train
# step 60 s and the caformer_s18 one 120 s (the last step gets what is left of the budget).
run_step() {
    local id=$1 cap=$2 reserve=$3 limit began rc elapsed status
    shift 3
    limit=$((START + BUDGET - SECONDS - reserve))
    if [ "$limit" -gt "$cap" ]; then
        limit=$cap
    fi
    say "Command: \`${SHOWN:-$(shown "$@")}\`"
    SHOWN=""
    say ""
    if [ "$limit" -lt 10 ]; then
        record "$id" SKIPPED - 0 "the run's ${BUDGET} s budget is spent: not run"
        return
    fi
    progress "$id: running (limit ${limit} s)"
    began=$SECONDS
    timeout -k 5 "$limit" "$@" </dev/null 2>&1 | tee "$WORK/$id.log"
    rc=${PIPESTATUS[0]}
    elapsed=$((SECONDS - began))
    if [ "$rc" -eq 0 ]; then
        status=PASS
    elif { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ "$elapsed" -ge "$((limit - 1))" ]; then
        status=TIMEOUT
    else
        status=FAIL
    fi
    record "$id" "$status" "$rc" "$elapsed" "exit $rc, $elapsed s of a $limit s limit"
    append_log "$WORK/$id.log"
    say ""
}

has_module() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

# ------------------------------------------------------------------------------------------------
# Header.

say "# GPU check results"
say ""
say "- mode: $MODE (JAX_PLATFORMS=$JAX_PLATFORMS)"
say "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "- host: $(hostname 2>/dev/null || uname -n)"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    say "- repository: $(git -C "$REPO" rev-parse --short HEAD) on $(git -C "$REPO" rev-parse --abbrev-ref HEAD)," \
        "$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed or untracked paths"
else
    say "- repository: not a git checkout"
fi
say "- results file: $RESULTS"
say ""
say "### nvidia-smi"
say ""
if command -v nvidia-smi >/dev/null 2>&1; then
    timeout -k 5 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$WORK/smi.log" 2>&1
    append_log "$WORK/smi.log"
else
    say "nvidia-smi: not found"
fi
say ""

if compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    say "## Wheels from .whl/"
    say ""
    run_step wheels 120 390 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site "$REPO"/.whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

say "## Environment"
say ""
cat >"$WORK/environment.py" <<'EOF'
import importlib.metadata
import importlib.util
import platform
import sys

print(f"python {platform.python_version()} ({sys.executable})")
wanted = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch", "timm", "pytest", "pytest-xdist"]
plugins = sorted(
    d.metadata["Name"] for d in importlib.metadata.distributions() if d.metadata["Name"].lower().startswith("jax-cuda")
)
for name in wanted + plugins:
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    print(f"{name} {version}")


def installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


for name in ("grain", "ml_collections", "tensorboardX"):  # the trainer's; the kernels and benchmarks do without
    print(f"{name}: {'installed' if installed(name) else 'not installed'}")
import jax  # noqa: E402

import mixtok.kernels  # noqa: E402, F401  (imports without the trainer's dependencies)

print("jax.devices():", jax.devices())
device = jax.devices()[0]
print(f"default backend: {jax.default_backend()}; device kind: {device.device_kind}; "
      f"compute capability: {getattr(device, 'compute_capability', 'n/a')}")
if len(sys.argv) > 1 and jax.default_backend() != sys.argv[1]:
    sys.exit(f"expected the {sys.argv[1]!r} backend; JAX runs on {jax.default_backend()!r}")
EOF
if [ "$MODE" = gpu ]; then
    BACKEND=gpu
else
    BACKEND=cpu
fi
SHOWN="$PYTHON <the environment report above, in gpu_check.sh> $BACKEND"
run_step environment 60 360 "$PYTHON" "$WORK/environment.py" "$BACKEND"

# ------------------------------------------------------------------------------------------------
# Kernel tests: compiled on a GPU, interpreted on a CPU (tests/kernels/backend.py).

KERNEL_TESTS=(
    tests/kernels/test_spectral_filter.py
    tests/kernels/test_linear_attention.py
    tests/kernels/test_spectral_filter_mosaic_gpu.py
    tests/kernels/test_linear_attention_mosaic_gpu.py
)
PYTEST=("$PYTHON" -m pytest -q -rA --durations=15)
if [ "$MODE" = gpu ]; then
    # Worker processes: a kernel that crashes or hangs its process (killed after the per-test
    # timeout) fails its test only, and the compilations run in parallel.
    if has_module xdist; then
        PYTEST+=(-n 4)
    fi
    PYTEST+=(-o timeout=120)
    KERNEL_SELECTION=()
else
    KERNEL_SELECTION=(-k "test_runs_eagerly_and_under_jit_alike or test_several_tiles_and_chunks_carry_the_state \
or (test_kernel_matches_numpy_fft and 7-7-1-False) or (test_kernel_matches_the_reference and False-elu1-64-64-64) \
or test_public_pallas_impl")
fi
say "## Kernel tests"
say ""
run_step kernel-tests 180 270 "${PYTEST[@]}" "${KERNEL_SELECTION[@]+"${KERNEL_SELECTION[@]}"}" "${KERNEL_TESTS[@]}"

# ------------------------------------------------------------------------------------------------
# Kernel benchmarks.

if [ "$MODE" = gpu ]; then
    # The target grids (14x14 with every channel count, 7x7, 32x32) with every impl: the full set is
    # `python benchmarks/spectral_filter.py --impls reference,xla,pallas`.
    SPECTRAL_ARGS=(--impls "reference,xla,pallas" --sizes "7,14,32" --repeats 10)
    LINEAR_ARGS=(--repeats 5)
else
    SPECTRAL_ARGS=(--batch 2 --sizes 8 --repeats 2)
    LINEAR_ARGS=(--batch 1 --scale 0.01 --head-dims 64 --causal no --repeats 1)
fi
say "## Kernel benchmark: spectral_filter"
say ""
run_step bench-spectral-filter 90 225 "$PYTHON" benchmarks/spectral_filter.py "${SPECTRAL_ARGS[@]}"

say "## Kernel benchmark: linear_attention"
say ""
run_step bench-linear-attention 90 180 "$PYTHON" benchmarks/linear_attention.py "${LINEAR_ARGS[@]}"

# ------------------------------------------------------------------------------------------------
# Train step against timm: one run per model (poolformer_s12 first, the quicker to compile), so a
# model that runs out of time does not take the other's row with it.

say "## Train step (benchmarks/train_step.py)"
say ""
if [ ! -f benchmarks/train_step.py ]; then
    say "Command: none"
    say ""
    record train-step MISSING - 0 "benchmarks/train_step.py is not in this checkout: not run"
else
    if [ "$MODE" = gpu ]; then
        TRAIN_MODELS=(poolformer_s12 caformer_s18)
        TRAIN_ARGS=(--batch 64 --size 224 --repeats 3 --against timm --torch-compile)
    else
        TRAIN_MODELS=(poolformer_s12)
        TRAIN_ARGS=(--batch 2 --size 32 --repeats 1)
        if grep -q -- '"--tiny"' benchmarks/train_step.py; then
            TRAIN_ARGS+=(--tiny)
        fi
        if has_module timm && has_module torch; then
            TRAIN_ARGS+=(--against timm)
        fi
    fi
    for model in "${TRAIN_MODELS[@]}"; do
        if [ "$model" = "${TRAIN_MODELS[-1]}" ]; then
            CAP=300 RESERVE=0 # the last step: what is left of the budget
        else
            CAP=150 RESERVE=120
        fi
        say "### $model"
        say ""
        run_step "train-step-$model" "$CAP" "$RESERVE" "$PYTHON" benchmarks/train_step.py --models "$model" \
            --dtype bfloat16 --warmup 1 --markdown --json "$WORK/train_step_$model.json" "${TRAIN_ARGS[@]}"
        if [ -s "$WORK/train_step_$model.json" ]; then
            say "JSON written by --json:"
            say ""
            say '```json'
            cat -- "$WORK/train_step_$model.json" >>"$RESULTS"
            if [ -n "$(tail -c 1 -- "$WORK/train_step_$model.json")" ]; then
                say "" # the closing fence on a line of its own
            fi
            say '```'
            say ""
        fi
    done
fi

# ------------------------------------------------------------------------------------------------
# Summary.

say "## Summary"
say ""
say "| step | status | exit code | seconds |"
say "|---|---|---|---|"
for row in "${SUMMARY[@]}"; do
    say "$row"
done
say ""
TOTAL=$((SECONDS - START))
if [ "${#FAILED[@]}" -eq 0 ]; then
    say "RESULT: PASS (every step passed, ${TOTAL} s)"
    progress "PASS: every step passed; results in $RESULTS"
    exit 0
fi
say "RESULT: FAIL (${#FAILED[@]} of ${#SUMMARY[@]} steps did not pass: ${FAILED[*]}; ${TOTAL} s)"
progress "FAIL: ${FAILED[*]} did not pass; results in $RESULTS"
exit 1
