"""The `run` command: its output, its files, checkpoint and resume options, and its errors
(one line, ``nmnp run: error: ...`` from the parser or ``nmnp: error: ...`` from the library;
exit status 2; never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numba
import numpy as np
import pytest

import nmnp
from nmnp import checkpoint, cli
from nmnp.data.datasets import Dataset, load_dataset
from nmnp.experiment import ExperimentConfig, run_experiment

ROOT = Path(__file__).resolve().parents[1]
SMALL_RUN = ["--units", "200", "--k", "7", "--threads", "1"]


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``nmnp run ...`` in this process."""
    try:
        code = cli.main(["run", *argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message):
    assert code == 2
    assert err.startswith("nmnp") and ": error: " in err and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err, err


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A checkpoint of a finished 1-task run (the shipped subset, 200 units, 1 thread)."""
    path = tmp_path_factory.mktemp("run") / "run.nmnp"
    run_experiment(ExperimentConfig(tasks=1, units=200, threads=1), checkpoint=path, progress=False)
    return path


def test_run_prints_each_row_and_writes_the_report(tmp_path, capsys):
    code, out, err = run_cli(capsys, *SMALL_RUN, "--tasks", "2", "--json", str(tmp_path / "r.json"),
                             "--checkpoint", str(tmp_path / "r.nmnp"))
    assert code == 0, err
    assert "after task  1 (rotate 0°" in out and "after task  2 (rotate 10°" in out
    assert "earlier tasks' accuracies unchanged by later tasks: yes" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [len(row) for row in report["acc_matrix"]] == [1, 2]
    assert report["config"]["units"] == 200 and report["threads"] == 1
    assert report["acc_matrix"][1][0] == report["acc_matrix"][0][0]
    stored = checkpoint.read_extra(tmp_path / "r.nmnp")
    assert stored["result"]["acc_matrix"] == report["acc_matrix"]
    assert stored["experiment"] == report["config"]
    assert nmnp.load(tmp_path / "r.nmnp").n_tasks == 2


def test_a_library_error_is_one_line_without_traceback_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "nmnp", "run", "--tasks", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "nmnp: error: tasks must be at least 1, got 0\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--benchmark", "nope"], "argument --benchmark: invalid choice: 'nope'"),
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["--lr", "-1"], "learning rate must be a positive finite number, got -1.0"),
        (["--k", "900"], "inputs_per_unit (k=900) cannot exceed n_inputs (784)"),
        (["--data-dir", "/somewhere"], "--data-dir is only for datasets read from files; fashion-mnist-subset is shipped with nmnp"),
        (["--optimizer", "nope", "--units", "50"], "Unknown optimizer name 'nope'"),
        (["--units", "0"], "n_units must be at least 1"),
        (["--benchmark", "permuted", "--step", "5"],
         "--step only applies to the rotated benchmark, not permuted"),
        (["--benchmark", "split", "--step", "5", "--interpolation", "bilinear"],
         "--step and --interpolation only apply to the rotated benchmark, not split"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, argv, message):
    assert_one_line_error(*run_cli(capsys, *argv)[::2], message)


def test_resume_continues_with_the_stored_configuration(stored_run, tmp_path, capsys):
    """No run options needed: the stored ones are used; repeating one that agrees is fine."""
    copy = tmp_path / "copy.nmnp"
    copy.write_bytes(stored_run.read_bytes())
    code, out, err = run_cli(capsys, "--resume", str(copy), "--units", "200", "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert "resuming" in out and f"{copy} already holds all 1 task(s): nothing left to train\n" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["acc_matrix"] == checkpoint.read_extra(stored_run)["result"]["acc_matrix"]
    assert report["config"]["units"] == 200 and report["config"]["tasks"] == 1


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_resume_on_another_thread_count_says_what_that_means(stored_run, tmp_path, capsys):
    copy = tmp_path / "copy.nmnp"
    copy.write_bytes(stored_run.read_bytes())
    code, out, err = run_cli(capsys, "--resume", str(copy), "--threads", "2")
    assert code == 0, err
    assert ("note: the run began on 1 thread(s) and went on with 2; results agree within "
            "rounding, not bit for bit (use --threads 1 to match)") in out
    code, out, err = run_cli(capsys, "--resume", str(copy))  # the stored count: no note
    assert code == 0 and "note:" not in out


def test_resume_refuses_options_that_change_the_run(stored_run, tmp_path, capsys):
    before = stored_run.read_bytes()
    code, _, err = run_cli(capsys, "--resume", str(stored_run), "--tasks", "3", "--units", "300", "--seed", "0")
    assert_one_line_error(code, err, f"cannot resume {stored_run} with options that change its run: "
                                     "--tasks 3 (stored 1), --units 300 (stored 200)")
    assert stored_run.read_bytes() == before


def test_a_new_run_never_overwrites_an_existing_checkpoint(stored_run, capsys):
    before = stored_run.read_bytes()
    code, out, err = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--checkpoint", str(stored_run))
    assert_one_line_error(code, err, "already exists; resume that run or choose another path")
    assert stored_run.read_bytes() == before and "after task" not in out


def test_a_comparison_strategy_is_checkpointed_and_resumed(tmp_path, capsys):
    from nmnp.experiment import ExperimentConfig, run_experiment

    class Stop(Exception):
        pass

    def stop_after_first(result, learner):
        if result.n_tasks == 1:
            raise Stop

    ck = tmp_path / "ft.nmnp"
    with pytest.raises(Stop):  # a run of 2 tasks that dies after its first checkpoint
        run_experiment(ExperimentConfig(units=50, tasks=2, strategy="finetune", threads=1),
                       checkpoint=ck, on_task_end=stop_after_first, progress=False)
    assert nmnp.checkpoint.describe(ck)["learner"] == "finetune" and nmnp.load(ck).n_tasks == 1
    code, out, err = run_cli(capsys, "--resume", str(ck), "--threads", "1")
    assert code == 0, err
    assert "resumed after task 1 of 2" in out and nmnp.load(ck).n_tasks == 2


def test_help_documents_checkpoint_and_resume(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--checkpoint PATH" in out and "--resume PATH" in out


def test_optimizer_names_are_stored_lower_case_so_a_resume_may_spell_them_either_way(tmp_path, capsys):
    from nmnp.train import TrainSettings

    assert TrainSettings(optimizer="Adam").optimizer == "adam"
    assert ExperimentConfig(optimizer="SGD").optimizer == "sgd"
    ck = tmp_path / "r.nmnp"
    code, _, err = run_cli(capsys, *SMALL_RUN, "--tasks", "2", "--max-steps", "2", "--optimizer",
                           "RMSprop", "--checkpoint", str(ck), "--quiet")
    assert code == 0, err
    assert checkpoint.read_extra(ck)["experiment"]["optimizer"] == "rmsprop"
    code, out, err = run_cli(capsys, "--resume", str(ck), "--optimizer", "rmsprop")
    assert code == 0 and "already holds all 2 task(s)" in out, err


def test_a_step_that_is_not_a_number_is_a_config_error_not_a_crash():
    from nmnp.errors import ConfigError

    for bad in ("10", True, None):
        with pytest.raises(ConfigError, match="step must be a finite number of degrees"):
            ExperimentConfig(step=bad)


def test_help_gives_every_run_option_its_default():
    """The parser's defaults are None (so presets apply), so each help text must say it."""
    run = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices.values()
               if a.prog.endswith(" run"))
    for action in run._actions:
        if action.dest in cli._CONFIG_OPTIONS and action.nargs is None and action.const is None:
            assert "default" in action.help or "FlyNet" in action.help, action.dest


def test_the_header_names_strategy_recipe_and_preset(tmp_path, capsys):
    code, out, _ = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--max-steps", "2",
                           "--strategy", "separate", "--preset", "paper-rotated",
                           "--json", str(tmp_path / "r.json"))
    assert code == 0
    header, note = out.splitlines()[:2]
    assert header == ("nmnp run: rotated fashion-mnist-subset, 1 task(s), 3 epoch(s), at most 2 "
                      "steps, separate (adam 0.0003), backend cpu, preset paper-rotated")
    assert note.startswith("note: preset paper-rotated's protocol on the shipped "
                           "fashion-mnist-subset") and "--dataset fashion-mnist" in note
    assert json.loads((tmp_path / "r.json").read_text())["preset"] == "paper-rotated"
    code, out, _ = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--max-steps", "2")
    assert ", crwn (rmsprop 0.01), backend cpu\n" in out and "note:" not in out


def test_resume_accepts_the_original_command_with_its_preset(tmp_path):
    """Re-running the original command with --resume added works; a preset that changes the
    run is refused by name."""
    from nmnp.errors import ConfigError
    from nmnp.presets import resolve_config

    d = load_dataset()
    small = Dataset(d.name, d.x_train[:256], d.y_train[:256], d.x_test[:64], d.y_test[:64], d.source, d.classes)
    original = ["--preset", "paper-rotated", "--units", "200", "--threads", "1"]
    cfg = resolve_config({"units": 200, "threads": 1}, "paper-rotated")
    path = tmp_path / "p.nmnp"

    class Stop(Exception):
        pass

    def stop(result, learner):
        raise Stop

    with pytest.raises(Stop):
        run_experiment(cfg, dataset=small, checkpoint=path, on_task_end=stop, progress=False)
    parse = cli.build_parser().parse_args
    assert cli._resumed_config(parse(["run", *original, "--resume", str(path)]), path) == cfg
    assert cli._resumed_config(parse(["run", "--resume", str(path)]), path) == cfg
    with pytest.raises(ConfigError, match=r"--benchmark 'permuted' \(stored 'rotated'\), --max-steps 1000 \(stored None\)"):
        cli._resumed_config(parse(["run", "--preset", "supsup-permuted", "--resume", str(path)]), path)


@pytest.mark.parametrize("name, magic", [("f.png", b"\x89PNG"), ("f.pdf", b"%PDF"),
                                          ("f.svg", b"<?xml"), ("f", b"\x89PNG")])
def test_the_figure_format_follows_the_extension(tmp_path, capsys, name, magic):
    code, _, err = run_cli(capsys, *SMALL_RUN, "--tasks", "2", "--max-steps", "1", "--quiet",
                           "--plot", str(tmp_path / name))
    assert code == 0, err
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_an_unknown_figure_extension_is_refused_before_any_work(tmp_path, capsys):
    figure = tmp_path / "f.jpg"
    code, out, err = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--plot", str(figure))
    assert_one_line_error(code, err, f"cannot write a figure as .jpg ({figure}): use .png, .pdf, .svg")
    assert out == "" and list(tmp_path.iterdir()) == []


def test_nmnp_warnings_are_one_line(tmp_path, capsys):
    """A dataset folder of the wrong size warns like an error is printed: one line, no file
    name or source line (Python's default for a warning)."""
    from nmnp.data.datasets import get_spec
    from nmnp.data.idx import write_idx

    rng = np.random.default_rng(0)
    for role, name in get_spec("mnist").files.items():
        n = 300 if role.startswith("train") else 100
        shape = (n, 28, 28) if role.endswith("images") else (n,)
        high = 256 if role.endswith("images") else 10
        write_idx(tmp_path / name, rng.integers(0, high, shape, dtype=np.uint8), compress=True)
    code, _, err = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--max-steps", "1", "--quiet",
                           "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 0
    assert err.startswith("nmnp: warning: mnist files of an unexpected size: ") and err.count("\n") == 1


def test_version_and_a_bare_nmnp(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"nmnp {nmnp.__version__}\n"
    assert cli.main([]) == 2  # nothing to do: the help says what there is
    out = capsys.readouterr().out
    assert out.startswith("usage: nmnp") and "run" in out and "compare" in out


def test_run_draws_its_figure_beside_the_report(tmp_path):
    figure, report = tmp_path / "x.png", tmp_path / "x.json"
    assert cli.main(["run", *SMALL_RUN, "--quiet", "--tasks", "2", "--max-steps", "5",
                     "--plot", str(figure), "--json", str(report)]) == 0
    matrix = json.loads(report.read_text())["acc_matrix"]
    assert [len(row) for row in matrix] == [1, 2]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(figure)
    height, width, channels = image.shape
    assert channels in (3, 4) and 100 < height < width  # the heatmap beside the curves
    # Each accuracy of the report fills its cell of the heatmap in its colour (viridis on
    # [0, 1], as plots.draw_accuracy_matrix draws it): thousands of pixels, where the colour
    # bar shows any one colour in a thin stripe only.
    for accuracy in {a for row in matrix for a in row}:
        colour = matplotlib.colormaps["viridis"](accuracy)[:3]
        near = np.abs(image[..., :3] - colour).max(axis=2) < 2 / 255
        assert near.sum() > 5_000, f"no cell of accuracy {accuracy} in the figure"


def test_quiet_prints_what_its_help_says(tmp_path, capsys):
    """run --quiet: nothing but warnings and errors; compare --quiet: only the final table."""
    code, out, err = run_cli(capsys, *SMALL_RUN, "--tasks", "2", "--max-steps", "2", "--quiet",
                             "--json", str(tmp_path / "r.json"))
    assert (code, out, err) == (0, "", "") and (tmp_path / "r.json").exists()
    code = cli.main(["compare", "--strategies", "crwn,separate", "--tasks", "1", "--max-steps",
                     "2", "--units", "200", "--threads", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].startswith("strategy ")
    assert len(out.splitlines()) == 4  # the header, its rule and one row per strategy


# --------------------------------------------------------------------------- empty path options
@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--json", ""], "nmnp: error: --json needs a file name\n"),
        (["run", "--plot", ""], "nmnp: error: --plot needs a file name\n"),
        (["run", "--checkpoint", ""], "nmnp: error: --checkpoint needs a file name\n"),
        (["run", "--resume", ""], "nmnp: error: --resume needs a file name\n"),
        (["run", "--json", "  "], "nmnp: error: --json needs a file name\n"),
        (["run", "--dataset", "mnist", "--data-dir", ""], "nmnp: error: --data-dir needs a folder name\n"),
        (["compare", "--strategies", "crwn", "--json", ""], "nmnp: error: --json needs a file name\n"),
        (["compare", "--strategies", "crwn", "--plot", ""], "nmnp: error: --plot needs a file name\n"),
        (["compare", "--strategies", "crwn", "--resume", ""], "nmnp: error: --resume needs a file name\n"),
        (["compare", "--strategies", "crwn", "--dataset", "mnist", "--data-dir", ""],
         "nmnp: error: --data-dir needs a folder name\n"),
    ],
)
def test_an_empty_path_is_refused_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    """`--json ""` (an unset shell variable) is not "no --json": the run would end with status
    0 and no report, and `--resume ""` would start a fresh run, then fail on the folder "."."""
    monkeypatch.chdir(tmp_path)
    code = cli.main([*argv, "--units", "50", "--threads", "1", "--tasks", "1"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--json", "--plot", "--from-json"])
def test_the_bench_refuses_an_empty_path_before_measuring(tmp_path, monkeypatch, capsys, option):
    from nmnp.bench import cli as bench_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench_cli, "run_bench", lambda args: pytest.fail("the bench ran"))
    extra = {"--json": [], "--plot": ["--scaling"], "--from-json": ["--plot", "f.png"]}[option]
    code = bench_cli.main([option, "", *extra])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"nmnp.bench: error: {option} needs a file name\n")
    assert list(tmp_path.iterdir()) == []


def test_paths_given_as_none_still_mean_not_given_and_zero_is_a_name(tmp_path, monkeypatch):
    """The check refuses empty names only: a file called "0" (falsy as a number, not as
    text) is written like any other."""
    from nmnp.atomic import check_paths_given
    from nmnp.errors import ConfigError

    check_paths_given({"--json": None, "--plot": "0"})
    with pytest.raises(ConfigError, match="^--plot needs a file name$"):
        check_paths_given({"--json": None, "--plot": ""})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", *SMALL_RUN, "--tasks", "1", "--max-steps", "1", "--quiet", "--json", "0"]) == 0
    assert json.loads((tmp_path / "0").read_text())["config"]["tasks"] == 1
