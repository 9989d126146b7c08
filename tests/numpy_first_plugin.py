"""A pytest plugin that imports NumPy when pytest loads it, before any conftest runs, as jaxtyping's does.

tests/test_numpy_first.py runs part of the suite with it loaded first (`-p numpy_first_plugin`).
"""
import sys

LOADED_BEFORE_CONFTEST = "conftest" not in sys.modules

import numpy  # noqa: E402, F401 - the point of this plugin: NumPy (and its OpenBLAS) loads first
