"""Every CUDA kernel through NVIDIA's real compiler, on a machine with no GPU: registers, spills, occupancy.

    python -m mnist_gpu.compile_report            # the Markdown table (docs/gpu.md's)
    python -m mnist_gpu.compile_report --json F   # every number, for tests

Three steps, each in its own process (numba.cuda is either the simulator or the real target,
chosen when numba loads):
1. record: under Numba's CUDA simulator, the CUDA backend runs a training step and an
   evaluation at tiny shapes (the trainer's own calls), and every launch is recorded: the kernel,
   the Numba types of its arguments and its block size. The signatures come from the code that
   launches, so they cannot drift from it (types do not depend on shapes).
2. compile, once per architecture: numba.cuda.compile_ptx (NVVM, from the CUDA 13 wheels) makes
   PTX for that compute capability, and nvJitLink (also a wheel; no driver needed) turns it into
   machine code and reports registers, spill stores and loads, stack, shared and local memory.
   Float64 instructions are counted in the PTX.
3. report: one row per kernel signature; the theoretical occupancy at the recorded block size
   follows NVIDIA's occupancy calculator (warps per SM limited by threads, registers, shared
   memory and blocks per SM).
A compile error, any spill, any local memory or stack, or any float64 instruction is a failure
(exit 1).
"""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

ARCHITECTURES = ((7, 5), (8, 0), (9, 0))


@dataclass(frozen=True)
class SmLimits:
    """Per-SM limits of one compute capability (CUDA C Programming Guide, compute capabilities table)."""

    max_threads: int
    max_blocks: int
    registers: int = 65536
    register_unit: int = 256  # registers are allocated per warp in units of this many
    shared_memory: int = 0  # bytes an SM can give to blocks
    reserved_shared_per_block: int = 0  # bytes the driver keeps per block (sm_80 and newer: 1 KB)


SM_LIMITS = {
    (7, 5): SmLimits(max_threads=1024, max_blocks=16, shared_memory=64 * 1024),
    (8, 0): SmLimits(max_threads=2048, max_blocks=32, shared_memory=164 * 1024, reserved_shared_per_block=1024),
    (9, 0): SmLimits(max_threads=2048, max_blocks=32, shared_memory=228 * 1024, reserved_shared_per_block=1024),
}


def occupancy(cc, threads_per_block, registers, shared_bytes):
    """Theoretical occupancy: resident warps per SM over the most the SM can hold."""
    limits = SM_LIMITS[cc]
    warps_per_block = -(-threads_per_block // 32)
    registers_per_warp = -(-registers * 32 // limits.register_unit) * limits.register_unit
    by_threads = limits.max_threads // (warps_per_block * 32)
    by_registers = (limits.registers // registers_per_warp) // warps_per_block if registers else limits.max_blocks
    shared_per_block = shared_bytes + limits.reserved_shared_per_block
    by_shared = limits.shared_memory // shared_per_block if shared_per_block else limits.max_blocks
    blocks = min(by_threads, by_registers, by_shared, limits.max_blocks)
    return blocks * warps_per_block / (limits.max_threads // 32)


# -- 1. record (runs under the simulator) ---------------------------------------------------------
def cuda_kernels():
    """{(module, name): kernel} of every CUDA kernel (not device function) in mnist_gpu.kernels."""
    import pkgutil

    import mnist_gpu.kernels as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("cpu", "numba_cuda"):  # the cpu backend's kernels; the import shim
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, value in vars(module).items():
            device_function = getattr(value, "_device", None) or getattr(value, "targetoptions", {}).get("device")
            if hasattr(value, "py_func") and value.py_func.__module__ == module.__name__ and not device_function:
                found[(module.__name__, name)] = value
    return found


def numba_type(value):
    """A JSON description of the Numba type a launch gives an argument."""
    import numba

    kind = numba.typeof(value)
    if isinstance(kind, numba.types.Array):
        return {"dtype": str(kind.dtype), "ndim": kind.ndim, "layout": kind.layout}
    return {"dtype": str(kind)}


def record_launches():
    """Every CUDA kernel, and the launches of one training step (op by op, and as the step program) and one
    evaluation by the CUDA backend.

    Returns {"kernels": [[module, name], ...], "launches": [{module, kernel, arguments, threads}, ...]}.
    """
    import contextlib
    import io

    import numpy as np

    from . import model as mnist
    from .backends.cuda_backend import CudaBackend
    from .backends.cuda_launch import KernelLaunch
    from .evaluate import do_eval
    from .input_data import DataSet
    from .steps import DeviceSplit

    kernels = cuda_kernels()
    names = {id(kernel): key for key, kernel in kernels.items()}
    launches = {}
    backend = CudaBackend()
    assert backend.simulated, "record_launches runs under NUMBA_ENABLE_CUDASIM=1"
    issue = backend._issue

    def recording(operation):  # every launch and GEMM passes here, eager or recorded into the step program
        if isinstance(operation, KernelLaunch):
            module, name = names[id(operation.kernel)]
            signature = [numba_type(argument) for argument in operation.arguments]
            launches[json.dumps([module, name, signature])] = {
                "module": module, "kernel": name, "arguments": signature,
                "threads": int(np.prod(operation.threads))}
        issue(operation)

    backend._issue = recording
    generator = np.random.default_rng(0)
    batch = 3
    data_set = DataSet(generator.integers(0, 256, (7, mnist.IMAGE_PIXELS), dtype=np.uint8),
                       generator.integers(0, mnist.NUM_CLASSES, 7).astype(np.int32), seed=0)
    split = DeviceSplit(backend, data_set)
    members = 2
    model = mnist.Model(backend, mnist.stacked([mnist.initial_variables(5, 4, seed=seed) for seed in range(members)]),
                        batch, [0.01] * members)
    images, labels = backend.empty((members, batch, mnist.IMAGE_PIXELS)), backend.empty((members, batch), np.int32)
    split.gather(backend, np.stack([data_set.next_batch_indices(batch) for _ in range(members)]), images, labels)
    mnist.train_step(model, images, labels)
    program = backend.step_program(model, split, [data_set] * members, last_step=model.global_step + 1, graph="off")
    program.run(model.global_step)
    with contextlib.redirect_stdout(io.StringIO()):
        do_eval(model, split)
    return {"kernels": sorted(kernels), "launches": list(launches.values())}


# -- 2. compile (runs with the real numba-cuda target, no GPU) ------------------------------------
def _compile_without_a_gpu(cc):
    """Let device functions compile for `cc`: numba-cuda asks the current GPU for its compute capability."""
    from types import SimpleNamespace

    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)


def _signature(arguments):
    from numba import types

    return tuple(types.Array(getattr(types, argument["dtype"]), argument["ndim"], argument["layout"])
                 if "ndim" in argument else getattr(types, argument["dtype"]) for argument in arguments)


def link_log(ptx, cc):
    """nvJitLink's verbose log of turning `ptx` into sm_<cc> machine code."""
    from cuda.bindings import nvjitlink

    handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    try:
        data = ptx.encode()
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel.ptx")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    return log.decode(errors="replace").rstrip("\x00")


def _last_int(pattern, text):
    found = re.findall(pattern, text)
    if not found:
        raise ValueError(f"nvJitLink's log has no {pattern!r}:\n{text}")
    return int(found[-1])


def float64_instructions(ptx):
    """PTX lines that compute in (or convert to/from) float64, register declarations aside."""
    return [line.strip() for line in ptx.splitlines()
            if ".f64" in line and not line.strip().startswith((".reg", "//"))]


def compile_launch(launch, cc):
    """Compile one recorded launch for `cc`; returns its resource usage (or the compile error)."""
    from numba import cuda

    result = dict(launch, cc=list(cc))
    try:
        kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
        ptx, _ = cuda.compile_ptx(kernel.py_func, _signature(launch["arguments"]), cc=cc)
        log = link_log(ptx, cc)
    except Exception as error:  # noqa: BLE001 - a compile error is a reported failure
        return dict(result, error=f"{type(error).__name__}: " + (str(error).strip().splitlines() or [""])[0])
    result.update(
        registers=_last_int(r"used (\d+) registers", log),
        shared_bytes=_last_int(r"(\d+) bytes smem", log),
        local_bytes=_last_int(r"(\d+) bytes lmem", log),
        stack_bytes=_last_int(r"(\d+) stack", log),
        spill_stores=_last_int(r"(\d+) bytes spill stores", log),
        spill_loads=_last_int(r"(\d+) bytes spill loads", log),
        float64=len(float64_instructions(ptx)),
    )
    result["occupancy"] = occupancy(cc, launch["threads"], result["registers"], result["shared_bytes"])
    return result


def compile_all(launches, cc):
    _compile_without_a_gpu(cc)
    return [compile_launch(launch, cc) for launch in launches]


# -- 3. report -----------------------------------------------------------------------------------
def _run_step(step, payload, simulated, extra_path=None):
    """Run one step of this module in a fresh process; JSON in on stdin, JSON out on stdout."""
    environment = dict(os.environ, NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS="0")
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulated:
        environment["NUMBA_ENABLE_CUDASIM"] = "1"
    if extra_path:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path, environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "mnist_gpu.compile_report", "--step", step],
                            input=json.dumps(payload), capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"the {step} step failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def compile_report(launches, extra_path=None):
    """Compile recorded launches for every architecture (each in its own process); returns every result."""
    results = []
    for cc in ARCHITECTURES:
        results += _run_step("compile", {"launches": launches, "cc": cc}, simulated=False, extra_path=extra_path)
    return results


def never_launched(recording):
    """Kernels the backend never launched in the recording: dead code, or code this report cannot see."""
    launched = {(launch["module"], launch["kernel"]) for launch in recording["launches"]}
    return [f"{module}.{name}" for module, name in recording["kernels"] if (module, name) not in launched]


def problems(result):
    """Why a compiled kernel is not acceptable ([] when it is)."""
    if "error" in result:
        return [f"compile error: {result['error']}"]
    found = []
    if result["spill_stores"] or result["spill_loads"]:
        found.append(f"spills ({result['spill_stores']} bytes stored, {result['spill_loads']} loaded)")
    if result["local_bytes"] or result["stack_bytes"]:
        found.append(f"local memory ({result['local_bytes']} bytes lmem, {result['stack_bytes']} bytes stack)")
    if result["float64"]:
        found.append(f"{result['float64']} float64 instructions")
    return found


def describe(arguments):
    return ", ".join(f"{argument['dtype']}[{':, ' * (argument['ndim'] - 1)}:]" if "ndim" in argument
                     else argument["dtype"] for argument in arguments)


def markdown(results):
    """One row per kernel signature, a column per architecture for registers and occupancy."""
    rows = {}
    for result in results:
        key = (result["module"].rsplit(".", 1)[-1], result["kernel"], describe(result["arguments"]), result["threads"])
        rows.setdefault(key, {})[tuple(result["cc"])] = result
    archs = [f"sm_{major}{minor}" for major, minor in ARCHITECTURES]
    lines = ["| kernel | argument types | threads/block | registers (" + " / ".join(archs) + ") | shared memory "
             "| spills, local memory, float64 | occupancy (" + " / ".join(archs) + ") |",
             "|---|---|---|---|---|---|---|"]
    for (module, kernel, arguments, threads), by_cc in rows.items():
        compiled = [by_cc[cc] for cc in ARCHITECTURES]
        issues = sorted({issue for result in compiled for issue in problems(result)}) or ["none"]
        if any("error" in result for result in compiled):
            registers = occupancies = shared = "-"
        else:
            registers = " / ".join(str(result["registers"]) for result in compiled)
            occupancies = " / ".join(f"{result['occupancy']:.0%}" for result in compiled)
            shared = f"{max(result['shared_bytes'] for result in compiled)} B"
        lines.append(f"| `{module}.{kernel}` | {arguments} | {threads} | {registers} | {shared} | "
                     f"{'; '.join(issues)} | {occupancies} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=("record", "compile"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write every number to this file")
    options = parser.parse_args(argv)
    if options.step == "record":
        json.dump(record_launches(), sys.stdout)
        return 0
    if options.step == "compile":
        payload = json.load(sys.stdin)
        json.dump(compile_all(payload["launches"], tuple(payload["cc"])), sys.stdout)
        return 0
    recording = _run_step("record", None, simulated=True)
    results = compile_report(recording["launches"])
    if options.json:
        with open(options.json, "w", encoding="utf-8") as stream:
            json.dump({"recording": recording, "results": results}, stream, indent=1)
    print(markdown(results))
    for result in results:
        for problem in problems(result):
            print(f"{result['kernel']} sm_{result['cc'][0]}{result['cc'][1]}: {problem}", file=sys.stderr)
    for name in never_launched(recording):
        print(f"never launched by the CUDA backend: {name}", file=sys.stderr)
    return 1 if any(problems(result) for result in results) or never_launched(recording) else 0


if __name__ == "__main__":
    sys.exit(main())
