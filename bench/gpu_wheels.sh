#!/usr/bin/env bash
# The wheels bench/gpu_session.sh installs on a GPU machine without network access, downloaded HERE, where a package
# registry is reachable:
#
#   bash bench/gpu_wheels.sh     # into .whl/ (ignored by git); copy it with the checkout to the GPU machine
#
# Exactly what a GPU image with CPython 3.12 on manylinux x86_64 lacks, or has in a version this project is not
# tested with (nvmath-python is built per Python version: a plain `pip download` on a 3.11 machine would bring a
# cp311 wheel, which 3.12 refuses):
#   nvmath-python, tensorboardX   the image has neither (cuBLAS's bindings; the event files)
#   numba-cuda, cuda-core         pinned to what CI tests: the prepared launches repeat numba-cuda's own launch
#                                 through its internals and cuda.core's launch (tests/test_cuda_host.py checks
#                                 them against these versions); the image's versions are unknown until a session
#   cuda-pathfinder               nvmath-python 1.0 needs >= 1.5.1 to find cuBLAS; the image's version is unknown
#   crc32c                        the image lacks it; without it tensorboardX checksums every event record in pure
#                                 Python (29 ms per 80 KB), which would distort the tutorial's timings
#   pillow                        the pictures need >= 10.1 (a scalable default font); the image's version is unknown
# Not carried: cuda-bindings and the NVIDIA library wheels (tied to the image's driver and CuPy; NVVM's wheel
# alone is 62 MB): the session uses the image's, and sets CUDA_HOME to its toolkit where numba-cuda finds no NVVM.
# bench/wheel_check.py checks each wheel's tags, and that wheels and checkout together stay within what may be
# copied to the GPU machine: GPU_WHEELS_LIMIT_MIB, 64 unless set.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(nvmath-python==1.0.0 tensorboardX==2.6.5 numba-cuda==0.30.4 cuda-core==1.2.2 cuda-pathfinder==1.9.1
        crc32c==2.9.post0 pillow==13.0.0)
LIMIT_BYTES=$((${GPU_WHEELS_LIMIT_MIB:-64} * 1024 * 1024))  # the checkout and the wheels, together

rm -rf .whl
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"

checkout_bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb | tail -1 | cut -f1)
python3 bench/wheel_check.py .whl "$checkout_bytes" "$LIMIT_BYTES" "${WHEELS[@]}"
