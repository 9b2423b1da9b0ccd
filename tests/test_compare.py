"""``python -m nmnp compare``: one stream, several strategies, one JSON, one figure, one table.

A small encoder (100 units) on the shipped subset keeps the whole file to seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nmnp import compare
from nmnp.cli import main
from nmnp.errors import ConfigError
from nmnp.strategies import DEFAULT_LR, DEFAULT_OPTIMIZER

SMALL_RUN = ["--tasks", "2", "--units", "100", "--k", "5", "--threads", "1"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    js, png = folder / "cmp.json", folder / "cmp.png"
    code = main(["compare", "--benchmark", "rotated", "--strategies", "crwn,finetune,separate,supsup",
                 *SMALL_RUN, "--json", str(js), "--plot", str(png), "--quiet"])
    assert code == 0
    return json.loads(js.read_text()), png


def test_every_strategy_ran_on_the_same_stream(compared):
    out, _ = compared
    assert out["strategies"] == ["crwn", "finetune", "separate", "supsup"]
    reports = [out["results"][s]["report"] for s in out["strategies"]]
    assert all(r["stream"] == reports[0]["stream"] for r in reports)
    assert all(r["config"]["seed"] == 0 and r["config"]["units"] == 100 for r in reports)
    assert [r["config"]["strategy"] for r in reports] == out["strategies"]
    assert [r["config"]["lr"] for r in reports] == [DEFAULT_LR[s] for s in out["strategies"]]
    assert [r["config"]["optimizer"] for r in reports] == ["rmsprop", "adam", "adam", "rmsprop"]
    assert [r["optimizer"] for r in out["table"]] == [DEFAULT_OPTIMIZER[s] for s in out["strategies"]]
    for s in out["strategies"]:
        summary = out["results"][s]["summary"]
        R = out["results"][s]["report"]["acc_matrix"]
        assert summary["final_accuracy_per_task"] == R[-1]
        assert summary["average_accuracy"] == pytest.approx(np.mean(R[-1]))


def test_isolating_strategies_forget_exactly_nothing(compared):
    out, _ = compared
    for s in ("crwn", "separate", "supsup"):
        R = out["results"][s]["report"]["acc_matrix"]
        assert R[1][0] == R[0][0], s
        assert out["results"][s]["summary"]["forgetting"] == 0.0


def test_storage_matches_the_arithmetic_for_this_network(compared):
    out, _ = compared
    n, n_out, k = 100, 10, 5
    rows = {r["strategy"]: r for r in out["table"]}
    assert rows["crwn"]["bytes_per_task"] == (n + 1) * 4
    assert rows["separate"]["bytes_per_task"] == (n_out * n + n_out) * 4
    assert rows["supsup"]["bytes_per_task"] == math.ceil(n_out * n / 8)
    assert rows["finetune"]["bytes_per_task"] == 0
    assert rows["finetune"]["shared_learned_bytes"] == (n_out * n + n_out) * 4
    storage = out["results"]["finetune"]["storage"]
    assert storage["total_bytes"] == 8 + (n_out * n + n_out) * 4  # seed + the one readout
    assert storage["stored_bytes_per_task_amortised"] == (n_out * n + n_out) * 4 / 2
    assert out["results"]["supsup"]["storage"]["fixed_params"] == n * k + n_out * n
    assert all(r["train_seconds"] > 0 and r["samples_per_second"] > 0 for r in out["table"])


def test_figure_and_table_are_written(compared, capsys):
    out, png = compared
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = compare.format_table(out).splitlines()
    assert table[0].split()[:5] == ["strategy", "optimizer", "lr", "avg", "acc"]
    assert [line.split()[0] for line in table[2:]] == out["strategies"]
    # each row's bytes per task and shared bytes, in their columns, are its own strategy's
    rows = {r["strategy"]: r for r in out["table"]}
    for line in table[2:]:
        fields = line.split()
        row = rows[fields[0]]
        assert [int(f.replace(",", "")) for f in fields[6:8]] == [row["bytes_per_task"],
                                                                  row["shared_learned_bytes"]]
    assert table[2].split()[:1] == ["crwn"] and table[2].split()[6] == f"{(100 + 1) * 4:,}"


def test_output_paths_are_checked_before_any_training(tmp_path, monkeypatch, capsys):
    def no_training(*a, **k):
        raise AssertionError("training started before the output paths were checked")

    monkeypatch.setattr(compare, "run_experiment", no_training)
    code = main(["compare", *SMALL_RUN, "--json", str(tmp_path / "missing" / "x.json")])
    assert code == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["compare", *SMALL_RUN, "--strategies", "crwn,ewc"]) == 2
    assert "unknown strategy 'ewc'" in capsys.readouterr().err
    assert main(["compare", *SMALL_RUN, "--lr", "-1"]) == 2
    assert "learning rate" in capsys.readouterr().err
    assert main(["compare", *SMALL_RUN, "--max-steps", "0"]) == 2
    assert "max_steps must be a positive integer or None, got 0" in capsys.readouterr().err


def test_strategy_lists_are_validated():
    assert compare.parse_strategies(" crwn, supsup ") == ("crwn", "supsup")
    with pytest.raises(ConfigError, match="'crwn' is listed more than once"):
        compare.parse_strategies("crwn,supsup,crwn")
    with pytest.raises(ConfigError, match="no strategy given"):
        compare.parse_strategies(",")


def test_run_command_takes_a_strategy_and_the_split_benchmark(tmp_path, capsys):
    js = tmp_path / "run.json"
    assert main(["run", "--strategy", "supsup", "--benchmark", "split", *SMALL_RUN, "--lr", "0.01",
                 "--json", str(js), "--quiet"]) == 0
    out = json.loads(js.read_text())
    assert out["config"]["strategy"] == "supsup" and out["config"]["lr"] == 0.01  # --lr wins
    assert out["stream"]["benchmark"] == "split" and out["bytes_per_task"] == 125
    assert out["acc_matrix"][1][0] == out["acc_matrix"][0][0] > 0.6  # two classes, learned, kept


def test_run_command_caps_each_tasks_steps(tmp_path, capsys):
    """The shipped subset's 6,000 images are 47 steps of 128 per epoch: a cap of 50 cuts the
    second epoch to 3 steps, a cap of 20 leaves the first epoch short and no second one."""
    for cap, epochs_run in (("50", 2), ("20", 1)):
        js = tmp_path / f"cap{cap}.json"
        assert main(["run", *SMALL_RUN, "--epochs", "2", "--max-steps", cap, "--json", str(js)]) == 0
        assert f"2 epoch(s), at most {cap} steps" in capsys.readouterr().out
        out = json.loads(js.read_text())
        assert out["config"]["max_steps"] == int(cap)
        assert [len(losses) for losses in out["epoch_losses"]] == [epochs_run, epochs_run]


@pytest.mark.parametrize("strategies, message", [
    (None, r"^strategies must be a comma-separated string or a list of names \(from crwn, finetune, "
           r"separate, supsup\), got NoneType$"),
    (5, "^strategies must be a comma-separated string or a list of names .*, got int$"),
    (b"crwn", "^strategies must be a comma-separated string or a list of names .*, got bytes$"),
    (["crwn", 5], r"^strategy names must be strings, got 5 in \['crwn', 5\]$"),
    ([["crwn"]], r"^strategy names must be strings, got \['crwn'\]"),
])
def test_strategy_lists_of_the_wrong_kind_are_named(strategies, message):
    """None raised a TypeError and ["crwn", 5] an AttributeError ('int' has no 'strip')."""
    with pytest.raises(ConfigError, match=message):
        compare.parse_strategies(strategies)
    with pytest.raises(ConfigError, match=message):
        compare.run_comparison({}, strategies)


def test_strategy_lists_may_be_any_sequence_of_names():
    assert compare.parse_strategies(["crwn", " supsup"]) == ("crwn", "supsup")
    assert compare.parse_strategies(iter(("separate",))) == ("separate",)
    assert compare.parse_strategies(compare.DEFAULT_STRATEGIES) == compare.DEFAULT_STRATEGIES


def test_run_comparison_names_options_and_callbacks_of_the_wrong_kind(monkeypatch):
    monkeypatch.setattr(compare, "load_dataset", lambda *a, **k: pytest.fail("data were loaded"))
    with pytest.raises(ConfigError, match=r"^options must be a dict of ExperimentConfig fields "
                                          r"\(None: not given\), got NoneType$"):
        compare.run_comparison(None, "crwn")
    with pytest.raises(ConfigError, match="^on_strategy_end must be callable or None, got int$"):
        compare.run_comparison({}, "crwn", on_strategy_end=1)
    with pytest.raises(ConfigError, match="^finished must be a comparison \\(a dict\\) or None, got list$"):
        compare.run_comparison({}, "crwn", finished=[])
