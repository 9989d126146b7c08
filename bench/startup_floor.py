"""The libraries' own start-up, the floor under `mnist-gpu --max_steps 0` (bench_run.py times both side by side).

`python bench/startup_floor.py` imports NumPy; `... numba` also imports Numba and loads one cached
njit kernel, which is what the cpu backend cannot start without: loading the first kernel (cached
or not) makes Numba import its whole implementation registry. Both leave with os._exit, as
mnist-gpu does, so interpreter teardown is not timed.
"""
import os
import sys

import numpy as np

if "numba" in sys.argv[1:]:
    from numba import njit

    @njit("void(float32[::1])", cache=True)  # an explicit signature: loaded (or compiled) right here
    def fill_one(values):
        values[0] = 1.0

    fill_one(np.zeros(1, np.float32))
os._exit(0)
