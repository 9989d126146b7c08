"""What a GPU session runs on, one `name: value` line each: the machine, every relevant package's version as
installed, where NVVM, cuBLAS and the CUDA runtime were found, and the settings that change how CUDA runs.

    python3 -m bench.environment                      # all of it (the session's `environment` stage)
    python3 -m bench.environment --nvvm               # only where numba-cuda finds libNVVM; exit 0 found, 1 not
    python3 -m bench.environment --missing MODULE...  # which of these modules are not installed; exit 1 if any

Run by bench/gpu_session.py in a fresh process (with the checkout on PYTHONPATH), so it sees what the
session's setup installed. Nothing here is needed to train; it says what was there.
"""
import importlib.util
import os
import platform
import sys
from importlib import metadata

# Every package whose version can change what the CUDA path does, or whether the session can run at all.
PACKAGES = ("numpy", "numba", "llvmlite", "numba-cuda", "cuda-core", "cuda-bindings", "cuda-pathfinder",
            "cuda-toolkit", "cupy-cuda13x", "cupy-cuda12x", "nvmath-python", "nvidia-cublas", "nvidia-cuda-runtime",
            "nvidia-cuda-nvrtc", "nvidia-nvjitlink", "nvidia-nvvm", "nvidia-cuda-cccl", "safetensors", "tensorboardX",
            "crc32c", "pillow", "tensorboard", "protobuf", "tqdm", "pytest", "pytest-benchmark", "jaxtyping",
            "matplotlib")
# Settings that change how CUDA, CuPy or Numba behave here.
VARIABLES = ("CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE", "CUPY_TF32",
             "CUPY_CACHE_DIR", "NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS",
             "NUMBA_CACHE_DIR", "OPENBLAS_NUM_THREADS", "PYTHONPATH")


def installed(module):
    """Whether `module` can be imported; find_spec raises for a dotted name whose parent is missing (cuda.core)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def say(name, value):
    print(f"{name}: {value}", flush=True)


def nvvm():
    """(True, 'version at path (how found)') or (False, why not)."""
    try:
        from mnist_gpu.kernels import numba_cuda

        version, path, how = numba_cuda.nvvm()
    except Exception as error:  # noqa: BLE001 - not found is an answer here
        return False, f"not found ({type(error).__name__}: {' '.join(str(error).split())[:300]})"
    return True, f"{version} at {path} (found via {how})"


def gpu():
    """The GPU as CuPy sees it, or why none."""
    from mnist_gpu.backends import why_no_cuda_device

    reason = why_no_cuda_device()
    if reason is not None:
        return f"none usable ({reason})"
    import cupy

    runtime = cupy.cuda.runtime
    properties = runtime.getDeviceProperties(0)
    return (f"{properties['name'].decode()}, compute capability {properties['major']}.{properties['minor']}, "
            f"{properties['multiProcessorCount']} SMs, {properties['totalGlobalMem'] / 2 ** 30:.1f} GiB; CUDA driver "
            f"{runtime.driverGetVersion()}, runtime {runtime.runtimeGetVersion()}")


def main(argv):
    if argv == ["--nvvm"]:
        found, where = nvvm()
        say("NVVM", where)
        return 0 if found else 1
    if argv[:1] == ["--missing"]:
        missing = [name for name in argv[1:] if not installed(name)]
        say("missing Python packages", ", ".join(missing) if missing else "none")
        return 1 if missing else 0
    say("Python", f"{platform.python_version()} at {sys.executable} (prefix {sys.prefix}, base {sys.base_prefix})")
    say("machine", f"{platform.platform()}, {os.cpu_count()} CPUs")
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        say(f"package {package}", version)
    for name in VARIABLES:
        say(f"variable {name}", os.environ.get(name, "(unset)"))
    from mnist_gpu.check import libraries

    say("NVVM", nvvm()[1])
    for name, where in libraries().items():
        if name != "NVVM":
            say(name, where)
    say("GPU", gpu())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
