"""The tutorial notebooks: each runs top to bottom, checks its claims, and ships its plots.

Every ``tutorials/*.ipynb`` is discovered automatically and gets its own tests, named by file
name. Executing a notebook takes up to about a minute on a 2-core machine (plus Numba
compiling nmnp's kernels on a first run), hence the ``slow`` mark on that test:
``pytest -m "not slow"`` keeps only the quick checks of the saved files.

Notebooks are generated from ``tutorials/src/*.py`` by ``tutorials/build.py``; a test checks
that each saved notebook still holds exactly the cells of its source.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
#: Per cell; generous because the first cell to call a kernel may compile it.
CELL_TIMEOUT_S = 600


def _load_build():
    """tutorials/build.py as a module (tutorials/ is not a package)."""
    spec = importlib.util.spec_from_file_location("nmnp_tutorials_build", TUTORIALS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
notebooks = pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in NOTEBOOKS])


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_tutorials_are_found():
    assert NOTEBOOKS, f"no notebooks in {TUTORIALS}"
    names = [p.name for p in NOTEBOOKS]
    assert all(re.match(r"\d\d_\w+\.ipynb$", name) for name in names), names


@pytest.mark.slow
@notebooks
def test_notebook_runs_without_error(path):
    """Execute every cell in a fresh python3 kernel, in tutorials/; any error fails."""
    from nbclient import NotebookClient

    nb = _read(path)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=build.KERNEL,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    start = time.perf_counter()
    client.execute(env=build.kernel_env())  # raises CellExecutionError naming the cell
    print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s")
    assert all(cell.execution_count is not None for cell in _code_cells(nb))


@notebooks
def test_notebook_checks_its_claims(path):
    """At least one code cell asserts something."""
    sources = [cell.source for cell in _code_cells(_read(path))]
    assert any(re.search(r"^\s*assert\b", src, re.MULTILINE) for src in sources), (
        f"{path.name} has no assert statement in its code cells"
    )


@notebooks
def test_notebook_is_saved_with_its_plots(path):
    """A reader who opens the file without running it sees at least one figure."""
    outputs = [out for cell in _code_cells(_read(path)) for out in cell.get("outputs", [])]
    assert any("image/png" in out.get("data", {}) for out in outputs), (
        f"{path.name} holds no image output: rebuild it with `python tutorials/build.py`"
    )


@notebooks
def test_notebook_is_saved_fully_run_and_clean(path):
    """Every code cell was executed, in order, and no saved output is an error."""
    cells = _code_cells(_read(path))
    counts = [cell.execution_count for cell in cells]
    assert None not in counts, f"{path.name} has cells that were never run"
    assert counts == sorted(counts), f"{path.name} was run out of order: {counts}"
    errors = [out for cell in cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors, f"{path.name} was saved with an error: {errors[0].get('ename')}"


@notebooks
def test_notebook_matches_its_source(path):
    """The saved cells are exactly those of tutorials/src/<name>.py (no hand edits lost)."""
    source = TUTORIALS / "src" / f"{path.stem}.py"
    if not source.exists():
        pytest.skip(f"{path.name} has no source in tutorials/src/")
    expected = build.read_source(source)
    saved = [(cell.cell_type, cell.source) for cell in _read(path).cells]
    assert saved == expected, (
        f"{path.name} differs from {source.relative_to(ROOT)}: rebuild it with "
        f"`python tutorials/build.py {path.stem[:2]}`"
    )


def test_read_source_splits_cells(tmp_path):
    """The percent format: code and Markdown cells, comment prefixes stripped."""
    src = tmp_path / "00_x.py"
    src.write_text("# note\n\n# %% [markdown]\n# # Title\n#\n# $a$\n\n# %%\nx = 1\n\n# %%\n\n")
    assert build.read_source(src) == [("markdown", "# Title\n\n$a$"), ("code", "x = 1")]
    src.write_text("# %% [markdown]\nnot a comment\n")
    with pytest.raises(ValueError, match="Markdown line"):
        build.read_source(src)


def test_prose_only_rebuild_keeps_outputs_and_refuses_changed_code():
    """``build.py --prose-only``: new Markdown, the saved code cells and outputs untouched;
    a changed code cell or a new cell is refused, since the saved outputs could be stale."""
    saved = build.make_notebook([("markdown", "# Old"), ("code", "print(1)")])
    saved.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    saved.cells[1].execution_count = 1
    new = build.with_new_prose(saved, [("markdown", "# New"), ("code", "print(1)")])
    assert new.cells[0].source == "# New" and saved.cells[0].source == "# Old"
    assert new.cells[1].outputs == saved.cells[1].outputs and new.cells[1].execution_count == 1
    with pytest.raises(ValueError, match="code cell 1 changed"):
        build.with_new_prose(saved, [("markdown", "# New"), ("code", "print(2)")])
    with pytest.raises(ValueError, match="kinds or number"):
        build.with_new_prose(saved, [("markdown", "# New"), ("code", "print(1)"), ("markdown", "x")])
