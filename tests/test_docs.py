"""README.md and docs/ against the code they describe: quoted excerpts, links, flags, kernels, generated tables.

Markers (HTML comments, invisible on GitHub) tie the Markdown to the code:

    <!-- quote: PATH -->           before a fenced block or a table: its lines appear contiguously in
                                   PATH (one common indentation may be dropped; a line "..."
                                   separates pieces, each contiguous, in order)
    <!-- quote spans: PATH -->     before a table: each code span holding "(" occurs in PATH (spaces
                                   normalised): the lines of model.py the walkthrough sets beside
                                   its equations
    <!-- example -->              before a fenced python block that is a usage example, not a quote
    <!-- example: numpy-step -->   the walkthrough's NumPy step, run here against model.train_step
    <!-- flags: COMMAND -->        before cli.md's flag table of `mnist-gpu COMMAND`
    <!-- backend ops -->           before design.md's table of the Backend protocol's methods
    <!-- figure: NAME -->VALUE     a measured figure, inline: VALUE is bench/results/figures.json's NAME
                                   as bench/figures.py shows it (the file says its date, machine and
                                   command; performance.md lists them all, generated)
    <!-- afternoon read -->        before the README's table of the core's paths and their line counts
    <!-- generated: NAME -->  ...  <!-- end generated: NAME -->   output of a command (GENERATORS)

Every python block carries a quote or an example marker. Tables a command produces sit between
generated markers: `python tests/test_docs.py --update [NAME ...]` runs those commands and
rewrites them (the compiler table and `mnist-gpu check` are measurements: give the date beside
them). The
tests compare what comes from the code alone exactly, and of the measured ones what the code
decides: the kernels, their argument types and block sizes, the check's lines and verdicts.
Fast (a few seconds: one simulator process and one `mnist-gpu check`), no network.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers import needs_cuda_packages, needs_numba_cuda

REPOSITORY = Path(__file__).resolve().parent.parent
DOCS = REPOSITORY / "docs"
README = REPOSITORY / "README.md"
README_LIMIT = 12_000  # characters: the front page stays a five-minute read
DOCS_LIMIT = 100_000  # characters in docs/*.md together
WALKTHROUGH_LIMIT = 35_000  # characters: read in one sitting
FIGURES = REPOSITORY / "bench" / "results" / "figures.json"
FIGURE = re.compile(r"<!--\s*figure:\s*(\w+)\s*-->")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
TEST_COMMAND = '.venv/bin/pip install ".[test]" && .venv/bin/pytest'  # .ci/run runs exactly this
RUN_COMMAND = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/mnist-gpu"

# Flags of other tools that the docs mention, each with its tool; ours come from the parsers.
FOREIGN_FLAGS = {
    "--json": "python -m mnist_gpu.compile_report",
    "--out": "python -m bench.report",
    "--update": "python tests/test_docs.py",
    "--benchmark-json": "pytest-benchmark",
    "--no-deps": "pip download", "--only-binary": "pip download", "--python-version": "pip download",
    "--implementation": "pip download", "--platform": "pip download",
    "--system-site-packages": "python -m venv",
    "--logdir": "tensorboard",
    "--hypothesis-show-statistics": "pytest (hypothesis)",
    "--no-index": "pip install", "--target": "pip install",
    "--rounds": "python tools/measure_run_cost.py",
    "--array": "sbatch", "--gres": "sbatch", "--job-name": "sbatch", "--requeue": "sbatch", "--time": "sbatch",
    "--max-steps": "a typo cli.md shows refused", "--lr": "a typo cli.md shows refused",
    "--time-limit": "bash bench/gpu_session.sh", "--wheels": "bash bench/gpu_session.sh",
    "--max-files": "bash bench/gpu_session.sh", "--max-depth": "bash bench/gpu_session.sh",
    "--max-file-mib": "bash bench/gpu_session.sh", "--max-total-mib": "bash bench/gpu_session.sh",
}
OWN_TOOL_SOURCES = {"--json": "mnist_gpu/compile_report.py", "--out": "bench/report.py",
                    "--update": "tests/test_docs.py", "--rounds": "tools/measure_run_cost.py",
                    **{flag: "bench/gpu_session.py" for flag in ("--time-limit", "--wheels", "--max-files",
                                                                 "--max-depth", "--max-file-mib", "--max-total-mib")}}


def markdown_files():
    return [README] + sorted(DOCS.glob("*.md"))


def relative(path):
    return path.relative_to(REPOSITORY).as_posix()


# -- reading Markdown ---------------------------------------------------------------------------------------
FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")


def blocks(text):
    """Fenced code blocks: (line index of the opening fence, info string, [lines])."""
    found, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening:
            fence, start, body = opening[2], index, []
            index += 1
            while index < len(lines) and not lines[index].strip().startswith(fence):
                body.append(lines[index])
                index += 1
            found.append((start, opening[3].strip(), body))
        index += 1
    return found


def outside_blocks(text):
    """The text with its fenced blocks blanked out (headings live here)."""
    lines = text.splitlines()
    for start, _, body in blocks(text):
        lines[start:start + len(body) + 2] = [""] * len(lines[start:start + len(body) + 2])
    return "\n".join(lines)


def prose(text):
    """The text with fenced blocks and code spans blanked out (links live here)."""
    return re.sub(r"`[^`\n]*`", "``", outside_blocks(text))


def code_text(text):
    """Everything in fenced blocks and code spans: where commands, flags and names are written."""
    pieces = ["\n".join(body) for _, _, body in blocks(text)]
    return "\n".join(pieces + re.findall(r"`([^`\n]+)`", outside_blocks(text)))


def marker_before(lines, index):
    """The marker comment on the nearest non-blank line above `index`, or None."""
    index -= 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    match = re.fullmatch(r"<!--\s*(.*?)\s*-->", lines[index].strip()) if index >= 0 else None
    return match[1] if match else None


def table_after(lines, index):
    """The rows (lists of cells) of the Markdown table that starts after line `index`."""
    index += 1
    while index < len(lines) and not lines[index].strip():
        index += 1
    rows = []
    while index < len(lines) and lines[index].lstrip().startswith("|"):
        cells = re.split(r"(?<!\\)\|", lines[index].strip())[1:-1]
        if not all(re.fullmatch(r"\s*:?-+:?\s*", cell) for cell in cells):
            rows.append([cell.strip() for cell in cells])
        index += 1
    return rows


def markers(text, kind):
    """(line index, argument) of every `<!-- kind: argument -->` (or `<!-- kind -->`) marker."""
    found = []
    for index, line in enumerate(text.splitlines()):
        match = re.fullmatch(r"<!--\s*" + re.escape(kind) + r"(?::\s*(.*?))?\s*-->", line.strip())
        if match:
            found.append((index, match[1]))
    return found


def generated(text, name):
    """The lines between `<!-- generated: name -->` and `<!-- end generated: name -->`."""
    match = re.search(r"<!-- generated: " + re.escape(name) + r" -->\n(.*?)<!-- end generated: "
                      + re.escape(name) + r" -->", text, re.S)
    return match[1].splitlines() if match else None


# -- GitHub's heading anchors -------------------------------------------------------------------------------
def slug(heading):
    """GitHub's anchor for a heading: its text (code and links unwrapped), lower case, punctuation but - and _
    dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text):
    """Every heading's anchor, numbered as GitHub numbers repeated ones (-1, -2, ...)."""
    seen, found = {}, set()
    for line in outside_blocks(text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def broken_links(path):
    """Why each relative link or #anchor of a Markdown file does not resolve ([] when all do)."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: (no network here)
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if REPOSITORY not in destination.parents and destination != REPOSITORY:
            problems.append(f"{target}: outside the repository")
        elif not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading with the anchor #{anchor}")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not Markdown (line numbers move)")
    return problems


# -- quoted excerpts ----------------------------------------------------------------------------------------
def find_contiguous(piece, lines, start=0):
    """The index after `piece` (lines, one common indentation possibly dropped) found contiguously in `lines`
    at or after `start`, or None."""
    while piece and not piece[0].strip():
        piece = piece[1:]
    if not piece:
        return start
    for first in range(start, len(lines) - len(piece) + 1):
        if not lines[first].endswith(piece[0]):
            continue
        indent = lines[first][:len(lines[first]) - len(piece[0])]
        if indent.strip():
            continue
        if all((line == indent + quoted) if quoted.strip() else not line.strip()
               for line, quoted in zip(lines[first:first + len(piece)], piece, strict=True)):
            return first + len(piece)
    return None


def excerpt_problem(quoted, source_path):
    """None when every piece of `quoted` (split at lines "...") appears contiguously in the file, in order."""
    if not source_path.is_file():
        return f"{relative(source_path)} does not exist"
    lines = source_path.read_text(encoding="utf-8").splitlines()
    pieces, piece = [], []
    for line in quoted:
        if line.strip() == "...":
            pieces.append(piece)
            piece = []
        else:
            piece.append(line)
    pieces.append(piece)
    position = 0
    for piece in pieces:
        found = find_contiguous(piece, lines, position)
        if found is None:
            first = next((line for line in piece if line.strip()), "")
            return f"these lines are not in {relative(source_path)} as quoted (from {first.strip()!r})"
        position = found
    return None


def quote_problems(path):
    text = path.read_text(encoding="utf-8")
    lines, problems = text.splitlines(), []
    for start, info, body in blocks(text):
        marker = marker_before(lines, start) or ""
        where = f"{relative(path)}:{start + 1}"
        if marker.startswith("quote:"):
            problem = excerpt_problem(body, REPOSITORY / marker.split(":", 1)[1].strip())
            if problem:
                problems.append(f"{where}: {problem}")
        elif info.startswith("python") and not marker.startswith("example"):
            problems.append(f"{where}: a python block with neither <!-- quote: PATH --> nor <!-- example --> before it")
    for index, source in markers(text, "quote"):  # a quoted table (a quoted block is checked above)
        following = index + 1
        while following < len(lines) and not lines[following].strip():
            following += 1
        table = []
        while following + len(table) < len(lines) and lines[following + len(table)].lstrip().startswith("|"):
            table.append(lines[following + len(table)])
        if table:
            problem = excerpt_problem(table, REPOSITORY / source)
            if problem:
                problems.append(f"{relative(path)}:{index + 1}: {problem}")
        elif following >= len(lines) or not FENCE.match(lines[following]):
            problems.append(f"{relative(path)}:{index + 1}: a quote marker before neither a fenced block nor a table")
    for index, source in markers(text, "quote spans"):
        normalised = " ".join((REPOSITORY / source).read_text(encoding="utf-8").split())
        for row in table_after(lines, index):
            for span in re.findall(r"`([^`]+)`", " | ".join(row)):
                if "(" in span and " ".join(span.split()) not in normalised:
                    problems.append(f"{relative(path)}:{index + 1}: `{span}` is not in {source}")
    return problems


# -- the code's own names -----------------------------------------------------------------------------------
def parsers():
    """{command: its argparse parser} for `mnist-gpu` itself ("") and each subcommand."""
    from mnist_gpu.flags import build_parser

    top = build_parser()
    found = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def options(parser):
    """{flag: action} of a parser (every spelling of each option), without -h/--help."""
    return {flag: action for action in parser._actions if action.option_strings and action.dest != "help"
            for flag in action.option_strings}


def kernel_names():
    from mnist_gpu.compile_report import cuda_kernels

    return {name for _, name in cuda_kernels()}


# -- generated tables: what runs under the simulator ---------------------------------------------------------
def record_under_simulator():
    """Run in a process with NUMBA_ENABLE_CUDASIM=1: the compiler report's recorded launches, and the CUDA step
    program at the tutorial's shapes as the backend builds it (recorded, not run)."""
    from mnist_gpu import model as mnist
    from mnist_gpu.backends.cuda_backend import CudaBackend
    from mnist_gpu.backends.cuda_launch import KernelLaunch
    from mnist_gpu.compile_report import cuda_kernels, record_launches
    from mnist_gpu.input_data import DataSet
    from mnist_gpu.kernels import numba_cuda
    from mnist_gpu.steps import DeviceSplit

    kernels = {id(kernel): name for (_, name), kernel in cuda_kernels().items()}
    numba_cuda.SIMULATED_BLOCKS = 2 ** 31  # recorded, never run: the grids a GPU gets
    backend = CudaBackend()
    model = mnist.Model(backend, mnist.stacked([mnist.initial_variables(128, 32, seed=0)]), 100, [0.01])
    data = DataSet(np.zeros((1000, mnist.IMAGE_PIXELS), np.uint8), np.zeros(1000, np.int32))
    split = DeviceSplit(backend, data)
    program = backend.step_program(model, split, [data], last_step=1, graph="off", note=lambda line: None)
    names = {id(split.pixels): "pixels", id(split.labels): "all_labels", id(program.index_ring): "index_ring",
             id(program.step_counter): "step", id(program.loss_ring): "loss_ring", id(model.active): "active",
             id(program.images): "images", id(program.labels): "labels",
             id(backend.rates_on_device(model.learning_rates)): "learning_rates"}
    for buffer in ("hidden1", "hidden2", "logits", "grad_logits", "grad_hidden2", "grad_hidden1"):
        names[id(getattr(model, buffer))] = buffer
    names.update({id(value): name for name, value in model.variables.items()})
    names.update({id(backend.scratch(value.shape)): f"d {name}" for name, value in model.variables.items()
                  if name.endswith("weights")})  # each weight's gradient (matmul_sgd), made while recording
    names.update({id(value): f"d {name}" for name, value in model.bias_gradients.items()})

    def name_of(value):
        if id(value) in names:
            return names[id(value)]
        if isinstance(value, np.ndarray) and value.base is not None and id(value.base) in names:
            return names[id(value.base)]  # a view: images and labels flat, as gather_batch_kernel takes them
        if isinstance(value, np.ndarray) and value.shape == (1,) and value.dtype == np.float32:
            return "losses"  # softmax_xent's output, made by the recording
        return str(np.float32(value))  # a scalar argument: its float32 value

    operations = []
    for operation in program.operations:
        if isinstance(operation, KernelLaunch):
            operations.append({"kernel": kernels[id(operation.kernel)], "blocks": operation.blocks,
                               "threads": operation.threads,
                               "arguments": [name_of(argument) for argument in operation.arguments]})
        else:
            a, b, out = operation.buffers
            # One member, one call; cuBLAS's A is our b, its B our a.
            transa, transb, m, n, k, _, lda, _, _, ldb, _, _, ldc, _, _ = operation.arguments
            operations.append({"gemm": {
                "a": [name_of(a), list(a.shape)], "b": [name_of(b), list(b.shape)],
                "out": [name_of(out), list(out.shape)], "transa": transa, "transb": transb, "m": m, "n": n, "k": k,
                "lda": lda, "ldb": ldb, "ldc": ldc,
                "alpha": float(operation.scalars[0]), "beta": float(operation.scalars[1])}})
    return {"compile_launches": record_launches()["launches"], "program": operations}


def simulator_recording():
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS="0")
    result = subprocess.run([sys.executable, __file__, "--record"], capture_output=True, text=True, env=environment,
                            cwd=REPOSITORY)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def _launch(blocks_, threads):
    return f"{blocks_} × {tuple(threads) if isinstance(threads, list) else threads}"


SHORT_NAMES = {"hidden1/weights": "W1", "hidden1/biases": "b1", "hidden2/weights": "W2", "hidden2/biases": "b2",
               "softmax_linear/weights": "W3", "softmax_linear/biases": "b3"}  # the walkthrough's names


def short(name):
    """A buffer as the walkthrough names it: W1 for hidden1/weights, d b1 for its bias gradient."""
    prefix = "d " if name.startswith("d ") else ""
    name = name[len(prefix):]
    return prefix + SHORT_NAMES.get(name, name)


def step_program_table(program):
    """The walkthrough's table of the step program: every operation in order, its launch and its buffers."""
    lines = ["| # | operation | blocks × threads per block | arguments |", "|---|---|---|---|"]
    gemms = 0
    for number, operation in enumerate(program, 1):
        if "gemm" in operation:
            gemms += 1
            call = operation["gemm"]
            lines.append(f"| {number} | GEMM {gemms} | cuBLAS | {short(call['a'][0])}, {short(call['b'][0])} → "
                         f"{short(call['out'][0])} |")
        else:
            launch = _launch(operation["blocks"], operation["threads"])
            arguments = ", ".join(short(argument) for argument in operation["arguments"])
            lines.append(f"| {number} | `{operation['kernel']}` | {launch} | {arguments} |")
    return lines


def gemm_table(program):
    """The walkthrough's table of the step's GEMMs: the row-major product and the cuBLAS arguments it becomes."""
    flag = {0: "N", 1: "T"}
    lines = ["| GEMM | row-major, as model.py asks | transa, transb | m, n, k | A, lda | B, ldb | C, ldc "
             "| alpha, beta |", "|---|---|---|---|---|---|---|---|"]
    calls = [operation["gemm"] for operation in program if "gemm" in operation]
    for number, call in enumerate(calls, 1):
        a, b, out = short(call["a"][0]), short(call["b"][0]), short(call["out"][0])
        product = f"{a}{'ᵀ' if call['transb'] else ''} @ {b}{'ᵀ' if call['transa'] else ''}"
        row = f"{out} = {product}" if call["beta"] == 0 else f"{out} −= {-call['alpha']:g} × {product}"
        lines.append(f"| {number} | {row} | {flag[call['transa']]}, {flag[call['transb']]} | {call['m']}, {call['n']}, "
                     f"{call['k']} | {b}, {call['lda']} | {a}, {call['ldb']} | {out}, {call['ldc']} | "
                     f"{call['alpha']:g}, {call['beta']:g} |")
    return lines


def compile_rows(lines):
    """(kernel, argument types, threads/block) of each row of a compiler table."""
    rows = [row for row in (re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in lines if line.startswith("| `"))]
    return {(row[0].strip(), row[1].strip(), row[2].strip()) for row in rows}


def recorded_compile_rows(launches):
    from mnist_gpu.compile_report import describe

    return {(f"`{launch['module'].rsplit('.', 1)[-1]}.{launch['kernel']}`", describe(launch["arguments"]),
             str(launch["threads"])) for launch in launches}


def check_shape(lines):
    """`mnist-gpu check`'s lines with what varies by machine masked: timings and the version numbers."""
    masked = []
    for line in lines:
        if line.startswith("versions: "):
            line = "versions: " + ", ".join(part.split(" ")[0] for part in line[len("versions: "):].split(", "))
        if line.startswith("libraries: "):  # where each library was found differs from machine to machine
            found = re.findall(r"(?:^|; )(NVVM|cuBLAS|CUDA runtime) ", line[len("libraries: "):])
            line = "libraries: " + ", ".join(found)
        masked.append(re.sub(r" *\d+(\.\d+)? us", " # us", line))
    return masked


# -- measured figures ---------------------------------------------------------------------------------------
def load_figures():
    return json.loads(FIGURES.read_text(encoding="utf-8")) if FIGURES.exists() else {}


def shown(figure):
    """How the docs write a figure (bench/figures.py's rule, repeated here so that bench/ needs no import)."""
    value, unit = figure["value"], figure["unit"]
    return f"{value:.2f}x" if unit == "x" else f"{value:g} {unit}"


def quoted_figures():
    """The names of the figures the docs quote."""
    return {name for path in markdown_files() for name in FIGURE.findall(path.read_text(encoding="utf-8"))}


def figures_table(figures):
    """performance.md's list of every figure the docs quote: a table per measuring run, headed by its command, date,
    commit and machine."""
    runs = {}
    quoted = quoted_figures()
    for name, figure in sorted(figures.items()):
        if name not in quoted:
            continue
        runs.setdefault((figure["command"], figure["date"], figure["commit"], figure["machine"]), []).append(
            (name, figure))
    lines = []
    for (command, date, commit, machine), named in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        lines += [f"`{command}`, {date}, commit {commit}; {machine}:", "",
                  "| figure | value | what |", "|---|---|---|"]
        lines += [f"| `{name}` | {shown(figure)} | {figure['what']} |" for name, figure in named] + [""]
    return lines


def figure_problems(path, figures):
    """Why each `<!-- figure: NAME -->` of a Markdown file is not followed by the file's value ([] when all are)."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for match in FIGURE.finditer(text):
        name, after = match[1], text[match.end():]
        if name not in figures:
            problems.append(f"{relative(path)}: no figure {name} in {FIGURES.name}")
            continue
        expected = shown(figures[name])
        if not after.startswith(expected) or re.match(r"\w|\.\d", after[len(expected):len(expected) + 2]):
            problems.append(f"{relative(path)}: {name} is {expected} in {FIGURES.name}, the doc says "
                            f"{after[:len(expected) + 4]!r}")
    return problems


def stray_dates(path):
    """Dates in a Markdown file's prose that are neither in a generated block nor in the paragraph just above one.

    A measured figure carries its date in the figures file; a measured table (`--update`) in the line before it.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    inside = False
    for index, line in enumerate(lines):  # blank the generated blocks' contents
        if line.startswith("<!-- end generated:"):
            inside = False
        elif inside:
            lines[index] = ""
        elif line.startswith("<!-- generated:"):
            inside = True
    lines = prose("\n".join(lines)).splitlines()
    found = []
    for index, line in enumerate(lines):
        if not DATE.search(line):
            continue
        following = index
        while following < len(lines) and lines[following].strip():
            following += 1
        while following < len(lines) and not lines[following].strip():
            following += 1
        if following >= len(lines) or not lines[following].startswith("<!-- generated:"):
            found.append(f"{relative(path)}:{index + 1}: {DATE.search(line)[0]}")
    return found


# -- the tests ----------------------------------------------------------------------------------------------
def test_the_front_page_is_a_five_minute_read():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; at most {README_LIMIT}"
    assert RUN_COMMAND in text and "python3 -m venv .venv && " + TEST_COMMAND in text
    assert TEST_COMMAND in (REPOSITORY / ".ci" / "run").read_text(), "CI no longer runs the README's test command"


def test_the_docs_are_there_one_file_per_concern():
    expected = {"walkthrough.md", "cli.md", "design.md", "gpu.md", "performance.md", "reliability.md"}
    assert expected <= {path.name for path in DOCS.glob("*.md")}
    readme = README.read_text(encoding="utf-8")
    assert all(f"docs/{name}" in readme for name in expected), "the README links every doc"


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_every_link_resolves(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_quoted_excerpts_are_in_the_files_they_quote(path):
    assert quote_problems(path) == []


def test_every_flag_of_every_command_is_in_cli_md_with_its_default_and_choices():
    from mnist_gpu.locations import cache_home, data_home

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    tables = dict((command, table_after(lines, index)) for index, command in markers(text, "flags"))
    for command, parser in parsers().items():
        if not command:
            continue
        assert f"`mnist-gpu {command}`" in text, f"cli.md has no section on mnist-gpu {command}"
        flags = options(parser)
        if not flags:
            continue
        assert command in tables, f"cli.md has no <!-- flags: {command} --> table"
        documented = {}
        for row in tables[command][1:]:
            for flag in re.findall(r"`(--?[\w-]+)`", row[0]):
                documented[flag] = row
        assert set(documented) == set(flags), f"mnist-gpu {command}: documented {sorted(documented)}, " \
            f"the parser has {sorted(flags)}"
        for flag, action in flags.items():
            default_cell, row_text = documented[flag][1], " ".join(documented[flag])
            default = action.default
            if isinstance(default, str):
                default = default.replace(cache_home(), "$XDG_CACHE_HOME").replace(data_home(), "$XDG_DATA_HOME")
            if default is False:
                assert default_cell == "off", (command, flag, default_cell)
            elif default is None:
                assert default_cell, (command, flag)
            else:
                assert str(default) in default_cell, (command, flag, default, default_cell)
            for choice in action.choices or ():
                assert f"`{choice}`" in row_text, (command, flag, choice)


def test_flags_and_subcommands_the_docs_name_exist():
    from mnist_gpu.cli import COMMANDS

    known = set(FOREIGN_FLAGS) | {"-h", "--help"}
    for parser in parsers().values():
        known |= set(options(parser))
    for flag, source in OWN_TOOL_SOURCES.items():
        assert f'"{flag}"' in (REPOSITORY / source).read_text(encoding="utf-8"), (flag, source)
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        unknown = set(re.findall(r"(?<![\w\-./])--[a-zA-Z][\w-]*", text)) - known
        assert not unknown, f"{relative(path)} names flags that exist nowhere: {sorted(unknown)}"
        commands = set(re.findall(r"\bmnist-gpu ([a-z]\w*)", code_text(text)))
        assert commands <= set(COMMANDS), f"{relative(path)}: {sorted(commands - set(COMMANDS))} are not subcommands"


def without_quoted_blocks(text):
    """The text without its quoted code blocks (checked against their files already)."""
    lines = text.splitlines()
    for start, _, body in blocks(text):
        if (marker_before(lines, start) or "").startswith("quote:"):
            lines[start:start + len(body) + 2] = [""] * (len(body) + 2)
    return "\n".join(lines)


@needs_numba_cuda  # the kernels are read from their modules
def test_kernels_the_docs_name_exist():
    names = kernel_names()
    for path in markdown_files():
        named = set(re.findall(r"\b\w+_kernel\b", without_quoted_blocks(path.read_text(encoding="utf-8"))))
        assert named <= names, f"{relative(path)} names kernels that do not exist: {sorted(named - names)}"
    walkthrough = (DOCS / "walkthrough.md").read_text(encoding="utf-8")
    assert names <= set(re.findall(r"\b\w+_kernel\b", walkthrough)), "the walkthrough explains every kernel"


def test_the_backend_interface_table_lists_the_protocols_methods():
    from mnist_gpu.backends.interface import Backend

    text = (DOCS / "design.md").read_text(encoding="utf-8")
    (index, _), = markers(text, "backend ops")
    documented = {name for row in table_after(text.splitlines(), index)[1:]
                  for name in re.findall(r"`(\w+)\(", row[0])}
    methods = {name for name, member in vars(Backend).items() if callable(member) and not name.startswith("_")}
    assert documented == methods


def test_the_docs_fit_their_limits():
    sizes = {path.name: len(path.read_text(encoding="utf-8")) for path in DOCS.glob("*.md")}
    assert sum(sizes.values()) <= DOCS_LIMIT, f"docs/ has {sum(sizes.values())} characters ({sizes}); at most " \
        f"{DOCS_LIMIT}"
    assert sizes["walkthrough.md"] <= WALKTHROUGH_LIMIT, f"walkthrough.md has {sizes['walkthrough.md']} characters; " \
        f"at most {WALKTHROUGH_LIMIT}: one sitting"


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_every_quoted_figure_is_the_one_in_the_results_file(path):
    assert figure_problems(path, load_figures()) == []


def test_every_figure_is_listed_with_its_command_date_and_machine():
    figures = load_figures()
    assert figures, f"{relative(FIGURES)} is missing: run the measuring commands (docs/performance.md)"
    for name, figure in figures.items():
        assert {"value", "unit", "what", "command", "date", "machine", "commit"} <= set(figure), name
        assert DATE.fullmatch(figure["date"]), name
    assert generated((DOCS / "performance.md").read_text(encoding="utf-8"), "figures") == figures_table(figures)


@pytest.mark.parametrize("path", markdown_files(), ids=relative)
def test_dates_sit_only_in_the_results_file_and_beside_measured_tables(path):
    assert stray_dates(path) == []


def test_the_afternoon_read_counts_its_lines():
    text = README.read_text(encoding="utf-8")
    (index, _), = markers(text, "afternoon read")
    total = 0
    for row in table_after(text.splitlines(), index)[1:]:
        place = REPOSITORY / re.search(r"`([^`]+)`", row[1])[1]
        files = sorted(place.glob("*.py")) if place.is_dir() else [place]
        lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in files)
        stated = int(row[-1].replace(",", ""))
        assert abs(stated - lines) <= 0.1 * lines, f"README: {relative(place)} has {lines} lines; the table: {stated}"
        total += lines
    stated = int(re.search(r"about ([\d,]+) lines", text)[1].replace(",", ""))
    assert abs(stated - total) <= 0.1 * total, f"README: the afternoon read is {total} lines, it says about {stated}"


def test_the_numpy_step_in_the_walkthrough_is_the_models_step(generator):
    from mnist_gpu import model as mnist
    from mnist_gpu.backends.numpy_backend import NumpyBackend

    text = (DOCS / "walkthrough.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    (body,) = [body for start, _, body in blocks(text) if marker_before(lines, start) == "example: numpy-step"]
    namespace = {}
    exec("\n".join(body), namespace)  # our own docs' code
    batch, hidden1, hidden2 = 17, 9, 5
    variables = mnist.initial_variables(hidden1, hidden2, seed=4)
    for name in variables:
        if name.endswith("biases"):  # non-zero biases, so that a dropped bias term shows
            variables[name] = (generator.standard_normal(variables[name].shape) * 0.1).astype(np.float32)
    images = generator.random((batch, mnist.IMAGE_PIXELS), dtype=np.float32)
    labels = generator.integers(0, mnist.NUM_CLASSES, batch).astype(np.int32)
    model = mnist.Model(NumpyBackend(), mnist.stacked([variables]), batch, [0.1])
    expected_loss = float(mnist.train_step(model, images[None], labels[None])[0])
    mine = {name: value.copy() for name, value in variables.items()}
    loss = namespace["numpy_step"](images, labels, *(mine[f"{layer}/{kind}"] for layer in mnist.LAYERS
                                                      for kind in ("weights", "biases")), 0.1)
    assert math.isclose(float(loss), expected_loss, rel_tol=1e-5)
    for name, value in model.host_variables().items():
        np.testing.assert_allclose(mine[name], value[0], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def recording():
    return simulator_recording()


@pytest.mark.slow
@needs_numba_cuda  # recorded in the simulator
def test_the_step_program_and_gemm_tables_are_the_programs(recording):
    walkthrough = (DOCS / "walkthrough.md").read_text(encoding="utf-8")
    assert generated(walkthrough, "step-program") == step_program_table(recording["program"])
    assert generated(walkthrough, "gemm-calls") == gemm_table(recording["program"])


@needs_numba_cuda
@pytest.mark.slow
def test_the_compiler_table_has_every_launched_kernel_with_its_argument_types(recording):
    from mnist_gpu.compile_report import markdown

    table = generated((DOCS / "gpu.md").read_text(encoding="utf-8"), "compile-report")
    assert table is not None and markdown([]).splitlines()[0] in table  # the columns the command prints
    assert compile_rows(table) == recorded_compile_rows(recording["compile_launches"])


@needs_cuda_packages  # the documented output says why cuda is not usable where they are installed
def test_the_check_output_is_what_mnist_gpu_check_prints():
    from mnist_gpu.backends.gpu_probe import why_no_cuda_device
    from mnist_gpu.check import run_check

    if why_no_cuda_device() != "CuPy is not installed":
        pytest.skip("docs/gpu.md shows `mnist-gpu check` on a machine without CuPy; this one has it")
    block = generated((DOCS / "cli.md").read_text(encoding="utf-8"), "check")
    assert block is not None and block[0].startswith("```") and block[-1].startswith("```")
    lines = []
    assert run_check(say=lines.append) == 0
    assert check_shape(block[1:-1]) == check_shape(lines)


# -- the checks above can fail ------------------------------------------------------------------------------
def test_the_checkers_catch_what_they_are_for(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPOSITORY", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text("def f(x):\n    y = x + 1\n    return y\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(textwrap.dedent("""\
        # A page
        ## The `f` function, again
        [ok](../code.py) [ok](#the-f-function-again) [bad](../missing.py) [bad](#nowhere) [bad](../code.py#L2)

        <!-- quote: code.py -->
        ```python
        y = x + 1
        return y
        ```

        <!-- quote: code.py -->
        ```python
        y = x + 2
        ```

        ```python
        unmarked = True
        ```
        """))
    assert broken_links(page) == ["../missing.py: no such file", "#nowhere: no heading with the anchor #nowhere",
                                  "../code.py#L2: an anchor into a file that is not Markdown (line numbers move)"]
    problems = quote_problems(page)
    assert len(problems) == 2 and "'y = x + 2'" in problems[0] and "neither" in problems[1]
    figures = {"run": {"value": 1.18, "unit": "s"}, "ratio": {"value": 1.1, "unit": "x"}}
    page.write_text("A <!-- figure: run -->1.18 s run; <!-- figure: run -->1.185 s; <!-- figure: ratio -->1.10x; "
                    "<!-- figure: gone -->2 s.\n\nOn 2026-12-01 it ran.\n\nMeasured on 2026-12-01:\n\n"
                    "<!-- generated: x -->\n2026-12-02\n<!-- end generated: x -->\n`2026-12-03` in code\n")
    problems = figure_problems(page, figures)
    assert len(problems) == 2 and "run is 1.18 s" in problems[0] and "no figure gone" in problems[1], problems
    assert stray_dates(page) == ["docs/page.md:3: 2026-12-01"]
    assert slug("What has run where — read this") == "what-has-run-where--read-this"
    assert slug("`mnist-gpu check`: its lines") == "mnist-gpu-check-its-lines"


def update_docs(names=()):
    """Rewrite the generated blocks called `names` (all when none) from the commands that produce them."""
    def command_output(*command):
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout.rstrip("\n").splitlines()

    generators = {
        "step-program": lambda: step_program_table(simulator_recording()["program"]),
        "gemm-calls": lambda: gemm_table(simulator_recording()["program"]),
        "compile-report": lambda: command_output(sys.executable, "-m", "mnist_gpu.compile_report"),
        "figures": lambda: figures_table(load_figures()),
        "check": lambda: ["```text"] + [line.replace(f"{REPOSITORY}/", "") for line in  # paths as in the checkout
                                         command_output(sys.executable, "-m", "mnist_gpu", "check")] + ["```"],
    }
    unknown = set(names) - set(generators)
    if unknown:
        raise SystemExit(f"no generated block called {', '.join(sorted(unknown))}; there are {', '.join(generators)}")
    outputs = {name: generate() for name, generate in generators.items() if not names or name in names}
    for path in markdown_files():
        text = original = path.read_text(encoding="utf-8")
        for name, lines in outputs.items():
            text = re.sub(r"(<!-- generated: " + re.escape(name) + r" -->\n).*?(<!-- end generated: "
                          + re.escape(name) + r" -->)", lambda match, lines=lines: match[1] + "\n".join(lines) + "\n"
                          + match[2], text, flags=re.S)
        if text != original:
            path.write_text(text, encoding="utf-8")
            print(f"updated {relative(path)}; give the date beside each measured table (not the figures: they carry "
                  "theirs)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        json.dump(record_under_simulator(), sys.stdout)
    elif sys.argv[1:2] == ["--update"]:
        update_docs(sys.argv[2:])
    else:
        sys.exit("usage: python tests/test_docs.py --update [NAME ...]   (rewrites the docs' generated tables: "
                 "step-program, gemm-calls, compile-report, figures, check; all when none is named)")
