#!/usr/bin/env bash
# Validates and benchmarks mnist_gpu on a GPU machine without network access, in one command and a time budget
# (bench/gpu_session.py says what each stage does):
#
#   bash bench/gpu_session.sh                  # every stage in order: setup, environment, compile, check, tests,
#                                              # tutorial, bench; at most 470 s, results in $OUT (or a new folder)
#   bash bench/gpu_session.sh tests bench      # setup, then only the stages named
#   bash bench/gpu_session.sh --help           # the options: --out, --wheels, --time-limit, and the bounds on the
#                                              # result files (--max-files 8, --max-depth 2, --max-file-mib 16,
#                                              # --max-total-mib 64 by default)
#
# The machine needs the checkout and the wheels `bash bench/gpu_wheels.sh` downloaded into .whl/ where a package
# registry was reachable; the session installs them into python3's own environment. Without a GPU the same command
# is a rehearsal (CI runs it): the GPU parts say "skipped: no GPU" and it exits 0. Exit 1 when a stage failed or
# timed out, or the results exceed their bounds; 2 for a bad argument. python3 is the interpreter the session uses
# and installs the wheels into (on a GPU image, the one with CuPy, Numba and the rest); nothing but the standard
# library is needed to start it.
cd "$(dirname "$0")/.." && exec python3 -m bench.gpu_session "$@"
