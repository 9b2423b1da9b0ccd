"""When something goes wrong during long work, nothing the user wants is lost: Ctrl-C and
SIGTERM end with one line and the conventional exit status, two outputs may not name one
file, a report that cannot be written is printed instead, and ``compare`` keeps the
strategies that finished."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nmnp import atomic, checkpoint, cli, compare, demo, interrupt
from nmnp.bench import cli as bench_cli
from nmnp.errors import ConfigError, OutputError, TrainingError

ROOT = Path(__file__).resolve().parents[1]
SMALL_RUN = ["--units", "100", "--k", "5", "--threads", "1", "--quiet"]


def nmnp_main(capsys, *argv, main=cli.main):
    """(exit status, stdout, stderr) of a command line run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- interrupt.py
def test_sigterm_inside_the_block_raises_terminated_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupt.Terminated):
        with interrupt.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; this is never finished
    assert signal.getsignal(signal.SIGTERM) == before


def test_report_interrupt_says_which_signal_and_returns_its_status(capsys):
    assert interrupt.report_interrupt("nmnp", KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "nmnp: interrupted\n"
    assert interrupt.report_interrupt("nmnp", interrupt.Terminated("x.ckpt holds task 1")) == 143
    assert capsys.readouterr().err == "nmnp: terminated; x.ckpt holds task 1\n"


# --------------------------------------------------------------------------- atomic.py
def test_distinct_paths_are_compared_after_resolving_links(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    atomic.check_distinct_paths({"--json": str(a), "--plot": str(b), "--checkpoint": None})
    (tmp_path / "sub").mkdir()
    for other in (str(a), str(tmp_path / "sub" / ".." / "a.json")):
        with pytest.raises(ConfigError, match=r"--json and --plot both name .*a\.json: give each its own file"):
            atomic.check_distinct_paths({"--json": str(a), "--plot": other})
    a.write_text("{}")
    (tmp_path / "link").symlink_to(a)
    os.link(a, tmp_path / "hard")
    for other in ("link", "hard"):
        with pytest.raises(ConfigError, match="--json and --checkpoint both name"):
            atomic.check_distinct_paths({"--json": str(a), "--checkpoint": str(tmp_path / other)})


def test_a_failed_write_is_an_output_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nmnp.atomic.os.fsync", full)
    with pytest.raises(OutputError, match=r"cannot write .*r\.json \(No space left on device\); any previous file there is unchanged"):
        atomic.atomic_write_json(path, {"a": 1})
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# --------------------------------------------------------------------------- run
@pytest.mark.parametrize("outputs", [
    ("--checkpoint", "same", "--json", "same"),
    ("--json", "same", "--plot", "same"),
    ("--checkpoint", "same", "--plot", "./same"),
])
def test_run_refuses_two_outputs_naming_one_file_before_any_work(tmp_path, capsys, outputs):
    argv = [str(tmp_path / v) if not v.startswith("--") else v for v in outputs]
    code, out, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "1", *argv)
    assert code == 2 and err.startswith("nmnp: error: ") and "both name" in err and "give each its own file" in err
    assert out == "" and list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_run_refuses_a_report_over_the_checkpoint_it_resumes(tmp_path, capsys):
    ck = tmp_path / "r.nmnp"
    assert nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "1", "--epochs", "1", "--checkpoint", str(ck))[0] == 0
    before = ck.read_bytes()
    code, _, err = nmnp_main(capsys, "run", "--resume", str(ck), "--json", str(ck))
    assert code == 2 and f"--json {ck} is an nmnp checkpoint" in err
    assert ck.read_bytes() == before
    # Resuming into the same file, given twice, is the normal case and still allowed.
    code, out, _ = nmnp_main(capsys, "run", "--resume", str(ck), "--checkpoint", str(ck))
    assert code == 0 and "already holds all 1 task(s): nothing left to train\n" in out


@pytest.fixture(scope="module")
def a_checkpoint(tmp_path_factory):
    """The bytes of a one-task run's checkpoint."""
    ck = tmp_path_factory.mktemp("ck") / "r.nmnp"
    assert cli.main(["run", *SMALL_RUN, "--tasks", "1", "--max-steps", "2", "--checkpoint", str(ck)]) == 0
    return ck.read_bytes()


@pytest.mark.parametrize("argv, option, what", [
    (["run", *SMALL_RUN, "--tasks", "1", "--json"], "--json", "report"),
    (["run", *SMALL_RUN, "--tasks", "1", "--plot"], "--plot", "figure"),
    (["compare", "--tasks", "1", "--json"], "--json", "report"),
    (["compare", "--tasks", "1", "--plot"], "--plot", "figure"),
])
def test_a_report_or_figure_never_replaces_a_checkpoint(tmp_path, capsys, a_checkpoint, argv,
                                                        option, what):
    # an earlier run's checkpoint, not named by this command (under a figure's name for --plot,
    # whose extension must otherwise name a figure format)
    target = tmp_path / ("old-run.png" if what == "figure" else "old-run.nmnp")
    target.write_bytes(a_checkpoint)
    code, out, err = nmnp_main(capsys, *argv, str(target))
    assert code == 2 and out == ""
    assert err == (f"nmnp: error: {option} {target} is an nmnp checkpoint: refusing to replace "
                   f"it with a {what}; choose another path\n")
    assert target.read_bytes() == a_checkpoint


def test_bench_and_demo_never_replace_a_checkpoint_with_a_figure(tmp_path, capsys, a_checkpoint):
    target = tmp_path / "old-run.svg"
    target.write_bytes(a_checkpoint)
    code, _, err = nmnp_main(capsys, "--from-json", str(tmp_path / "b.json"), "--plot",
                             str(target), main=bench_cli.main)
    assert code == 2 and f"--plot {target} is an nmnp checkpoint" in err
    code, _, err = nmnp_main(capsys, "--out", str(target), main=demo.main)
    assert code == 2 and f"--out {target} is an nmnp checkpoint" in err
    assert target.read_bytes() == a_checkpoint


def test_a_report_replaces_any_other_existing_file(tmp_path, capsys):
    """Only checkpoints are protected: rerunning a command over its own old report is normal."""
    js = tmp_path / "r.json"
    js.write_text("{}")
    assert nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "1", "--max-steps", "2", "--json", str(js))[0] == 0
    assert json.loads(js.read_text())["unfinished_tasks"] == 0


def test_a_report_that_cannot_be_written_is_printed_instead(tmp_path, capsys, monkeypatch):
    real = atomic._write_then_rename

    def full_for_json(path, data, before_rename):
        if path.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, before_rename)

    monkeypatch.setattr(atomic, "_write_then_rename", full_for_json)
    ck, js = tmp_path / "r.nmnp", tmp_path / "r.json"
    code, out, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "2", "--epochs", "1",
                               "--checkpoint", str(ck), "--json", str(js))
    assert code == 2 and not js.exists()
    assert f"nmnp: error: cannot write {js} (No space left on device)" in err
    assert f"the report was printed above instead (and {ck} holds the run" in err
    report = json.loads(out)  # stdout is the report and nothing else (--quiet)
    assert len(report["acc_matrix"]) == 2 and len(checkpoint.describe(ck)["tasks"]) == 2


@pytest.fixture
def interrupt_second_task(monkeypatch):
    """Ctrl-C during the second task's training."""
    import nmnp.continual.runner as runner

    real = runner.train_task
    calls = []

    def interrupted_second_task(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_task", interrupted_second_task)


def test_ctrl_c_during_a_run_names_the_checkpoint_to_resume(tmp_path, capsys, interrupt_second_task):
    ck = tmp_path / "r.nmnp"
    code, _, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "3", "--epochs", "1", "--checkpoint", str(ck))
    assert code == 130
    assert err == (f"nmnp: interrupted; {ck} holds every task finished before; continue with "
                   f"`nmnp run --resume {ck}`\n")
    assert len(checkpoint.describe(ck)["tasks"]) == 1


def test_ctrl_c_keeps_the_finished_tasks_in_the_report_and_the_hint_repeats_its_options(
        tmp_path, capsys, interrupt_second_task):
    ck, js, png = tmp_path / "r.nmnp", tmp_path / "r.json", tmp_path / "r.png"
    code, _, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "3", "--epochs", "1",
                             "--checkpoint", str(ck), "--json", str(js), "--plot", str(png))
    assert code == 130
    assert err == (f"nmnp: interrupted; {ck} holds every task finished before; continue with "
                   f"`nmnp run --resume {ck} --json {js} --plot {png}`; {js} holds the results "
                   "of the tasks finished so far\n")
    saved = json.loads(js.read_text())
    assert len(saved["acc_matrix"]) == 1 and saved["unfinished_tasks"] == 2
    assert saved["config"]["tasks"] == 3 and not png.exists()
    # The hint's command finishes the run and replaces the partial report with the full one.
    code, _, _ = nmnp_main(capsys, "run", "--resume", str(ck), "--json", str(js), "--plot", str(png))
    full = json.loads(js.read_text())
    assert code == 0 and full["unfinished_tasks"] == 0 and len(full["acc_matrix"]) == 3
    assert full["acc_matrix"][0] == saved["acc_matrix"][0] and png.exists()


def test_ctrl_c_without_a_checkpoint_says_what_was_kept(tmp_path, capsys, interrupt_second_task):
    js = tmp_path / "r.json"
    code, _, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "3", "--json", str(js))
    assert (code, err) == (130, f"nmnp: interrupted; {js} holds the results of the tasks "
                                "finished so far\n")
    assert json.loads(js.read_text())["unfinished_tasks"] == 2


def test_ctrl_c_with_nothing_saved_says_how_to_make_a_run_resumable(capsys, interrupt_second_task):
    code, _, err = nmnp_main(capsys, "run", *SMALL_RUN, "--tasks", "3")
    assert (code, err) == (130, "nmnp: interrupted; nothing was saved (--checkpoint PATH makes "
                                "a run resumable)\n")


@pytest.mark.slow
def test_sigterm_to_a_real_run_ends_with_143_one_line_and_an_intact_checkpoint(tmp_path):
    ck = tmp_path / "run.nmnp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmnp", "run", *SMALL_RUN, "--tasks", "6", "--epochs", "2",
         "--batch-size", "16", "--checkpoint", str(ck)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ck.exists():
            assert proc.poll() is None, f"the run ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.startswith(f"nmnp: terminated; {ck} holds every task finished before") and err.count("\n") == 1
    assert 1 <= len(checkpoint.describe(ck)["tasks"]) < 6


# --------------------------------------------------------------------------- console.py
def head_1(argv):
    """Run ``python -m <argv>`` like ``... | head -1``: read one line of its standard output,
    then close the pipe. Returns (exit status, the line, standard error)."""
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away; the next write gets EPIPE
        err = proc.stderr.read()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, first, err


@pytest.mark.slow
def test_a_run_piped_into_head_finishes_and_writes_its_report(tmp_path):
    js, ck = tmp_path / "r.json", tmp_path / "r.nmnp"
    code, first, err = head_1(["nmnp", "run", *SMALL_RUN[:-1], "--tasks", "3", "--max-steps", "3",
                               "--json", str(js), "--checkpoint", str(ck)])
    assert first.startswith("nmnp run: rotated") and code == 0, err
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert json.loads(js.read_text())["unfinished_tasks"] == 0
    assert len(checkpoint.describe(ck)["tasks"]) == 3


@pytest.mark.slow
def test_the_bench_piped_into_head_stops_quietly_with_status_141(tmp_path):
    code, first, err = head_1(["nmnp.bench", "--backends", "cpu", "--batch-sizes", "8",
                               "--threads", "all", "--repeats", "1", "--steps", "1", "--samples",
                               "8", "--inference-batch", "8", "--evaluate-samples", "0",
                               "--units", "200", "--no-torch"])
    assert first.startswith("nmnp bench") and (code, err) == (141, "")


# --------------------------------------------------------------------------- compare
def test_compare_keeps_the_strategies_that_finished_when_a_later_one_fails(tmp_path, capsys, monkeypatch):
    real = compare.run_experiment

    def second_diverges(config, **kwargs):
        if config.strategy == "separate":
            raise TrainingError("task id 0, epoch 1, step 3: the loss became nan")
        return real(config, **kwargs)

    monkeypatch.setattr(compare, "run_experiment", second_diverges)
    js = tmp_path / "cmp.json"
    code, out, err = nmnp_main(capsys, "compare", "--strategies", "crwn,separate", "--tasks", "2",
                               "--units", "100", "--k", "5", "--threads", "1", "--json", str(js))
    assert code == 2
    assert err == (f"nmnp: error: task id 0, epoch 1, step 3: the loss became nan; {js} holds the "
                   f"strategies that finished (crwn); `nmnp compare --resume {js}` runs the rest "
                   "(with the stored options, under which separate diverged: a new comparison "
                   "with other options, such as a smaller --lr, is needed for it)\n")
    saved = json.loads(js.read_text())
    assert saved["strategies"] == ["crwn"] and saved["unfinished"] == ["separate"]
    assert len(saved["results"]["crwn"]["report"]["acc_matrix"]) == 2
    assert f"crwn saved to {js}; still to run: separate" in out


def test_a_finished_compare_has_no_unfinished_strategies(tmp_path, capsys):
    js = tmp_path / "cmp.json"
    code, out, _ = nmnp_main(capsys, "compare", "--strategies", "crwn,separate", "--tasks", "1",
                             "--units", "100", "--k", "5", "--threads", "1", "--json", str(js))
    assert code == 0 and "still to run: separate" in out
    saved = json.loads(js.read_text())
    assert saved["strategies"] == ["crwn", "separate"] and saved["unfinished"] == []


def test_compare_refuses_its_report_and_figure_in_one_file(tmp_path, capsys):
    code, _, err = nmnp_main(capsys, "compare", "--tasks", "1", "--json", str(tmp_path / "x"),
                             "--plot", str(tmp_path / "x"))
    assert code == 2 and "--json and --plot both name" in err and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bench and demo
def test_bench_refuses_a_figure_over_the_report_it_reads(tmp_path, capsys):
    report, figure = tmp_path / "b.json", tmp_path / "b.png"
    report.write_text("{}")
    figure.symlink_to(report)  # the figure's name leads to the report
    code, _, err = nmnp_main(capsys, "--from-json", str(report), "--plot", str(figure), main=bench_cli.main)
    assert code == 2 and "--from-json and --plot both name" in err and report.read_text() == "{}"


@pytest.mark.parametrize("program, main, target", [
    ("nmnp.bench", bench_cli.main, "nmnp.bench.cli.run_bench"),
    ("nmnp.demo", demo.main, "nmnp.demo.run_experiment"),
])
def test_ctrl_c_in_the_bench_and_the_demo_is_one_line(tmp_path, capsys, monkeypatch, program, main, target):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    argv = ["--out", str(tmp_path / "d.png")] if program == "nmnp.demo" else ["--backends", "cpu"]
    code, _, err = nmnp_main(capsys, *argv, main=main)
    assert (code, err) == (130, f"{program}: interrupted\n")
    assert list(tmp_path.iterdir()) == []
