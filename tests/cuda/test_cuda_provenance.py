"""The cuda backend's provenance: the GPU's name, compute capability and drivers (the simulator says it is one)."""
import sys

from mnist_gpu import provenance


def test_the_record_names_the_device(cuda_backend):
    described = provenance.backend_description(cuda_backend)
    assert described["name"] == "cuda"
    if cuda_backend.simulated:
        assert described["gpu"] == "Numba's CUDA simulator (no GPU)" and described["processor"]
        return
    import cupy

    device = cupy.cuda.Device()
    properties = cupy.cuda.runtime.getDeviceProperties(device.id)
    assert described["gpu"] == properties["name"].decode()
    assert described["compute_capability"] == f"{device.compute_capability[:-1]}.{device.compute_capability[-1]}"
    major, minor = divmod(cupy.cuda.runtime.driverGetVersion() // 10, 100)
    assert described["cuda_driver"] == f"{major}.{minor}"


def test_the_record_lists_the_cuda_libraries_this_process_loaded(cuda_backend):
    versions = provenance.library_versions()
    assert versions["numba-cuda"] == sys.modules["numba_cuda"].__version__
    if not cuda_backend.simulated:
        assert versions["cupy"] == sys.modules["cupy"].__version__
        assert versions["nvmath-python"] == sys.modules["nvmath"].__version__
