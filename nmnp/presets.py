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
by ``python scripts/preset_runtimes.py --dataset fashion-mnist --repeats 5``, which times
the parts a run repeats on the preset's own benchmark: building a task (into the array the
previous one used, as the runner does), one training epoch, one test pass over 10,000 images
(its split rebuilt), and the check ``--skip-unchanged`` makes instead of a test pass. The
machine is a shared VM whose host's speed changes between sessions, so the figures below
are the range of three runs: two on a slower host (``results/preset-runtimes.txt``, and
``results/preset-runtimes-repeats3.txt`` with ``--repeats 3``) and one on a host about four
times faster (``results/preset-runtimes-faster-host.txt``; its BLAS sgemm ran at 231 GFLOP/s
where the slower host's ran at 62, see ``python -m nmnp.bench``):

* building a task: 0.03 to 0.17 s;
* one training epoch: crwn 0.26 to 1.5 s (41,000 to 228,000 samples/s); the dense readouts
  1.1 to 5.0 s; SupSup 1.5 to 6.0 s;
* one test pass: 0.03 to 0.19 s;
* one ``--skip-unchanged`` check (hashing a task's learned arrays): 0.02 to 0.8 ms.

The evaluation of every learned task after each new one grows quadratically and dominates
long streams, unless ``--skip-unchanged`` (:mod:`nmnp.continual.runner`) replaces the
re-evaluation of a task that cannot have changed by that check: then crwn, separate and
supsup need one test pass per task. Fine-tuning's earlier tasks do change, so it gains
nothing.

* ``paper-rotated``: 36 tasks of 3 epochs take 0.5 to 2.7 min of training for crwn, and 666
  test passes 0.4 to 1.5 min: **1 to 4 minutes** (0.9 on the faster host; 3.7 and 4.1 on
  the slower), 3 to 12 minutes for the others. With ``--skip-unchanged``: 0.5 to 3 minutes
  for crwn (36 test passes take 1 to 5 s), 2 to 10 minutes for separate and supsup.
* ``supsup-permuted``: 250 tasks of 1,000 steps (2.13 epochs) take 3 to 13 min of training
  for crwn (10 to 53 min for the others), and the 250 * 251 / 2 = 31,375 test passes 18 min
  to 1.3 h: **21 minutes to 1.5 hours for crwn, 30 minutes to 2.4 hours for the other
  strategies**. With ``--skip-unchanged``: **3 to 14 minutes for crwn** (250 test passes take
  9 to 40 s), 11 to 36 minutes for separate, 13 to 54 minutes for supsup; finetune as without.

Checked against real runs (the README's commands), on the slower host: the whole of
``paper-rotated`` for crwn took 4.4 min, and 2.8 min with ``--skip-unchanged``, with identical
accuracy matrices (``results/paper-rotated-crwn-fmnist*.json``); the whole of
``supsup-permuted`` for crwn with ``--skip-unchanged`` took 13.7 min against the estimated 10
to 14: 12.3 min of training and 1.3 min of building tasks, testing and loading
(``results/supsup-permuted-crwn-fmnist.json``; average accuracy 0.8439, forgetting 0). On the
faster host the same two crwn runs (``paper-rotated`` measuring every entry) took 1.0 and 2.9
min against the estimated 0.9 and 3.0, with accuracy matrices identical to the slower host's
(``results/*-faster-host.json``).
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
    expected_runtime_skipping : str
        The same with ``skip_unchanged`` (``--skip-unchanged``).
    """

    name: str
    summary: str
    values: Mapping[str, object]
    recipes: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    expected_runtime: str = ""
    expected_runtime_skipping: str = ""


#: Every preset by name.
PRESETS: dict[str, Preset] = {
    "paper-rotated": Preset(
        name="paper-rotated",
        summary="Hong & Pavlic's rotated protocol: 36 tasks 10 degrees apart, 3 epochs, "
                "RMSprop 0.01, batch 128",
        values={"benchmark": "rotated", "tasks": 36, "step": 10.0, "interpolation": "nearest",
                "epochs": 3, "batch_size": 128},
        recipes={"crwn": {"optimizer": "rmsprop", "lr": 0.01}},
        expected_runtime="1 to 4 min for crwn on 2 cores, depending on the host (0.5 to 2.7 min "
                         "training, 0.4 to 1.5 min for 666 test passes); 3 to 12 min for the "
                         "other strategies",
        expected_runtime_skipping="0.5 to 3 min for crwn on 2 cores, depending on the host (36 test "
                                  "passes take 1 to 5 s); 2 to 10 min for separate and supsup; "
                                  "finetune re-evaluates every task (3 to 9 min)",
    ),
    "supsup-permuted": Preset(
        name="supsup-permuted",
        summary="SupSup's permuted protocol: 250 tasks, 3 epochs capped at 1,000 steps, "
                "batch 128, RMSprop 1e-4 for supsup",
        values={"benchmark": "permuted", "tasks": 250, "epochs": 3, "max_steps": 1000,
                "batch_size": 128},
        recipes={"supsup": {"optimizer": "rmsprop", "lr": 1e-4}},
        expected_runtime="21 min to 1.5 h for crwn on 2 cores, depending on the host (3 to 13 min "
                         "training, 18 min to 1.3 h for 31,375 test passes); 30 min to 2.4 h for "
                         "the other strategies",
        expected_runtime_skipping="3 to 14 min for crwn on 2 cores, depending on the host (250 test "
                                  "passes take 9 to 40 s); 11 to 36 min for separate, 13 to 54 "
                                  "min for supsup; finetune re-evaluates every task (30 min to "
                                  "2.0 h)",
    ),
}

_FIELDS = tuple(f.name for f in fields(ExperimentConfig))


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ConfigError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
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
        For ``options`` that is not a mapping, an unknown preset, strategy or field, or an
        invalid value.

    Examples
    --------
    >>> resolve_config({"dataset": "mnist"}, "paper-rotated").epochs
    3
    >>> resolve_config({"epochs": 1}, "paper-rotated").epochs     # explicit wins
    1
    >>> resolve_config({"strategy": "separate"}, "paper-rotated").optimizer  # its own recipe
    'adam'
    """
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options must be a dict of ExperimentConfig fields (None: not given), "
                          f"got {type(options).__name__}")
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(_FIELDS), key=repr)
    if unknown:
        raise ConfigError(f"unknown experiment option(s) {unknown}; known: {', '.join(_FIELDS)}")
    chosen = get_preset(preset) if preset is not None else None
    values = dict(chosen.values) if chosen else {}
    values.update(given)
    strategy = values.get("strategy", ExperimentConfig.strategy)
    check_strategy(strategy)
    recipe = dict(chosen.recipes.get(strategy, {})) if chosen else {}
    if "optimizer" not in given:
        values["optimizer"] = recipe.get("optimizer", default_optimizer(strategy))
    if "lr" not in given:
        published = "lr" in recipe and values["optimizer"] == recipe.get("optimizer")
        values["lr"] = recipe["lr"] if published else default_lr(strategy, values["optimizer"])
    return ExperimentConfig(**values)
