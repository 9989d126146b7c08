"""The package's shape: no import cycles, no side effects of importing it, nothing importable by accident."""
import ast
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import mnist_gpu

PACKAGE = Path(mnist_gpu.__file__).resolve().parent


def module_files():
    """{module name: file} of every module of the installed package (mnist_gpu.kernels mapped from kernels/)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    kernels = Path(__import__("importlib").util.find_spec("mnist_gpu.kernels").origin).parent
    for path in sorted(kernels.glob("*.py")):
        files["mnist_gpu.kernels" + ("" if path.stem == "__init__" else "." + path.stem)] = path
    return files


def imports(name, path, modules):
    """The package's modules that `name` imports, at module level or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import runs` imports a module; `from .errors import Error` a name
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules and module != name}


def cycles(graph):
    """Every cycle of the graph (as a list of modules), found by depth-first search."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def import_graph():
    modules = module_files()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "mnist_gpu.kernels.cpu" in graph["mnist_gpu.backends.cpu_backend"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_importing_the_package_changes_no_environment_and_no_numba_setting():
    """Every module of ours (those whose optional packages are here), imported: nothing set on import."""
    script = ("import importlib, os, sys, json; before = dict(os.environ); imported = 0\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n        importlib.import_module(name); imported += 1\n"
              "    except ImportError:\n        pass\n"
              "import numba.core.config as config\n"
              "print(json.dumps([os.environ.get('NUMBA_CUDA_ARRAY_INTERFACE_SYNC'), dict(os.environ) == before, "
              "config.CUDA_LOW_OCCUPANCY_WARNINGS, imported]))")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("NUMBA_")}
    modules = sorted(set(module_files()) - {"mnist_gpu.__main__"})  # that one runs the command line
    result = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True, text=True,
                            env=environment, check=True, cwd=os.path.dirname(PACKAGE))
    *settings, imported = json.loads(result.stdout)
    assert settings == [None, True, 1] and imported > 40, (imported, len(modules))


def test_no_package_path_is_edited_and_only_our_modules_import():
    """No __path__ trick: the checkout's top-level folders (bench, tests) are not modules of mnist_gpu."""
    for path in PACKAGE.rglob("*.py"):
        assert not re.search(r"__path__\s*(\+?=|\.(append|extend|insert)\b)", path.read_text()), path
    script = ("import importlib.util as u; print([u.find_spec(n) is not None for n in "
              "('mnist_gpu.kernels.cpu', 'mnist_gpu.bench', 'mnist_gpu.tests')])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[True, False, False]"


def test_the_package_exports_each_name_from_its_module_and_loads_none_until_used():
    """__init__ loads its names on first use (the command line's Ctrl-C before its modules load: entry.py): every
    public name is __all__'s, resolves to its module's object, and is what the TYPE_CHECKING imports say; importing
    the package loads neither NumPy nor any module of ours but version.py."""
    exports = mnist_gpu._EXPORTS
    assert sorted(mnist_gpu.__all__) == sorted([*exports, "__version__"])
    for name, module in exports.items():
        assert getattr(mnist_gpu, name) is getattr(__import__(f"mnist_gpu.{module}", fromlist=[name]), name), name
    declared = {}
    for node in ast.walk(ast.parse((PACKAGE / "__init__.py").read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                declared.update({alias.name: statement.module for alias in statement.names})
    assert declared == exports
    script = ("import sys, mnist_gpu; print(sorted(name for name in sys.modules if name.split('.')[0] in "
              "('numpy', 'mnist_gpu')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['mnist_gpu', 'mnist_gpu.version']"
    # No public name is also a submodule's (importing a submodule rebinds its name in the package: evaluate.py was
    # evaluation.py, and mnist_gpu.evaluation became that module once the trainer had loaded it).
    assert not {module.name for module in pkgutil.iter_modules([str(PACKAGE)])} & set(mnist_gpu.__all__)
    assert mnist_gpu.steps.HostSteps and not hasattr(mnist_gpu, "nothing_here")  # submodules on use
