"""Continual-learning strategies on one fixed sparse random encoder.

Every strategy is a *learner* with the protocol of :func:`nmnp.train.train_task` and
:func:`nmnp.continual.runner.run_stream`, built from the same
:class:`~nmnp.config.NetworkConfig`, so with one seed all of them see bit-for-bit the same
encoder and only the learning rule on top of it differs:

============  ==========================================  =====================  ===============
name          learned per task                            stored per task        FlyNet bytes
============  ==========================================  =====================  ===============
``crwn``      gains (n_units) + strength, on a fixed      n_units + 1 floats     31,364
              random readout (the paper's model)
``finetune``  one dense readout (W, b) shared by all      nothing (the shared    0 (+313,640
              tasks, retrained on each (lower bound)      readout is stored      shared)
                                                          once, overwritten)
``separate``  a dense readout (W, b) per task             n_out (n_units + 1)    313,640
              (upper bound)                               floats
``supsup``    a top-k binary mask over the fixed random   n_out n_units bits     9,800
              readout (Supermasks in Superposition)
============  ==========================================  =====================  ===============

Default training recipes
------------------------
Each strategy trains with its own optimiser and learning rate unless they are given
explicitly (``--optimizer`` / ``--lr`` on the command line apply to every strategy):
:data:`DEFAULT_OPTIMIZER`, and :data:`LEARNING_RATES` for the rate of each strategy under each
optimiser that was measured. ``crwn`` keeps the paper's RMSprop 0.01 and ``supsup`` SupSup's
RMSprop 1e-4; the dense readouts (``finetune``, ``separate``) use Adam 3e-4. The rates come
from a sweep on full Fashion-MNIST (one task, unrotated, one epoch, batch 128, seed 0; test
accuracy; crwn with RMSprop 0.01 scores 0.824 on the same run, with Adam 0.01 0.827),
which ``scripts/lr_sweep.py`` runs again (``results/lr-sweep.txt``, 2 threads):

* dense readout (``separate``; ``finetune`` is the same on its first task), RMSprop:
  1e-2 -> 0.782, 1e-3 -> 0.776, 3e-4 -> 0.788, 1e-4 -> 0.818, **5e-5 -> 0.826**,
  3e-5 -> 0.823, 1e-5 -> 0.801. Adam: 1e-3 -> 0.801, **3e-4 -> 0.852**, 1e-4 -> 0.843,
  3e-5 -> 0.825. With RMSprop the 78,410-parameter readout only ties the
  7,841-parameter context after one epoch, so it would not be the upper bound it stands for;
  with Adam it is 2.8 points above. The encoder's activity is non-negative with a large
  common component (each sample's 7,840 activities sum to about 7,600), so a per-weight step
  of ``lr`` moves a logit by thousands of times ``lr``: a dense readout needs rates far below
  crwn's, whose weights stay fixed and small.
* ``supsup`` (scores start within +-1/sqrt(n_units), about 0.011), RMSprop: 1e-2 -> 0.805,
  1e-3 -> 0.804, 3e-4 -> 0.808, **1e-4 -> 0.818**, 3e-5 -> 0.796, 1e-5 -> 0.740; 1e-4 is
  also the rate SupSup published.

An optimiser given without a learning rate gets the rate measured for it
(:func:`default_lr`), or the strategy's default rate when none was measured (give ``--lr``
then).

See ``nmnp/compare.py`` for the command that runs them side by side.
"""

from __future__ import annotations

from ..config import NetworkConfig
from ..errors import ConfigError
from ..optim import optimizer_class
from .base import ReadoutStrategy, StrategyTask
from .crwn import CRWN
from .finetune import FineTune
from .separate import Separate
from .supsup import SupSup

#: Strategy classes by name, in the order a comparison table lists them.
STRATEGIES = {"crwn": CRWN, "finetune": FineTune, "separate": Separate, "supsup": SupSup}

#: Optimiser of each strategy when none is given (see the module docstring).
DEFAULT_OPTIMIZER = {"crwn": "rmsprop", "finetune": "adam", "separate": "adam", "supsup": "rmsprop"}

#: Measured learning rate of each strategy under each optimiser (see the module docstring).
LEARNING_RATES = {
    "crwn": {"rmsprop": 1e-2, "adam": 1e-2},
    "finetune": {"adam": 3e-4, "rmsprop": 5e-5},
    "separate": {"adam": 3e-4, "rmsprop": 5e-5},
    "supsup": {"rmsprop": 1e-4},
}

#: Learning rate of each strategy with its default optimiser.
DEFAULT_LR = {name: LEARNING_RATES[name][opt] for name, opt in DEFAULT_OPTIMIZER.items()}


def check_strategy(name: str) -> str:
    """Return ``name`` if it is a known strategy; ConfigError naming the known ones if not."""
    if not isinstance(name, str) or name not in STRATEGIES:  # a list is not even hashable
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return name


def default_optimizer(name: str) -> str:
    """The optimiser strategy ``name`` uses when none is given."""
    return DEFAULT_OPTIMIZER[check_strategy(name)]


def default_lr(name: str, optimizer: str | None = None) -> float:
    """The learning rate strategy ``name`` uses with ``optimizer`` when none is given.

    The rate measured for that pair if there is one, else the strategy's default rate.
    ConfigError for an unknown strategy or optimiser name.
    """
    rates = LEARNING_RATES[check_strategy(name)]
    if optimizer is None:
        key = DEFAULT_OPTIMIZER[name]
    else:
        optimizer_class(optimizer)  # an unknown name fails here, not at the first step
        key = optimizer.lower()
    return rates.get(key, DEFAULT_LR[name])


def make_strategy(name: str, config: NetworkConfig, backend: str = "cpu"):
    """A fresh learner of strategy ``name`` on the fixed network of ``config``.

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the known ones).
    """
    return STRATEGIES[check_strategy(name)](config, backend)


__all__ = [
    "CRWN",
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZER",
    "LEARNING_RATES",
    "FineTune",
    "ReadoutStrategy",
    "STRATEGIES",
    "Separate",
    "StrategyTask",
    "SupSup",
    "check_strategy",
    "default_lr",
    "default_optimizer",
    "make_strategy",
]
