"""Is the cuda backend usable here? Answered without importing it: `auto` must not pay its import to choose cpu."""
import importlib.util

GPU_PACKAGES = (("numba_cuda", "numba-cuda"), ("nvmath", "nvmath-python"))  # besides CuPy: module, package


def why_no_cuda_device():
    """None when CuPy sees a usable CUDA device (the simulator does not count), else why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        return None if cupy.is_available() else "CuPy sees no CUDA device"
    except Exception as error:  # noqa: BLE001 - a broken driver means no usable GPU
        return f"CUDA failed: {error}"


def why_no_gpu():
    """None when the cuda backend can run here, else why not: a usable CUDA device, and the cuda backend's other
    packages installed (looked up, not imported)."""
    reason = why_no_cuda_device()
    if reason is not None:
        return reason
    missing = [package for module, package in GPU_PACKAGES if importlib.util.find_spec(module) is None]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    return None


def gpu_available():
    return why_no_gpu() is None
