"""``nmnp compare --resume JSON``: a comparison cut short runs only what it did not finish,
and ends as the uninterrupted comparison would (timings aside)."""

from __future__ import annotations

import json
import os

import pytest

import nmnp
from nmnp import compare
from nmnp.cli import main
from nmnp.errors import ConfigError, TrainingError
from nmnp.lock import exclusive

SMALL = ["--tasks", "2", "--units", "100", "--k", "5", "--threads", "1", "--max-steps", "4"]


def nmnp_main(capsys, *argv):
    """(exit status, stdout, stderr) of a command line run in this process."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    js = tmp_path_factory.mktemp("whole") / "cmp.json"
    assert main(["compare", "--strategies", "crwn,separate,supsup", *SMALL, "--json", str(js),
                 "--quiet"]) == 0
    return json.loads(js.read_text())


def cut_short(tmp_path, capsys, monkeypatch, fails="separate"):
    """A comparison whose strategy ``fails`` diverges: its --json holds the ones before."""
    real = compare.run_experiment

    def diverges(config, **kwargs):
        if config.strategy == fails:
            raise TrainingError("task id 0, epoch 1, step 3: the loss became nan")
        return real(config, **kwargs)

    js = tmp_path / "cmp.json"
    with monkeypatch.context() as patch:
        patch.setattr(compare, "run_experiment", diverges)
        code, _, err = nmnp_main(capsys, "compare", "--strategies", "crwn,separate,supsup",
                                 *SMALL, "--json", str(js))
    assert code == 2 and f"`nmnp compare --resume {js}` runs the rest" in err
    return js


def test_a_resumed_comparison_is_the_uninterrupted_one(tmp_path, capsys, monkeypatch,
                                                        uninterrupted):
    js = cut_short(tmp_path, capsys, monkeypatch)
    partial = json.loads(js.read_text())
    assert partial["strategies"] == ["crwn"] and partial["unfinished"] == ["separate", "supsup"]
    ran = []
    real = compare.run_experiment
    monkeypatch.setattr(compare, "run_experiment",
                        lambda config, **kw: ran.append(config.strategy) or real(config, **kw))
    code, out, _ = nmnp_main(capsys, "compare", "--resume", str(js))
    assert code == 0 and ran == ["separate", "supsup"]  # crwn is not trained again
    assert f"kept from {js}: crwn; to run: separate, supsup" in out
    whole = json.loads(js.read_text())
    assert whole["strategies"] == ["crwn", "separate", "supsup"] and whole["unfinished"] == []
    assert whole["results"]["crwn"] == partial["results"]["crwn"]  # kept as it was, timings too
    for name in whole["strategies"]:
        assert (whole["results"][name]["report"]["acc_matrix"]
                == uninterrupted["results"][name]["report"]["acc_matrix"]), name
        assert whole["results"][name]["storage"] == uninterrupted["results"][name]["storage"]
    assert whole["settings"] == uninterrupted["settings"]
    assert whole["options"] == uninterrupted["options"]
    assert whole["wall_seconds"] > partial["wall_seconds"]
    assert [r["strategy"] for r in whole["table"]] == whole["strategies"]


def test_resume_takes_only_options_that_do_not_change_the_comparison(tmp_path, capsys,
                                                                       monkeypatch):
    js = cut_short(tmp_path, capsys, monkeypatch)
    before = js.read_bytes()
    for argv, clash in [
        (["--lr", "0.5"], "--lr 0.5 (stored None)"),
        (["--tasks", "3"], "--tasks 3 (stored 2)"),
        (["--strategies", "crwn,supsup"], "--strategies crwn,supsup (stored crwn,separate,supsup)"),
        (["--preset", "paper-rotated"], "--preset paper-rotated (stored None)"),
    ]:
        code, _, err = nmnp_main(capsys, "compare", "--resume", str(js), *argv)
        assert code == 2 and "cannot resume" in err and clash in err, argv
    assert js.read_bytes() == before
    # repeating the original command, with a different thread count, is allowed
    code, _, _ = nmnp_main(capsys, "compare", "--strategies", "crwn,separate,supsup", *SMALL[:-4],
                           "--threads", "2", "--max-steps", "4", "--resume", str(js), "--quiet")
    assert code == 0 and json.loads(js.read_text())["unfinished"] == []


def test_resuming_a_finished_comparison_trains_nothing(tmp_path, capsys, monkeypatch,
                                                        uninterrupted):
    js = tmp_path / "done.json"
    js.write_text(json.dumps(uninterrupted))

    def no_training(*a, **k):
        raise AssertionError("a finished comparison was trained again")

    monkeypatch.setattr(compare, "run_experiment", no_training)
    monkeypatch.setattr(compare, "load_dataset", no_training)
    code, out, _ = nmnp_main(capsys, "compare", "--resume", str(js), "--json",
                             str(tmp_path / "copy.json"))
    assert code == 0 and "to run: nothing" in out
    assert compare.format_table(uninterrupted) in out
    assert json.loads((tmp_path / "copy.json").read_text())["table"] == uninterrupted["table"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"\x93NUMPY binary", "is not a comparison report"),
    (b'{"acc_matrix": [[1.0]], "unfinished_tasks": 0}', "a report of nmnp run"),
    (b'{"strategies": [], "unfinished": []}', "did not store a comparison's options"),
])
def test_resume_names_a_file_that_is_not_a_comparison(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_bytes(content)
    code, _, err = nmnp_main(capsys, "compare", "--resume", str(path))
    assert code == 2 and message in err


def test_a_comparison_continues_only_as_the_one_it_was(uninterrupted):
    partial = {**uninterrupted, "strategies": ["crwn"], "unfinished": ["separate", "supsup"],
               "table": uninterrupted["table"][:1],
               "results": {"crwn": uninterrupted["results"]["crwn"]}}
    options = dict(uninterrupted["options"])
    with pytest.raises(ConfigError, match=r"must start with them.*got separate, crwn"):
        compare.run_comparison(options, "separate,crwn", finished=partial)
    with pytest.raises(ConfigError, match=r"seed 1 vs 0"):
        compare.run_comparison({**options, "seed": 1}, "crwn,separate", finished=partial)
    with pytest.raises(ConfigError, match=r"crwn's recipe sgd 0.1 vs rmsprop 0.01"):
        compare.run_comparison({**options, "optimizer": "sgd", "lr": 0.1}, "crwn",
                               finished=partial)
    with pytest.raises(ConfigError, match="do not agree"):
        compare.run_comparison(options, "crwn,separate", finished={**partial, "results": {}})


def test_two_comparisons_do_not_write_one_report(tmp_path, capsys):
    js = tmp_path / "cmp.json"
    with exclusive(js, "comparison report"):
        code, _, err = nmnp_main(capsys, "compare", *SMALL, "--json", str(js))
    assert code == 2 and f"comparison report {js} is in use by another nmnp process" in err
    assert not js.exists()


def test_a_kept_result_that_is_malformed_is_named_before_any_training(uninterrupted, monkeypatch):
    """A finished strategy's report is kept as it is, then tabled and drawn: a damaged one
    used to fail at the very end (plot_comparison's KeyError), after the other runs."""
    import copy

    monkeypatch.setattr(compare, "load_dataset", lambda *a, **k: pytest.fail("data were loaded"))
    partial = {**uninterrupted, "strategies": ["crwn"], "unfinished": ["separate"],
               "table": uninterrupted["table"][:1],
               "results": {"crwn": copy.deepcopy(uninterrupted["results"]["crwn"])}}
    options = dict(uninterrupted["options"])
    partial["results"]["crwn"]["report"]["acc_matrix"] = [[0.5], [0.5]]
    with pytest.raises(ConfigError, match=r"^the comparison to continue holds an invalid result for crwn "
                                          r"\(acc_matrix row 1 must hold 2 accuracies"):
        compare.run_comparison(options, "crwn,separate", finished=partial)
    del partial["results"]["crwn"]["storage"]
    with pytest.raises(ConfigError, match="^the comparison to continue holds an incomplete result for crwn$"):
        compare.run_comparison(options, "crwn,separate", finished=partial)
    for key, value in (("table", "crwn"), ("strategies", [["crwn"]]), ("results", [])):
        with pytest.raises(ConfigError, match=f"^not a comparison written by nmnp compare: its {key} "
                                              "entry is malformed$"):
            compare.run_comparison(options, "crwn,separate", finished={**partial, key: value})


def stopped_after_first_task_of(tmp_path, capsys, monkeypatch, strategy):
    """A comparison stopped by Ctrl-C right after ``strategy``'s first task was checkpointed."""
    real = compare.run_experiment

    def interrupted(config, **kwargs):
        if config.strategy == strategy:
            def stop(result, learner):
                raise KeyboardInterrupt
            kwargs["on_task_end"] = stop
        return real(config, **kwargs)

    js = tmp_path / "cmp.json"
    with monkeypatch.context() as patch:
        patch.setattr(compare, "run_experiment", interrupted)
        code, _, err = nmnp_main(capsys, "compare", "--strategies", "crwn,separate,supsup", *SMALL,
                                 "--json", str(js), "--quiet")
    assert code == 130, err
    return js, err


@pytest.mark.parametrize("cut", ["crwn", "separate"])
def test_a_strategy_cut_short_continues_from_its_checkpoint(tmp_path, capsys, monkeypatch,
                                                             uninterrupted, cut):
    js, message = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, cut)
    ck = compare.strategy_checkpoint(js, cut)
    assert f"`nmnp compare --resume {js}` runs the rest, {cut} from its checkpoint {ck}" in message
    partial = json.loads(js.read_text())  # written before the strategy started
    done = ["crwn"] if cut == "separate" else []
    assert partial["strategies"] == done and partial["unfinished"][0] == cut
    assert nmnp.load(ck).n_tasks == 1
    if cut == "separate":  # crwn's checkpoint went once the report held crwn
        assert not os.path.exists(compare.strategy_checkpoint(js, "crwn"))
    calls = []
    real = compare.run_experiment
    monkeypatch.setattr(compare, "run_experiment", lambda config, **kw: calls.append(
        (config.strategy, kw["resume"])) or real(config, **kw))
    code, out, _ = nmnp_main(capsys, "compare", "--resume", str(js))
    assert code == 0 and f"-- {cut} (" in out and f"continuing from {ck} after task 1 of 2" in out
    assert calls[0] == (cut, ck) and all(resume is None for _, resume in calls[1:])
    whole = json.loads(js.read_text())
    assert whole["unfinished"] == [] and whole["strategies"] == ["crwn", "separate", "supsup"]
    for name in whole["strategies"]:  # the checkpointed task was not trained again, yet:
        assert (whole["results"][name]["report"]["acc_matrix"]
                == uninterrupted["results"][name]["report"]["acc_matrix"]), name
    assert whole["results"][cut]["report"]["resumed_from"]["tasks_done"] == 1
    assert not any(p.name.endswith(".nmnp") for p in tmp_path.iterdir())  # all removed


def test_a_fresh_comparison_replaces_every_left_over_checkpoint(tmp_path, capsys, monkeypatch):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "crwn")
    crwn = compare.strategy_checkpoint(js, "crwn")
    # one of a later strategy too, as an earlier comparison cut short there would leave
    supsup = compare.strategy_checkpoint(js, "supsup")
    with open(crwn, "rb") as f, open(supsup, "wb") as g:
        g.write(f.read())
    js2, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "crwn")
    assert js2 == js and not os.path.exists(supsup)  # a resume cannot pick up a stranger's run
    code, _, err = nmnp_main(capsys, "compare", "--strategies", "crwn", *SMALL, "--json", str(js), "--quiet")
    assert code == 0, err
    assert json.loads(js.read_text())["unfinished"] == [] and not os.path.exists(crwn)


def test_a_file_that_is_not_a_checkpoint_is_refused_before_any_training(tmp_path, capsys):
    js = tmp_path / "cmp.json"
    other = compare.strategy_checkpoint(js, "separate")
    with open(other, "w") as f:
        f.write("my notes")
    code, _, err = nmnp_main(capsys, "compare", "--strategies", "crwn,separate", *SMALL, "--json", str(js))
    assert code == 2 and f"{other} exists and is not an nmnp checkpoint" in err
    assert not js.exists()  # nothing ran
    with open(other) as f:
        assert f.read() == "my notes"


def test_the_files_of_strategies_finished_earlier_are_left_alone(tmp_path, capsys, monkeypatch):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "separate")
    notes = compare.strategy_checkpoint(js, "crwn")  # crwn finished before: not the resume's
    with open(notes, "w") as f:
        f.write("my notes")
    code, _, err = nmnp_main(capsys, "compare", "--resume", str(js), "--quiet")
    assert code == 0, err
    with open(notes) as f:
        assert f.read() == "my notes"
    assert not os.path.exists(compare.strategy_checkpoint(js, "separate"))


def test_a_resume_into_another_report_carries_the_checkpoint_along(tmp_path, capsys, monkeypatch,
                                                                    uninterrupted):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "separate")
    source = compare.strategy_checkpoint(js, "separate")
    before = open(source, "rb").read()
    other = tmp_path / "other.json"
    real = compare.run_experiment

    def stop_at_once(config, **kwargs):  # cut short again before it saves anything
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_experiment", stop_at_once)
    code, _, err = nmnp_main(capsys, "compare", "--resume", str(js), "--json", str(other), "--quiet")
    target = compare.strategy_checkpoint(other, "separate")
    assert code == 130 and f"`nmnp compare --resume {other}` runs the rest, separate from its checkpoint {target}" in err
    assert open(target, "rb").read() == before
    monkeypatch.setattr(compare, "run_experiment", real)
    code, out, err = nmnp_main(capsys, "compare", "--resume", str(other))
    assert code == 0, err
    assert f"continuing from {target} after task 1 of 2" in out
    whole = json.loads(other.read_text())
    for name in whole["strategies"]:
        assert (whole["results"][name]["report"]["acc_matrix"]
                == uninterrupted["results"][name]["report"]["acc_matrix"]), name
    assert not os.path.exists(target) and open(source, "rb").read() == before  # X's is left


def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path, capsys, monkeypatch):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "separate")
    path = compare.strategy_checkpoint(js, "separate")
    data = bytearray(open(path, "rb").read())
    data[-40] ^= 1
    open(path, "wb").write(bytes(data))
    code, _, err = nmnp_main(capsys, "compare", "--resume", str(js))
    assert code == 2 and "is damaged" in err and "delete it to run separate again from its first task" in err
    os.remove(path)
    code, out, err = nmnp_main(capsys, "compare", "--resume", str(js), "--quiet")
    assert code == 0, err


def test_a_resume_into_another_report_never_continues_that_report_s_old_checkpoint(
        tmp_path, capsys, monkeypatch, uninterrupted):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "separate")
    stale = tmp_path / "other.json"
    os.replace(compare.strategy_checkpoint(js, "separate"), compare.strategy_checkpoint(stale, "separate"))
    # js now holds crwn and no checkpoint of separate (as if cut before its first task);
    # other.json's place holds a checkpoint of another comparison
    code, out, err = nmnp_main(capsys, "compare", "--resume", str(js), "--json", str(stale), "--quiet")
    assert code == 0, err
    whole = json.loads(stale.read_text())
    assert "resumed_from" not in whole["results"]["separate"]["report"]  # started afresh
    for name in whole["strategies"]:
        assert (whole["results"][name]["report"]["acc_matrix"]
                == uninterrupted["results"][name]["report"]["acc_matrix"]), name


def test_a_comparison_that_fails_before_it_starts_replaces_nothing(tmp_path, capsys, monkeypatch,
                                                                    uninterrupted):
    js, _ = stopped_after_first_task_of(tmp_path, capsys, monkeypatch, "separate")
    ck = compare.strategy_checkpoint(js, "separate")
    before = (js.read_bytes(), open(ck, "rb").read())
    code, _, err = nmnp_main(capsys, "compare", "--strategies", "crwn,separate,supsup", *SMALL,
                             "--dataset", "mnist", "--data-dir", str(tmp_path), "--json", str(js))
    assert code == 2 and "mnist" in err  # no MNIST here: it fails while loading the data
    assert (js.read_bytes(), open(ck, "rb").read()) == before
    code, out, err = nmnp_main(capsys, "compare", "--resume", str(js))
    assert code == 0 and f"continuing from {ck} after task 1 of 2" in out
