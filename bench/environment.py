"""What a GPU session runs on, one `name: value` line each: the compiler toolchain (nvcc, nvJitLink, NVVM and
libdevice; without libdevice it stops there, exit 1), the machine, every relevant package's version as installed,
where cuBLAS and the CUDA runtime were found, and the settings that change how CUDA runs.

    python3 -m bench.environment                      # all of it (the session's `environment` stage); exit 1
                                                      # without libdevice
    python3 -m bench.environment --nvvm               # only where numba-cuda finds libNVVM; exit 0 found, 1 not
    python3 -m bench.environment --toolkit            # nvcc, nvJitLink, NVVM and libdevice; exit 1 if no libdevice
    python3 -m bench.environment --missing MODULE...  # which of these modules are not installed; exit 1 if any

Run by bench/gpu_session.py in a fresh process (with the checkout on PYTHONPATH), so it sees what the
session's setup installed. Nothing here is needed to train; it says what was there.
"""
import importlib.util
import os
import platform
import shutil
import subprocess
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


def nvcc():
    """nvcc's path and release (on PATH, else in CUDA_HOME / CUDA_PATH), or why none: the kernels do not need it
    (numba-cuda compiles through libNVVM), but it names the toolkit that CUDA_HOME may be set to."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    path = shutil.which("nvcc") or next((candidate for candidate in [os.path.join(home, "bin", "nvcc")] if home
                                         and os.access(candidate, os.X_OK)), None)
    if path is None:
        return "not found (on PATH, or in CUDA_HOME / CUDA_PATH)"
    try:
        printed = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{path} (--version failed: {type(error).__name__})"
    release = next((line.strip() for line in printed.splitlines() if "release" in line), "release not printed")
    return f"{path} ({release})"


def nvjitlink():
    """nvJitLink's version and library, as cuda-bindings loads it (it links the PTX for the GPU)."""
    try:
        from cuda.bindings import nvjitlink as bindings
        from cuda.pathfinder import load_nvidia_dynamic_lib

        version = ".".join(map(str, bindings.version()))
        library = load_nvidia_dynamic_lib("nvJitLink")
    except Exception as error:  # noqa: BLE001 - not found is an answer here
        return f"not found ({type(error).__name__}: {' '.join(str(error).split())[:300]})"
    return f"{version} at {library.abs_path} (found via {library.found_via})"


def libdevice():
    """(True, 'path (how found)') or (False, why not): the bitcode library every kernel compile links."""
    try:
        from numba.cuda.cuda_paths import get_cuda_paths

        found = get_cuda_paths()["libdevice"]
    except Exception as error:  # noqa: BLE001 - not found is an answer here
        return False, f"not found ({type(error).__name__}: {' '.join(str(error).split())[:300]})"
    if not found.info or not os.path.isfile(found.info):
        return False, ("not found (numba-cuda looks in a conda environment, the NVVM wheel, CUDA_HOME / CUDA_PATH "
                       "and /usr/local/cuda, each under nvvm/libdevice/): no kernel can compile")
    return True, f"{found.info} (found via {found.by})"


def toolkit():
    """Prints the compiler toolchain's lines; True if libdevice was found."""
    say("nvcc", nvcc())
    say("nvJitLink", nvjitlink())
    say("NVVM", nvvm()[1])
    found, where = libdevice()
    say("libdevice", where)
    return found


def gpu():
    """The GPU as CuPy sees it, or why none."""
    from mnist_gpu.backends.gpu_probe import why_no_cuda_device

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
    if argv == ["--toolkit"]:
        return 0 if toolkit() else 1
    if argv[:1] == ["--missing"]:
        missing = [name for name in argv[1:] if not installed(name)]
        say("missing Python packages", ", ".join(missing) if missing else "none")
        return 1 if missing else 0
    say("Python", f"{platform.python_version()} at {sys.executable} (prefix {sys.prefix}, base {sys.base_prefix})")
    if not toolkit():
        say("stopped", "without libdevice no kernel compiles; numba-cuda finds it in the NVVM wheel (nvidia-nvvm) or "
            "a CUDA toolkit's nvvm/libdevice/ (CUDA_HOME)")
        return 1
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

    for name, where in libraries().items():
        if name != "NVVM":
            say(name, where)
    say("GPU", gpu())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
