#!/usr/bin/env bash
# What a machine with an NVIDIA GPU runs, one step per command (each well inside 8 minutes), from
# the repository root:
#
#   bash bench/gpu_session.sh check      # versions, then `mnist-gpu check`: every op and 100 steps vs NumPy
#   bash bench/gpu_session.sh tests      # tests/cuda on the GPU, and the tutorial test on --backend cuda
#   bash bench/gpu_session.sh tutorial   # the tutorial run on cuda (graph, eager) and on cpu, timed, logs kept
#   bash bench/gpu_session.sh bench-step # the training-step benchmarks (op by op, eager program, graph) and their report
#   bash bench/gpu_session.sh bench-run  # the tutorial run and its pieces per backend (and cuda eager) and their report
#   bash bench/gpu_session.sh bench-ops  # the per-op benchmarks and their report
#
# Run `check` first. Every step writes its log (and report) under $OUT as it goes, so a step that
# runs out of time loses only itself. Nothing is built or installed: the code runs from this
# checkout (PYTHONPATH), and Python packages the machine lacks travel as wheels in .whl/ (the
# README's "On a GPU" section says which and how).
set -euo pipefail
step=${1:?usage: bash bench/gpu_session.sh check|tests|tutorial|bench-step|bench-run|bench-ops}
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# Every package a step needs, checked before anything runs, named when missing.
python3 - <<'EOF'
import importlib.util, sys
needed = ["numpy", "numba", "numba_cuda", "cupy", "nvmath", "safetensors", "tensorboardX", "tqdm", "pytest",
          "pytest_benchmark", "tensorboard", "matplotlib"]
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_session.sh: missing Python packages: {', '.join(missing)} "
             "(carry their wheels in .whl/, see the README's 'On a GPU')")
EOF

run() {  # run a command, its output to the terminal and to $OUT/<name>.log
    local name=$1; shift
    "$@" 2>&1 | tee "$OUT/$name.log"
}

case $step in
check)
    {
        date -u
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        git log -1 --format='commit %H %cd' 2>/dev/null || true
    } 2>&1 | tee "$OUT/environment.txt"
    run check python3 -m mnist_gpu check
    ;;
tests)
    run gpu_tests python3 -m pytest tests/cuda "tests/test_training_end_to_end.py::test_tutorial_defaults_reach_the_published_accuracy" \
        tests/test_check.py -q -p no:cacheprovider -rs
    ;;
tutorial)
    for variant in "cuda" "cuda --cuda_graph off" "cpu"; do
        log_dir=$(mktemp -d)
        name=tutorial_${variant// --cuda_graph off/_eager}
        run "$name" bash -c "time python3 -m mnist_gpu --backend $variant --seed 1 --log_dir $log_dir/run"
    done
    ;;
bench-step)
    run bench_step python3 -m bench.report -k "bench_step" --out "$OUT"
    ;;
bench-run)
    run bench_run python3 -m bench.report -k "bench_run" --out "$OUT"
    ;;
bench-ops)
    run bench_ops python3 -m bench.report -k "bench_ops" --out "$OUT"
    ;;
*)
    echo "gpu_session.sh: unknown step '$step'; expected check, tests, tutorial, bench-step, bench-run or bench-ops" >&2
    exit 2
    ;;
esac
