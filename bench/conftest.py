"""Benchmark settings: each benchmark's group names the op and shape; its param names the backend."""
import os
import sys

# Importable as `bench.workloads` when pytest runs from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
