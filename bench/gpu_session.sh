#!/usr/bin/env bash
# The GPU session in one command (bench/gpu_session.py says what each stage does and what comes back):
#
#   bash bench/gpu_session.sh                # every stage in order: setup, environment, check, tests, tutorial,
#                                            # bench; at most 8 minutes on the H200, output in $OUT
#   bash bench/gpu_session.sh tests bench    # a targeted second run: setup, then only the stages named
#
# On the lent H200, with the wheels from `bash bench/gpu_wheels.sh` carried in .whl/ (the device call's
# carry: [".whl"]). Without a GPU the same command is a rehearsal (CI runs it): the GPU parts say
# "skipped: no GPU" and it exits 0. Exit 1 when a stage failed or timed out, 2 for an unknown stage.
# python3 is the interpreter the session uses and installs the wheels into (on the image, the one with
# CuPy, Numba and the rest); nothing but the standard library is needed to start it.
cd "$(dirname "$0")/.." && exec python3 -m bench.gpu_session "$@"
