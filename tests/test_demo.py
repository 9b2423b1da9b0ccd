"""The demo, run exactly as a newcomer runs it (in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_learns_five_tasks_without_forgetting(tmp_path):
    out = tmp_path / "demo.png"
    proc = subprocess.run(
        [sys.executable, "-m", "nmnp.demo", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^after task +(\d+) .*?: ([\d. ]+)$", proc.stdout, flags=re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    matrix = [[float(v) for v in r[1].split()] for r in rows]
    assert [len(r) for r in matrix] == [1, 2, 3, 4, 5]
    for j in range(5):  # the printed matrix itself shows no forgetting
        assert len({row[j] for row in matrix[j:]}) == 1
    assert all(row[-1] > 0.6 for row in matrix), "each task should be learned well above chance"
    assert "did not change" in proc.stdout
    assert "7,841 parameters" in proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Figure: {out}" in proc.stdout


def test_demo_refuses_an_output_folder_that_does_not_exist(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nmnp.demo", "--out", str(tmp_path / "missing" / "x.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    assert proc.stdout == ""


def test_an_unusable_backend_is_one_line_before_any_output(tmp_path, monkeypatch, capsys):
    from nmnp import demo
    from nmnp.errors import BackendError

    def no_gpu(name):
        raise BackendError("no usable CUDA GPU found (test)")

    monkeypatch.setattr("nmnp.kernels.get_backend", no_gpu)
    assert demo.main(["--backend", "cuda", "--out", str(tmp_path / "x.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "nmnp.demo: error: no usable CUDA GPU found (test)\n"


def test_an_empty_out_is_refused_not_taken_for_the_default(tmp_path, monkeypatch, capsys):
    """`--out ""` used to write ./nmnp-demo.png after the whole demo."""
    from nmnp import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "_run", lambda config, out: pytest.fail(f"the demo ran, writing {out!r}"))
    assert demo.main(["--out", ""]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "nmnp.demo: error: --out needs a file name\n"
    assert list(tmp_path.iterdir()) == []
