"""Build the tutorial notebooks from their sources, run them, and save them with outputs.

Each notebook ``tutorials/NN_name.ipynb`` is generated from ``tutorials/src/NN_name.py``, a
plain-text source in the "percent" format that editors understand: a line ``# %%`` starts a
code cell and a line ``# %% [markdown]`` starts a Markdown cell, whose lines are written as
comments (``# text``). Edit the source, never the notebook, then rebuild::

    python tutorials/build.py               # every notebook
    python tutorials/build.py 02 04         # those whose name starts with 02 or 04
    python tutorials/build.py --no-execute  # cells only, without outputs (fast)
    python tutorials/build.py --prose-only  # new Markdown, saved code cells and outputs kept

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


def with_new_prose(saved: nbformat.NotebookNode, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """``saved`` with its Markdown cells replaced by those of ``cells``, outputs kept.

    For an edit to the prose alone, which would not change what the code prints. Raises
    ValueError when the sources' code cells or the order of cell kinds differ from the saved
    notebook's: then the outputs may be stale, and the notebook must be run again.
    """
    kinds = [cell.cell_type for cell in saved.cells]
    if kinds != [kind for kind, _ in cells]:
        raise ValueError("the cells' kinds or number changed: run the notebook again")
    for i, (cell, (kind, text)) in enumerate(zip(saved.cells, cells)):
        if kind == _CODE and cell.source != text:
            raise ValueError(f"code cell {i} changed: run the notebook again")
    updated = nbformat.from_dict(saved)
    for cell, (kind, text) in zip(updated.cells, cells):
        if kind == _MARKDOWN:
            cell.source = text
    return updated


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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-execute", action="store_true", help="write cells without outputs")
    mode.add_argument("--prose-only", action="store_true",
                      help="replace only the Markdown cells of the saved notebooks, keeping "
                           "their outputs (refused when a code cell changed)")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9]*.py"))
    if args.prefixes:
        sources = [s for s in sources if s.stem.startswith(tuple(args.prefixes))]
    if not sources:
        print("no tutorial source matches", file=sys.stderr)
        return 1
    for source in sources:
        if args.prose_only:
            try:
                nb = with_new_prose(nbformat.read(notebook_path(source), as_version=4),
                                    read_source(source))
            except (OSError, ValueError) as exc:
                print(f"{source.stem}: {exc}", file=sys.stderr)
                return 1
            nbformat.write(nb, notebook_path(source))
            continue
        nb = make_notebook(read_source(source))
        if not args.no_execute:
            seconds = execute(nb)
            print(f"{source.stem}: ran in {seconds:.1f} s")
        nbformat.validate(nb)
        nbformat.write(nb, notebook_path(source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
