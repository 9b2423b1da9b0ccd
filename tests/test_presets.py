"""Presets reproduce published protocols exactly; explicit flags override them."""

from __future__ import annotations

import pytest

from nmnp.cli import _config_from, build_parser
from nmnp.errors import ConfigError
from nmnp.experiment import ExperimentConfig
from nmnp.presets import PRESETS, get_preset, resolve_config
from nmnp.strategies import DEFAULT_LR, DEFAULT_OPTIMIZER, LEARNING_RATES


def test_paper_rotated_is_the_authors_protocol():
    p = get_preset("paper-rotated")
    assert dict(p.values) == {
        "benchmark": "rotated", "tasks": 36, "step": 10.0, "interpolation": "nearest",
        "epochs": 3, "batch_size": 128,
    }
    assert {k: dict(v) for k, v in p.recipes.items()} == {"crwn": {"optimizer": "rmsprop", "lr": 0.01}}
    c = resolve_config({"dataset": "fashion-mnist"}, "paper-rotated")
    assert (c.benchmark, c.tasks, c.step, c.epochs, c.optimizer, c.lr, c.batch_size) == (
        "rotated", 36, 10.0, 3, "rmsprop", 0.01, 128)
    assert c.strategy == "crwn" and c.dataset == "fashion-mnist"


def test_supsup_permuted_is_supsups_protocol_with_its_run_time_stated():
    p = get_preset("supsup-permuted")
    assert dict(p.values) == {"benchmark": "permuted", "tasks": 250, "epochs": 2, "batch_size": 128}
    assert {k: dict(v) for k, v in p.recipes.items()} == {"supsup": {"optimizer": "rmsprop", "lr": 1e-4}}
    assert "15 h" in p.expected_runtime and "15 hours" in __import__("nmnp.presets").presets.__doc__
    c = resolve_config({"strategy": "supsup", "dataset": "mnist"}, "supsup-permuted")
    assert (c.benchmark, c.tasks, c.epochs, c.optimizer, c.lr, c.batch_size) == (
        "permuted", 250, 2, "rmsprop", 1e-4, 128)
    assert set(PRESETS) == {"paper-rotated", "supsup-permuted"}


def test_explicit_options_override_the_preset_and_lrs_are_per_strategy():
    assert resolve_config({"epochs": 1}, "paper-rotated").epochs == 1  # 1 is also the plain default
    assert resolve_config({"lr": 0.5}, "paper-rotated").lr == 0.5
    # a recipe published for crwn is not imposed on a dense readout
    c = resolve_config({"strategy": "separate"}, "paper-rotated")
    assert (c.optimizer, c.lr, c.epochs) == (DEFAULT_OPTIMIZER["separate"], DEFAULT_LR["separate"], 3)
    assert (c.optimizer, c.lr) == ("adam", 3e-4)
    # an optimiser given alone brings the rate measured for it, not the default optimiser's
    c = resolve_config({"strategy": "separate", "optimizer": "rmsprop"}, "paper-rotated")
    assert c.lr == LEARNING_RATES["separate"]["rmsprop"] == 5e-5
    c = resolve_config({"optimizer": "adam"}, "paper-rotated")  # crwn, not the published optimiser
    assert (c.optimizer, c.lr) == ("adam", 0.01)
    assert resolve_config({"strategy": "supsup", "optimizer": "sgd"}).lr == DEFAULT_LR["supsup"]  # none measured
    plain = resolve_config({"strategy": "supsup"})
    assert plain.lr == DEFAULT_LR["supsup"] and plain.tasks == ExperimentConfig().tasks
    assert resolve_config({}).lr == 0.01 == ExperimentConfig().lr


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="unknown preset 'paper'; choose one of paper-rotated, supsup-permuted"):
        resolve_config({}, "paper")
    with pytest.raises(ConfigError, match=r"unknown experiment option\(s\) \['colour'\]"):
        resolve_config({"colour": 1})
    with pytest.raises(ConfigError, match="unknown strategy 'ewc'"):
        resolve_config({"strategy": "ewc"})


def test_run_command_applies_a_preset_unless_a_flag_is_given():
    parse = lambda *a: _config_from(build_parser().parse_args(["run", *a]))
    c = parse("--preset", "paper-rotated", "--dataset", "mnist")
    assert (c.tasks, c.epochs, c.lr, c.dataset) == (36, 3, 0.01, "mnist")
    c = parse("--preset", "paper-rotated", "--epochs", "1", "--tasks", "5")
    assert (c.tasks, c.epochs, c.step) == (5, 1, 10.0)
    c = parse("--strategy", "separate", "--benchmark", "split")
    assert (c.strategy, c.benchmark, c.optimizer, c.lr) == ("separate", "split", "adam", 3e-4)
    c = parse("--strategy", "separate", "--lr", "0.001", "--optimizer", "sgd")
    assert (c.optimizer, c.lr) == ("sgd", 0.001)
    assert parse() == ExperimentConfig()  # no flags: the plain defaults, as before
