"""The CUDA backend's host side, without a GPU: its GEMM calls (backends/cuda_gemm.py) and the numba-cuda
internals its prepared launches rely on (backends/cuda_program.py).

No GPU here, so cuBLAS is stood in for by NumPy's OpenBLAS, column-major, which implements the
same BLAS contract. The `Cublas` class itself (what runs on a GPU) is driven through a stand-in
for nvmath-python's bindings that takes its arguments by the REAL bindings' declared signatures
(nvmath 1.0: `sgemm_strided_batched(handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b,
ldb, stride_b, beta, c, ldc, stride_c, batch_count)`, alpha and beta as host pointers), so a
swapped argument, pointer or stride fails here, not first on a GPU.
"""
import ctypes
import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_gpu.backends.cuda_gemm import NO_TRANSPOSE, TRANSPOSE, Cublas, GemmCall, SimulatedCublas

from helpers import needs_packages

TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]


class HostAsDevice:
    """A NumPy array dressed as a CuPy one: what Cublas reads of an array (shape, strides, dtype, data.ptr)."""

    def __init__(self, array):
        self.array = array
        self.shape, self.strides, self.dtype, self.ndim = array.shape, array.strides, array.dtype, array.ndim
        self.data = SimpleNamespace(ptr=array.ctypes.data)


class FakeStream:
    ptr = 0x5EA

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        pass


def nvmath_stand_in(calls):
    """nvmath.bindings.cublas as declared, its sgemm carried out by OpenBLAS; every call recorded by name."""
    cublas = pytest.importorskip("nvmath.bindings.cublas")
    blas = SimulatedCublas()

    def declared(name, action=None):
        signature = inspect.signature(getattr(cublas, name))

        def call(*arguments):
            named = signature.bind(*arguments).arguments  # a TypeError if the count is wrong
            calls.append((name, dict(named)))
            return action(named) if action else None
        return call

    def sgemm_strided_batched(named):
        def value(pointer):
            return ctypes.c_float.from_address(pointer).value

        cblas = {int(cublas.Operation.N): 111, int(cublas.Operation.T): 112}
        for member in range(named["batch_count"]):
            blas.function(SimulatedCublas.COLUMN_MAJOR, cblas[named["transa"]], cblas[named["transb"]], named["m"],
                          named["n"], named["k"], value(named["alpha"]), named["a"] + 4 * member * named["stride_a"],
                          named["lda"], named["b"] + 4 * member * named["stride_b"], named["ldb"],
                          value(named["beta"]), named["c"] + 4 * member * named["stride_c"], named["ldc"])

    return SimpleNamespace(PointerMode=cublas.PointerMode, Operation=cublas.Operation,
                           create=declared("create", lambda named: 0x4A4D), destroy=declared("destroy"),
                           set_stream=declared("set_stream"), set_workspace=declared("set_workspace"),
                           set_pointer_mode=declared("set_pointer_mode"),
                           sgemm_strided_batched=declared("sgemm_strided_batched", sgemm_strided_batched))


ALPHA = 0.5


def gemm_case(generator, trans_a, trans_b, rows=5, inner=7, columns=3, shared=False):
    """Three members' matrices (a shared by all when `shared`), and what out = alphas * op(a) @ op(b) + 2 out is."""
    a_shape = (inner, rows) if trans_a else (rows, inner)
    a = generator.standard_normal(a_shape if shared else (3, *a_shape)).astype(np.float32)
    b = generator.standard_normal((3, *((columns, inner) if trans_b else (inner, columns)))).astype(np.float32)
    c = generator.standard_normal((3, rows, columns)).astype(np.float32)
    op_a = a.swapaxes(-1, -2) if trans_a else a
    op_b = b.swapaxes(-1, -2) if trans_b else b
    expected = ALPHA * (op_a @ op_b) + 2 * c
    return a, b, c, expected


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES)
def test_openblas_carries_out_cublas_arguments(generator, trans_a, trans_b, shared):
    """The row-major to column-major mapping, member by member, against NumPy (the simulator's GEMMs)."""
    a, b, c, expected = gemm_case(generator, trans_a, trans_b, shared=shared)
    call = GemmCall(SimulatedCublas(), a, b, c, ALPHA, 2.0, trans_a, trans_b)
    assert call.arguments[-1] == 3  # one strided-batched call for the three members
    call.run()
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


def test_rows_of_a_larger_matrix_are_read_through_the_leading_dimension(generator):
    wide = generator.standard_normal((2, 4, 9)).astype(np.float32)
    a, b = wide[:, :, :6], generator.standard_normal((2, 6, 2)).astype(np.float32)  # a: rows 9 floats apart
    out = np.zeros((2, 4, 2), np.float32)
    GemmCall(SimulatedCublas(), a, b, out, 1.0, 0.0).run()
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-6)


def test_shapes_types_and_layouts_that_cannot_work_are_refused():
    blas, matrix, one = SimulatedCublas(), np.zeros((1, 3, 4), np.float32), 1.0
    with pytest.raises(ValueError, match=r"op\(a\) 3x4, op\(b\) 3x4 and out \(1, 3, 4\) do not fit"):
        GemmCall(blas, matrix, matrix, matrix, one, 0.0)
    with pytest.raises(TypeError, match=r"float32 matrices \[M, N\] or \[K, M, N\], got float64"):
        GemmCall(blas, matrix, np.zeros((1, 4, 2)), np.zeros((1, 3, 2), np.float32), one, 0.0)
    with pytest.raises(ValueError, match="rows of contiguous elements"):
        GemmCall(blas, matrix, np.zeros((1, 2, 4), np.float32).swapaxes(1, 2), np.zeros((1, 3, 2), np.float32), one,
                 0.0)
    with pytest.raises(ValueError, match="do not fit"):  # b of another population
        GemmCall(blas, matrix, np.zeros((2, 4, 2), np.float32), np.zeros((1, 3, 2), np.float32), one, 0.0)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES)
def test_cublas_calls_nvmath_as_its_bindings_declare(monkeypatch, generator, trans_a, trans_b):
    calls = []
    stand_in = nvmath_stand_in(calls)
    assert (NO_TRANSPOSE, TRANSPOSE) == (stand_in.Operation.N, stand_in.Operation.T)
    monkeypatch.setattr("nvmath.bindings.cublas", stand_in)  # what `from nvmath.bindings import cublas` finds
    workspace = HostAsDevice(np.zeros(16, np.uint8))
    cupy = SimpleNamespace(empty=lambda size, dtype: workspace)
    library = Cublas(cupy, FakeStream())
    # Set up once: bound to the stream, its own workspace, alpha and beta read from host memory.
    assert calls[1:] == [("set_stream", {"handle": 0x4A4D, "stream_id": FakeStream.ptr}),
                         ("set_workspace", {"handle": 0x4A4D, "workspace": workspace.data.ptr,
                                            "workspace_size_in_bytes": 32 * 2 ** 20}),
                         ("set_pointer_mode", {"handle": 0x4A4D, "mode": stand_in.PointerMode.HOST})]
    a, b, c, expected = gemm_case(generator, trans_a, trans_b)
    GemmCall(library, HostAsDevice(a), HostAsDevice(b), HostAsDevice(c), ALPHA, 2.0, trans_a, trans_b).run()
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)
    assert calls[-1][0] == "sgemm_strided_batched" and calls[-1][1]["batch_count"] == 3


@needs_packages("numba_cuda", "cuda.core")
def test_numba_cuda_still_launches_the_way_prepared_launches_repeat():
    """PreparedLaunch (cuda_program.py) does once what numba-cuda's launch does per call, with its internals:
    if a numba-cuda release moves them, this fails in CI instead of first on a GPU."""
    from cuda.core import launch
    from numba.cuda.cudadrv.driver import _to_core_stream
    from numba.cuda.dispatcher import CUDADispatcher, _Kernel, _LaunchConfiguration

    assert list(inspect.signature(CUDADispatcher.compile).parameters) == ["self", "sig"]
    assert list(inspect.signature(CUDADispatcher.typeof_pyval).parameters) == ["self", "val"]
    assert isinstance(inspect.getattr_static(_Kernel, "argument_types"), property)
    assert list(inspect.signature(_Kernel._prepare_args).parameters) == ["self", "ty", "val", "stream", "retr",
                                                                          "kernelargs"]
    assert list(inspect.signature(launch).parameters) == ["stream", "config", "kernel", "kernel_args"]
    assert list(inspect.signature(_to_core_stream).parameters) == ["stream"]
    assert "self.stream = driver._to_core_stream(stream)" in inspect.getsource(_LaunchConfiguration.__init__)
    numba_launch = inspect.getsource(_Kernel.launch)  # marshals every argument, then one cuda.core launch
    assert "self._prepare_args(" in numba_launch and "cufunc.kernel" in numba_launch
    assert "launch(stream, config, kernel, *kernelargs)" in numba_launch
