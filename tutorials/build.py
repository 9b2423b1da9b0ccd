"""Build the tutorial notebooks from their sources, run them, and save them with outputs.

Each notebook ``tutorials/NN_name.ipynb`` is generated from ``tutorials/src/NN_name.py``, a
plain-text source in the "percent" format that editors understand: a line ``# %%`` starts a
code cell and a line ``# %% [markdown]`` starts a Markdown cell, whose lines are written as
comments (``# text``). Edit the source, never the notebook, then rebuild::

    python tutorials/build.py               # every notebook
    python tutorials/build.py 02 04         # those whose name starts with 02 or 04
    python tutorials/build.py --no-execute  # cells only, without outputs (fast)

Notebooks run in ``tutorials/`` with the ``python3`` kernel and are saved with their outputs,
so a reader sees every plot without running anything. The wall time of each run is printed
(the first run after a change to nmnp's kernels also includes Numba compiling them).
``tests/test_tutorials.py`` executes every notebook again and checks that each saved notebook
still matches its source.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
KERNEL = "python3"
CELL_TIMEOUT_S = 600

_CODE, _MARKDOWN = "code", "markdown"


def read_source(path: Path) -> list[tuple[str, str]]:
    """The cells of a percent-format source, as ``(kind, text)`` pairs in order.

    Text before the first ``# %%`` line is ignored (room for a note to editors). Leading and
    trailing blank lines of each cell are dropped; Markdown lines lose their ``# `` prefix.
    """
    cells: list[tuple[str, list[str]]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            kind = _MARKDOWN if "[markdown]" in line else _CODE
            cells.append((kind, []))
        elif cells:
            kind, lines = cells[-1]
            if kind == _MARKDOWN:
                if line and not line.startswith("#"):
                    raise ValueError(f"{path}: Markdown line does not start with '#': {line!r}")
                line = line[2:] if line.startswith("# ") else line[1:]
            lines.append(line)
    out = []
    for kind, lines in cells:
        text = "\n".join(lines).strip("\n")
        if text:
            out.append((kind, text))
    return out


def make_notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A fresh notebook (no outputs) holding ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(text) if kind == _MARKDOWN else nbformat.v4.new_code_cell(text)
        for kind, text in cells
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding does not churn the file
    return nb


def kernel_env() -> dict:
    """The environment the kernel gets: ours, without a forced non-inline plot backend."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # Agg there would keep every figure out of the notebook
    return env


def execute(nb: nbformat.NotebookNode, cwd: Path = HERE, timeout: int = CELL_TIMEOUT_S) -> float:
    """Run every cell of ``nb`` in place (outputs added); returns the wall time in seconds.

    Raises :class:`nbclient.exceptions.CellExecutionError` at the first cell that fails.
    """
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    start = time.perf_counter()
    client.execute(env=kernel_env())
    return time.perf_counter() - start


def notebook_path(source: Path) -> Path:
    return HERE / (source.stem + ".ipynb")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="build only notebooks whose name starts so")
    parser.add_argument("--no-execute", action="store_true", help="write cells without outputs")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9]*.py"))
    if args.prefixes:
        sources = [s for s in sources if s.stem.startswith(tuple(args.prefixes))]
    if not sources:
        print("no tutorial source matches", file=sys.stderr)
        return 1
    for source in sources:
        nb = make_notebook(read_source(source))
        if not args.no_execute:
            seconds = execute(nb)
            print(f"{source.stem}: ran in {seconds:.1f} s")
        nbformat.validate(nb)
        nbformat.write(nb, notebook_path(source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
