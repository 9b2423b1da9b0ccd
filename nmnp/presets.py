"""Named presets: published continual-learning protocols, reproduced by name.

``python -m nmnp run --preset paper-rotated --dataset fashion-mnist`` (or ``compare``) runs
a protocol exactly as published, and :func:`resolve_config` says how a preset combines with
the other options:

1. an option given explicitly (on the command line, or a non-``None`` entry passed to
   :func:`resolve_config`) always wins;
2. otherwise the preset's value, if the preset fixes that field;
3. the optimiser and learning rate: the ones the protocol published *for this strategy*
   (:attr:`Preset.recipes`), else the strategy's own (:data:`nmnp.strategies.DEFAULT_OPTIMIZER`,
   and :func:`nmnp.strategies.default_lr` for the optimiser in use);
4. otherwise :class:`~nmnp.experiment.ExperimentConfig`'s default.

A preset fixes the protocol (stream, task count, epochs, batch size) and the training recipe
of the model it was published for, not the dataset: pass ``--dataset``. Recipes are per
strategy because a rate published for one model is not a protocol constant: the authors'
RMSprop 0.01 is tuned for a context over a fixed readout and makes a fully trained readout
diverge, so under ``paper-rotated`` the other strategies keep their own recipes.

Presets
-------
``paper-rotated``
    The CRWN authors' protocol (adapted from SupSup's rotated MNIST): 36 tasks, task i rotates
    every image by 10 i degrees (0..350), nearest-neighbour resampling, 3 epochs per task,
    RMSprop lr 0.01 (crwn), batch 128.
``supsup-permuted``
    SupSup's headline permuted-MNIST run: 250 tasks, task 0 the identity and task i a fixed
    random pixel permutation, batch 128, RMSprop 1e-4 for the SupSup masks. Like SupSup, each
    task trains 3 epochs capped at 1,000 optimiser steps (``max_steps``): on 60,000 images,
    two whole epochs of 469 steps and 62 steps of the third (2.13 epochs). Task-incremental:
    the task's identity is given (SupSup's "GG" scenario).

Expected run times
------------------
Measured for the FlyNet network on this machine class (2 shared cores, full Fashion-MNIST)
by ``python scripts/preset_runtimes.py --dataset fashion-mnist --repeats 5``
(``results/preset-runtimes.txt``; an earlier run with ``--repeats 3``,
``results/preset-runtimes-repeats3.txt``), which times the three parts a run repeats on the
preset's own benchmark: building a task, one training epoch and one test pass over 10,000
images, its split rebuilt. The two runs, minutes apart on the same shared machine, differ by
up to 1.8x in a preset's total (more in the short parts), so the figures below are the range
of the two:

* building a task: 0.3 to 2.3 s;
* one training epoch: crwn 1.4 to 2.1 s (29,000 to 44,000 samples/s); the dense readouts
  3.7 to 7.0 s; SupSup 5.2 to 7.4 s;
* one test pass: 0.05 to 0.22 s.

The evaluation of every learned task after each new one grows quadratically and dominates
long streams.

* ``paper-rotated``: 36 tasks of 3 epochs take 3 to 5 min of training for crwn, and 666
  test passes about 2 min: **4 to 7 minutes** (9 to 16 minutes for the others).
* ``supsup-permuted``: 250 tasks of 1,000 steps (2.13 epochs) take 20 to 24 min of training
  for crwn (36 min to 1.2 h for the others), and the 250 * 251 / 2 = 31,375 test passes
  1.0 to 2.0 h: **about 2 hours for crwn (1.87 and 1.93 h), 1.6 to 3.0 hours for the other
  strategies**.

Checked against a real run: 4 tasks of ``paper-rotated`` (crwn) took 35 s in the experiment
against the 29 s its parts add up to, the difference being one-off costs (loading the
dataset and the first task's kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

from .errors import ConfigError
from .experiment import ExperimentConfig
from .strategies import check_strategy, default_lr, default_optimizer


@dataclass(frozen=True)
class Preset:
    """A published protocol.

    Attributes
    ----------
    name : str
    summary : str
        One line: what the protocol is and where it comes from.
    values : mapping
        The :class:`~nmnp.experiment.ExperimentConfig` fields the protocol fixes for every
        strategy (stream and training budget).
    recipes : mapping strategy -> {"optimizer": str, "lr": float}
        The training recipe the protocol published, for the strategies it published one for.
    expected_runtime : str
        Estimated on a 2-core machine from measured rates (see the module docstring).
    """

    name: str
    summary: str
    values: Mapping[str, object]
    recipes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    expected_runtime: str = ""


#: Every preset by name.
PRESETS: dict[str, Preset] = {
    "paper-rotated": Preset(
        name="paper-rotated",
        summary="Hong & Pavlic's rotated protocol: 36 tasks 10 degrees apart, 3 epochs, "
                "RMSprop 0.01, batch 128",
        values={"benchmark": "rotated", "tasks": 36, "step": 10.0, "interpolation": "nearest",
                "epochs": 3, "batch_size": 128},
        recipes={"crwn": {"optimizer": "rmsprop", "lr": 0.01}},
        expected_runtime="4 to 7 min for crwn on 2 cores (3 to 5 min training, 2 min for 666 "
                         "test passes); 9 to 16 min for the other strategies",
    ),
    "supsup-permuted": Preset(
        name="supsup-permuted",
        summary="SupSup's permuted protocol: 250 tasks, 3 epochs capped at 1,000 steps, "
                "batch 128, RMSprop 1e-4 for supsup",
        values={"benchmark": "permuted", "tasks": 250, "epochs": 3, "max_steps": 1000,
                "batch_size": 128},
        recipes={"supsup": {"optimizer": "rmsprop", "lr": 1e-4}},
        expected_runtime="about 2 h for crwn on 2 cores (20 to 24 min training, 1.5 h for "
                         "31,375 test passes); 1.6 to 3 h for the other strategies",
    ),
}

_FIELDS = tuple(f.name for f in fields(ExperimentConfig))


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ConfigError naming the known ones otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_config(options: Mapping[str, object] | None = None, preset: str | None = None) -> ExperimentConfig:
    """Combine explicit options, a preset and the defaults into one configuration.

    Parameters
    ----------
    options : mapping field -> value
        :class:`~nmnp.experiment.ExperimentConfig` fields; ``None`` means "not given".
    preset : str, optional
        A name in :data:`PRESETS`.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        For an unknown preset, strategy or field, or an invalid value.

    Examples
    --------
    >>> resolve_config({"dataset": "mnist"}, "paper-rotated").epochs
    3
    >>> resolve_config({"epochs": 1}, "paper-rotated").epochs     # explicit wins
    1
    >>> resolve_config({"strategy": "separate"}, "paper-rotated").optimizer  # its own recipe
    'adam'
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown experiment option(s) {unknown}; known: {', '.join(_FIELDS)}")
    chosen = get_preset(preset) if preset is not None else None
    values = dict(chosen.values) if chosen else {}
    values.update(given)
    strategy = check_strategy(values.get("strategy", ExperimentConfig.strategy))
    recipe = dict(chosen.recipes.get(strategy, {})) if chosen else {}
    if "optimizer" not in given:
        values["optimizer"] = recipe.get("optimizer", default_optimizer(strategy))
    if "lr" not in given:
        published = "lr" in recipe and values["optimizer"] == recipe.get("optimizer")
        values["lr"] = recipe["lr"] if published else default_lr(strategy, values["optimizer"])
    return ExperimentConfig(**values)
