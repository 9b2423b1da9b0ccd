"""The README stays true to the repository: its layout table, its two set-up commands and the
benchmark figures it quotes from ``results/bench-cpu.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def layout_rows(text: str) -> list[tuple[str, str]]:
    """The (where, what) cells of the table under ``## Layout``."""
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], cells[1]))
    return rows[1:]  # the header row


def unnamed_modules(text: str, package: Path) -> list[str]:
    """Modules and sub-packages of ``package`` that no row of the layout table names.

    A row's first cell names a folder (``nmnp/data/``: everything under it) or files, the
    first with its folder and the rest by name alone (``nmnp/cli.py``, ``compare.py``).
    """
    folders, files = set(), set()
    for where, _ in layout_rows(text):
        names = re.findall(r"`([^`]+)`", where)
        base = ""
        for name in names:
            if name.endswith("/"):
                folders.add(name.rstrip("/"))
                continue
            if "/" in name:
                base = name.rsplit("/", 1)[0]
                files.add(name)
            else:
                files.add(f"{base}/{name}")
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        if path.name in ("__init__.py", "__main__.py"):
            rel = path.parent.relative_to(package.parent).as_posix()
            if rel == package.name:
                continue  # the package itself
        if rel in files or any(rel == f or rel.startswith(f + "/") for f in folders):
            continue
        missing.append(rel)
    return missing


def test_every_module_has_a_place_in_the_layout_table():
    text = README.read_text(encoding="utf-8")
    assert unnamed_modules(text, ROOT / "nmnp") == []


def test_the_layout_check_notices_a_module_the_table_leaves_out():
    text = README.read_text(encoding="utf-8")
    without_strategies = "\n".join(
        line for line in text.splitlines() if not line.startswith("| `nmnp/strategies/`")
    )
    missing = unnamed_modules(without_strategies, ROOT / "nmnp")
    assert "nmnp/strategies" in missing and "nmnp/strategies/supsup.py" in missing
    assert all(m.startswith("nmnp/strategies") for m in missing)
    without_compare = text.replace("`compare.py`, ", "")
    assert unnamed_modules(without_compare, ROOT / "nmnp") == ["nmnp/compare.py"]


def test_readme_gives_the_two_set_up_commands_and_ci_runs_the_test_one():
    text = README.read_text(encoding="utf-8")
    setup = text.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert commands == [
        "pip install . && python -m nmnp.demo",
        'pip install -e ".[dev]" && python -m pytest',
    ]
    ci = [
        line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert 'python -m pip install --quiet -e ".[dev]"' in ci
    assert "python -m pytest" in ci


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.*")), ids=lambda p: p.name)
def test_every_script_says_what_it_is_for(script):
    # The layout table promises that each script says in its first lines what it produces.
    head = script.read_text(encoding="utf-8").lstrip()
    if head.startswith("#!"):
        head = head.split("\n", 1)[1].lstrip()
    assert head.startswith(('"""', "#")), f"{script.name} does not open with a description"


BENCH_REPORT = ROOT / "results" / "bench-cpu.json"

# Rows of the README's training table, and where the bench report keeps each figure.
_TRAINING_ROWS = {
    "numpy reference, 2 threads": ("training", "numpy", 2),
    "cpu (Numba), 1 thread": ("training", "cpu", 1),
    "cpu (Numba), 2 threads": ("training", "cpu", 2),
    "PyTorch, dense formulation, 2 threads": ("pytorch", None, 2),
}


def performance_section(text: str) -> str:
    return text.split("\n### Performance (CPU)\n", 1)[1].split("\n## ", 1)[0]


def table_row(section: str, label: str) -> list[str]:
    """The cells after ``label`` in the first table row that starts with it."""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no table row {label!r}")


def performance_mismatches(text: str, report: dict) -> list[str]:
    """Figures of the README's performance section that differ from the bench report: the
    training table (medians per batch size), the sgemm probe, the paired ratios, the
    inference rates (cpu and PyTorch dense, one and 36 tasks) and the verdict on each speed
    target, in the bench's order."""
    section = performance_section(text)
    wrong = []
    for label, (key, backend, threads) in _TRAINING_ROWS.items():
        by_batch = {
            r["batch_size"]: r["samples_per_second"]["median"]
            for r in report[key]
            if r.get("threads") == threads and (backend is None or r.get("backend") == backend)
        }
        cells = table_row(section, label)
        for batch, cell in zip((1, 32, 128, 1024), cells):
            expected = f"{by_batch[batch]:,.0f}/s"
            if cell != expected:
                wrong.append(f"{label}, batch {batch}: README {cell}, report {expected}")
    sgemm = f"{report['peaks']['sgemm_gflops']:.1f} GFLOP/s"
    if f"measured {sgemm}" not in section:
        wrong.append(f"the sgemm probe ({sgemm}) is not the one quoted")
    for rival in ("numpy", "torch dense"):
        ratio = report["paired"][rival]["ratio"]
        quoted = f"{ratio['median']:.1f}x paired ({ratio['min']:.1f} to {ratio['max']:.1f})"
        if quoted not in section:
            wrong.append(f"paired ratio over {rival}: {quoted} not quoted")
    for source, label in (("inference", "cpu"), ("pytorch_inference", "PyTorch dense")):
        for r in report.get(source, []):
            if source == "inference" and r["backend"] != "cpu":
                continue
            figure = f"{r['samples_per_second']['median']:,.0f}"
            if not re.search(rf"(?<![\d,]){figure}(?![\d,])", section):
                wrong.append(f"{label} inference of {r['tasks']} task(s) at batch {r['batch_size']} ({figure}/s) not quoted")
    verdicts = [line.rstrip(" |").rsplit("|", 1)[1].strip() for line in section.splitlines()
                if line.startswith("| ") and line.rstrip(" |").endswith(("met", "met**"))]
    for target, verdict in zip(report["targets"], verdicts):
        if verdict != ("met" if target["met"] else "**not met**"):
            wrong.append(f"{target['target']}: README says {verdict}, the report {target['met']}")
    if len(verdicts) < len(report["targets"]):
        wrong.append(f"the README judges {len(verdicts)} targets, the report {len(report['targets'])}")
    return wrong


def test_the_performance_section_quotes_the_bench_report():
    report = json.loads(BENCH_REPORT.read_text(encoding="utf-8"))
    assert performance_mismatches(README.read_text(encoding="utf-8"), report) == []


def test_the_performance_check_notices_a_stale_figure():
    report = json.loads(BENCH_REPORT.read_text(encoding="utf-8"))
    cpu_128 = next(r for r in report["training"] if (r["backend"], r["threads"], r["batch_size"]) == ("cpu", 2, 128))
    cpu_128["samples_per_second"]["median"] *= 1.01
    report["peaks"]["sgemm_gflops"] += 1.0
    report["targets"][4]["met"] = True  # a verdict the README does not give
    dense_36 = next(r for r in report["pytorch_inference"] if (r["tasks"], r["batch_size"]) == (36, 128))
    dense_36["samples_per_second"]["median"] += 1.0
    wrong = performance_mismatches(README.read_text(encoding="utf-8"), report)
    assert len(wrong) == 4
    assert "cpu (Numba), 2 threads, batch 128" in wrong[0] and "sgemm" in wrong[1]
    assert "PyTorch dense inference of 36 task(s) at batch 128" in wrong[2] and "36 tasks" in wrong[3]


def roofline_mismatches(text: str, sgemm_gflops: float) -> list[str]:
    """Figures of the README's roofline paragraph that differ from what ``nmnp.bench``
    computes: the flops and bytes of one FlyNet training sample at batch 128, and the compute
    limit those flops give at the quoted sgemm rate."""
    from nmnp.bench import training_bytes_per_sample, training_flops_per_sample
    from nmnp.config import NetworkConfig

    paragraph = next(p for p in performance_section(text).split("\n\n") if p.startswith("Roofline:"))
    paragraph = " ".join(paragraph.split())
    config = NetworkConfig.flynet(0, "float32")
    flops = training_flops_per_sample(config)
    limit = round(sgemm_gflops * 1e9 / flops, -3)
    quoted = {
        "flops": f"needs {flops:,} flops",
        "bytes": f"about {training_bytes_per_sample(config, 128) / 1000:.1f} KB of memory traffic at batch 128",
        "compute limit": f"{sgemm_gflops:.1f} GFLOP/s the compute limit is about {limit:,.0f} samples/s",
    }
    return [f"{name}: {phrase!r} not in the paragraph" for name, phrase in quoted.items() if phrase not in paragraph]


def test_the_roofline_paragraph_matches_the_work_counts():
    report = json.loads(BENCH_REPORT.read_text(encoding="utf-8"))
    assert roofline_mismatches(README.read_text(encoding="utf-8"), report["peaks"]["sgemm_gflops"]) == []


def test_the_roofline_check_notices_a_wrong_figure():
    report = json.loads(BENCH_REPORT.read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8").replace("about 7.8 KB", "about 4.3 KB")
    wrong = roofline_mismatches(text, report["peaks"]["sgemm_gflops"] * 2)
    assert [w.split(":")[0] for w in wrong] == ["bytes", "compute limit"]


def python_blocks(text: str) -> list[str]:
    """The ``python`` code blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_the_python_examples_run_as_written(capsys):
    """Every python block of the README, in order, in one namespace (the second continues the
    first, as a reader would type them); what they print is what their comments say."""
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    accuracies = eval(out.splitlines()[0])  # the first block's list of three accuracies
    assert len(accuracies) == 3 and all(0.5 < a <= 1 for a in accuracies)
    matrix = namespace["result"].acc_matrix
    assert matrix.shape == (3, 3) and np.allclose(np.diag(matrix), accuracies)
    np.testing.assert_array_equal(namespace["record"].acc_matrix, matrix)  # the continued run
    assert "average_accuracy" in out


def test_the_example_runner_finds_every_block_and_only_python():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]
