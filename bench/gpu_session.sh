#!/usr/bin/env bash
# What a session lent a GPU (the device tool's `run`) should run, in one call, from the repository root:
#   GPU kernel tests, the tutorial on --backend cuda, and the benchmark report, all into $OUT.
# The device image has CuPy, numba-cuda, NumPy, safetensors, tensorboard, pytest-benchmark and
# matplotlib but not tensorboardX: carry its wheel in .whl (see the README's "On a GPU" section).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation . || exit 1
export PYTHONUNBUFFERED=1
export MNIST_DATA_DIR=$PWD/mnist_gpu/data/mnist  # ../shared does not travel to the device
{
    date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import cupy, numba, numba_cuda, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, \
'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)"
} > "$OUT/environment.txt" 2>&1
cd tests && python3 -m pytest cuda -q -p no:cacheprovider -rs --rootdir .. > "$OUT/gpu_tests.log" 2>&1; cd ..
log_dir=$(mktemp -d)
python3 -m mnist_gpu --backend cuda --seed 1 --input_data_dir "$MNIST_DATA_DIR" --log_dir "$log_dir/run" \
    > "$OUT/tutorial_cuda.log" 2>&1
python3 -m bench.report --out "$OUT" > "$OUT/bench.log" 2>&1
tail -n 3 "$OUT"/gpu_tests.log "$OUT"/tutorial_cuda.log "$OUT"/bench.log
