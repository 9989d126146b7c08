"""Numba's settings this project relies on, as environment defaults, set when mnist_gpu is imported.

Numba reads its NUMBA_* variables when numba is first imported, and again only when it compiles:
a process whose kernels all load from Numba's cache never re-reads them. So they are set here,
before any module of mnist_gpu imports numba (mnist_gpu/__init__.py imports this first), and
re-read at once where numba was imported before mnist_gpu. A value the user set is kept.
"""
import os
import sys

DEFAULTS = {
    # Our kernels run on CuPy's stream, in order with everything else, so Numba need not
    # synchronise the host each time it is handed a CuPy array.
    "NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "0",
    # The tutorial's shapes are small: grids of a few blocks are intended, not a mistake to warn of.
    "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS": "0",
}

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)

if "numba.core.config" in sys.modules:  # numba came first: make it read the variables now
    sys.modules["numba.core.config"].reload_config()
