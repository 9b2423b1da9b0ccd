"""Strategies side by side: ``python -m nmnp compare``.

Runs several strategies (:mod:`nmnp.strategies`) on the *same* task stream with the *same*
seed, so they share the fixed encoder, the data, the task order and the mini-batch order,
and differ only in what they learn. Each run goes through
:func:`nmnp.experiment.run_experiment`, exactly as ``python -m nmnp run --strategy NAME``
would, and the results are written as:

* a table on standard output: average accuracy, forgetting, backward transfer, bytes stored
  per task, shared learned bytes, training seconds;
* one JSON file (``--json``): per strategy the full run report (accuracy matrix, timings,
  storage, machine) and its metric summary (:func:`nmnp.continual.metrics.summarize`);
* one figure (``--plot``): each strategy's accuracy matrix, the average accuracy after each
  task, and the final average accuracy against the bytes stored per task (log scale).

``--json`` is written before each strategy starts and rewritten after it ends, with
``unfinished`` naming those still to run, and every strategy's run saves a checkpoint after
each of its tasks beside the report (``REPORT.STRATEGY.nmnp``, removed once the report holds
the strategy). ``--resume JSON`` continues such a report: the finished strategies are kept,
the one that was cut short continues from its checkpoint after its last finished task, and
the rest run with the stored options (:func:`run_comparison`'s ``finished`` and
``checkpoints``). One comparison at a time writes a report (:func:`nmnp.lock.exclusive`).

Example (the issue's acceptance run, a few minutes on 2 cores)::

    python -m nmnp compare --benchmark rotated --dataset fashion-mnist --tasks 5 \\
        --strategies crwn,finetune,separate,supsup --json /tmp/cmp.json --plot /tmp/cmp.png

Training recipes: each strategy uses its own optimiser and learning rate
(:data:`nmnp.strategies.DEFAULT_OPTIMIZER`, :data:`nmnp.strategies.LEARNING_RATES`, chosen by
the sweep documented there: RMSprop 0.01 for crwn, RMSprop 1e-4 for supsup, Adam 3e-4 for the
dense readouts) unless ``--optimizer`` or ``--lr`` is given, which then applies to every
strategy; a ``--preset`` supplies the recipe its protocol published for the strategy it was
published for (:func:`nmnp.presets.resolve_config`).

Fine-tuning stores nothing per task but keeps one shared readout; so that it can sit on the
figure's log axis, the x-axis is the learned bytes stored after all T tasks divided by T
(``bytes_per_task + shared_bytes / T``), which for every other strategy is just
``bytes_per_task``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from . import __version__
from .atomic import (
    atomic_write_bytes, atomic_write_json, check_distinct_paths, check_paths_given,
    check_report_path, same_file,
)
from .checkpoint import describe as describe_checkpoint
from .checkpoint import is_checkpoint
from .cli import SKIP_UNCHANGED_HELP, check_rotation_options, write_report
from .console import printer
from .continual import metrics
from .continual.runner import ContinualResult
from .data.datasets import get_spec, load_dataset
from .errors import CheckpointError, ConfigError, NmnpError, OutputError, TrainingError
from .experiment import (
    BENCHMARKS, INTERPOLATIONS, RESUMABLE_CHANGES, epochs_text, format_row, make_learner,
    run_experiment,
)
from .kernels import BACKENDS
from .lock import exclusive
from .plots import check_figure_path
from .presets import PRESETS, resolve_config
from .strategies import STRATEGIES, check_strategy

#: What ``--strategies`` runs when not given: all of them, in table order.
DEFAULT_STRATEGIES = tuple(STRATEGIES)

#: The ExperimentConfig fields ``compare`` takes as options (``strategy`` comes per run).
CONFIG_OPTIONS = (
    "benchmark", "dataset", "data_dir", "tasks", "step", "interpolation", "epochs", "max_steps",
    "lr", "batch_size", "optimizer", "seed", "backend", "threads", "units", "k", "skip_unchanged",
)  # fmt: skip


def parse_strategies(text) -> tuple[str, ...]:
    """``"crwn,supsup"`` (or a sequence of names) -> ``("crwn", "supsup")``; ConfigError for
    anything else, an unknown or repeated name, or none at all."""
    if isinstance(text, str):
        parts = text.split(",")
    else:
        try:
            parts = list(text) if not isinstance(text, bytes) else None
        except TypeError:  # not iterable: None, a number...
            parts = None
        if parts is None:
            raise ConfigError(f"strategies must be a comma-separated string or a list of names "
                              f"(from {', '.join(STRATEGIES)}), got {type(text).__name__}")
        for part in parts:
            if not isinstance(part, str):
                raise ConfigError(f"strategy names must be strings, got {part!r} in {parts!r}")
    names = tuple(s.strip() for s in parts if s.strip())
    if not names:
        raise ConfigError("no strategy given; choose from " + ", ".join(STRATEGIES))
    for name in names:
        check_strategy(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"strategy {repeated[0]!r} is listed more than once")
    return names


def storage_of(learner, n_tasks: int) -> dict:
    """:func:`~nmnp.continual.metrics.storage_report` plus the learned state shared by all
    tasks (fine-tuning's one readout) and the bytes per task the figure plots."""
    report = metrics.storage_report(
        learner.params_per_task, learner.bytes_per_task, learner.fixed_params,
        learner.fixed_bytes_to_regenerate, n_tasks,
    )  # fmt: skip
    shared = int(getattr(learner, "shared_bytes", 0))
    report["shared_learned_bytes"] = shared
    report["total_bytes"] += shared
    report["stored_bytes_per_task_amortised"] = report["bytes_per_task"] + shared / n_tasks
    return report


def strategy_checkpoint(report, strategy: str) -> str:
    """Where ``compare --json REPORT`` keeps ``strategy``'s checkpoint while it runs:
    ``REPORT.STRATEGY.nmnp`` (e.g. ``cmp.json.supsup.nmnp``)."""
    return f"{os.fspath(report)}.{strategy}.nmnp"


def run_comparison(
    options: dict,
    strategies=DEFAULT_STRATEGIES,
    *,
    preset: str | None = None,
    dataset=None,
    download: bool = False,
    progress: bool | None = None,
    on_task_end=None,
    on_strategy_start=None,
    on_strategy_end=None,
    finished: dict | None = None,
    checkpoints=None,
) -> dict:
    """Run ``strategies`` on one stream and return the comparison (JSON-ready).

    Parameters
    ----------
    options : dict
        :class:`~nmnp.experiment.ExperimentConfig` fields given explicitly (``None`` = not
        given); combined with ``preset`` by :func:`nmnp.presets.resolve_config`.
    strategies : sequence of str
    preset : str, optional
    dataset : Dataset, optional
        Loaded once from ``options`` when not given, and shared by every run.
    download : bool
        Download the dataset into the cache if it is found nowhere.
    progress : as in :func:`nmnp.train.train_task` (``None``: bars on a terminal, a line
        every 30 s in a log)
    on_task_end : called as ``on_task_end(strategy, result, learner)`` after each task
    on_strategy_start : called as ``on_strategy_start(strategy, config, comparison)`` before
        each run, with the comparison so far (``unfinished`` lists this strategy and those
        after it), so that a caller can save it before the run starts
    on_strategy_end : called as ``on_strategy_end(strategy, comparison)`` after each run, with
        the comparison so far (same keys as the return value; ``unfinished`` lists the
        strategies still to run), so that a caller can save it before the next run starts
    finished : dict, optional
        A comparison cut short (what ``on_strategy_end`` was given, or ``--json`` holds after
        an interruption): its strategies are kept and not run again. They must be the first
        of ``strategies``, in order, and have run with these options and preset (only
        ``data_dir``, ``threads`` and ``skip_unchanged`` may differ); otherwise ConfigError,
        before any training. Each strategy's run is deterministic, so the result is the one
        an uninterrupted comparison gives, timings aside.
    checkpoints : callable, optional
        ``checkpoints(strategy)`` is the path where that strategy's run saves a checkpoint
        after each task (:func:`nmnp.experiment.run_experiment`'s ``checkpoint``), e.g.
        ``lambda s: strategy_checkpoint("cmp.json", s)``. With ``finished``, the first
        strategy to run (the one the comparison cut short) continues from the checkpoint
        there if there is one (``run_experiment``'s ``resume``). Any other checkpoint found
        there is left over from an earlier comparison and is replaced; a file there that is
        not a checkpoint is refused by ``run_experiment``. Removing a finished strategy's
        checkpoint is the caller's (once its report is saved).

    Returns
    -------
    dict
        ``strategies`` (the order run), ``results`` (per strategy: ``report``, the full
        :func:`nmnp.experiment.run_experiment` report, ``summary`` and ``storage``), ``table``
        (one row per strategy), the common settings, and ``unfinished`` (empty here).

    Raises
    ------
    ConfigError
        For ``options`` that is not a dict, an unknown strategy, preset or invalid option,
        a callback that is not callable, or a ``finished`` comparison that cannot be
        continued: every configuration is built before the first run starts.
    """
    if not isinstance(options, Mapping):
        raise ConfigError(f"options must be a dict of ExperimentConfig fields (None: not given), "
                          f"got {type(options).__name__}")
    names = parse_strategies(strategies)
    if finished is not None and not isinstance(finished, dict):
        raise ConfigError(f"finished must be a comparison (a dict) or None, got {type(finished).__name__}")
    for hook_name, hook in (("on_task_end", on_task_end), ("on_strategy_start", on_strategy_start),
                            ("on_strategy_end", on_strategy_end)):
        if hook is not None and not callable(hook):
            raise ConfigError(f"{hook_name} must be callable or None, got {type(hook).__name__}")
    configs = {name: resolve_config({**options, "strategy": name}, preset) for name in names}
    first = configs[names[0]]
    common = first.to_dict()
    for key in ("strategy", "optimizer", "lr"):  # per strategy: see the table
        common.pop(key)
    results, rows, earlier_seconds = {}, [], 0.0
    if finished is not None:
        _check_continuation(finished, names, configs, common, preset)
        results.update(finished["results"])
        rows.extend(finished["table"])
        earlier_seconds = float(finished.get("wall_seconds", 0.0))
    if dataset is None and len(results) < len(names):
        dataset = load_dataset(first.dataset, first.data_dir, download=download)
    start = time.perf_counter()

    def comparison(unfinished) -> dict:
        return {
            "nmnp_version": __version__,
            "preset": preset,
            "options": dict(options),
            "settings": common,
            "strategies": list(results),
            "unfinished": list(unfinished),
            "table": list(rows),
            "results": dict(results),
            "wall_seconds": earlier_seconds + time.perf_counter() - start,
        }

    cut_short = next((name for name in names if name not in results), None)
    for i, name in enumerate(names):
        if name in results:
            continue
        config = configs[name]
        if on_strategy_start is not None:
            on_strategy_start(name, config, comparison(names[i:]))
        save_to = None if checkpoints is None else checkpoints(name)
        resume_from = None
        if save_to is not None and os.path.exists(save_to):
            if finished is not None and name == cut_short:
                resume_from = save_to
            else:
                _replace_leftover(save_to)
        learner = make_learner(config)  # its storage figures; the run's own when not resumed
        task_end = None if on_task_end is None else (
            lambda result, learner, name=name: on_task_end(name, result, learner))
        report = run_experiment(config, dataset=dataset,
                                learner=learner if resume_from is None else None,
                                resume=resume_from, checkpoint=save_to, progress=progress,
                                on_task_end=task_end)
        summary = metrics.summarize(ContinualResult.from_dict(report).acc_matrix)
        storage = storage_of(learner, summary["n_tasks"])
        results[name] = {"report": report, "summary": summary, "storage": storage}
        rows.append({
            "strategy": name,
            "optimizer": config.optimizer,
            "lr": config.lr,
            "average_accuracy": summary["average_accuracy"],
            "forgetting": summary["forgetting"],
            "backward_transfer": summary["backward_transfer"],
            "bytes_per_task": storage["bytes_per_task"],
            "shared_learned_bytes": storage["shared_learned_bytes"],
            "train_seconds": float(sum(report["train_seconds"])),
            "samples_per_second": float(report["samples_per_second"]),
            "reused_evaluations": int(report["reused_evaluations"]),
        })  # fmt: skip
        if on_strategy_end is not None:
            on_strategy_end(name, comparison(names[i + 1:]))
    return comparison([])


def _replace_leftover(path) -> None:
    """Remove the checkpoint at ``path``, left over from an earlier comparison, holding its
    lock (a run still writing it is not disturbed: ConfigError); a file there that is not a
    checkpoint is left for ``run_experiment`` to refuse by name."""
    if not is_checkpoint(path):
        return
    with exclusive(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise CheckpointError(f"cannot replace the left-over checkpoint {path} "
                                  f"({err.strerror or err})") from err


def _check_continuation(finished: dict, names, configs: dict, common: dict, preset) -> None:
    """Refuse to continue ``finished`` as a comparison it was not (see :func:`run_comparison`)."""
    missing = [k for k in ("strategies", "settings", "table", "results") if k not in finished]
    if missing:
        raise ConfigError(f"not a comparison written by nmnp compare: no {', '.join(missing)}")
    kinds = {"strategies": list, "settings": dict, "table": list, "results": dict}
    wrong = [k for k, kind in kinds.items() if not isinstance(finished[k], kind)]
    if not wrong and not all(isinstance(name, str) for name in finished["strategies"]):
        wrong.append("strategies")
    if not wrong and not all(isinstance(row, dict) for row in finished["table"]):
        wrong.append("table")
    if wrong:
        raise ConfigError(f"not a comparison written by nmnp compare: its {', '.join(wrong)} "
                          "entry is malformed")
    done = list(finished["strategies"])
    if [row.get("strategy") for row in finished["table"]] != done or set(finished["results"]) != set(done):
        raise ConfigError("not a comparison written by nmnp compare: its strategies, table and "
                          "results do not agree")
    for name in done:  # kept as they are, then drawn and tabled: a damaged one fails now
        entry = finished["results"][name]
        if not (isinstance(entry, dict) and all(k in entry for k in ("report", "summary", "storage"))):
            raise ConfigError(f"the comparison to continue holds an incomplete result for {name}")
        try:
            ContinualResult.from_dict(entry["report"])
        except ConfigError as err:
            raise ConfigError(f"the comparison to continue holds an invalid result for {name} "
                              f"({err})") from None
    if done != list(names[: len(done)]):
        raise ConfigError(
            f"the comparison to continue ran {', '.join(done)}; the strategies to run must "
            f"start with them, in that order (got {', '.join(names)})"
        )
    clashes = []
    if finished.get("preset") != preset:
        clashes.append(f"preset {preset!r} vs {finished.get('preset')!r}")
    stored = finished["settings"]
    # through JSON, as the stored settings were: a tuple and its list then compare equal
    for key, value in json.loads(json.dumps(common)).items():
        if key not in RESUMABLE_CHANGES and stored.get(key) != value:
            clashes.append(f"{key} {value!r} vs {stored.get(key)!r}")
    for row in finished["table"]:
        config = configs[row["strategy"]]
        if (row["optimizer"], row["lr"]) != (config.optimizer, config.lr):
            clashes.append(f"{row['strategy']}'s recipe {config.optimizer} {config.lr:g} vs "
                           f"{row['optimizer']} {row['lr']:g}")
    if clashes:
        raise ConfigError("cannot continue the comparison with different settings: "
                          + "; ".join(clashes) + " (given vs stored)")


def format_table(comparison: dict) -> str:
    """The comparison as a fixed-width text table, one line per strategy."""
    head = (f"{'strategy':<10} {'optimizer':<9} {'lr':>7} {'avg acc':>8} {'forget':>7} {'BWT':>7} "
            f"{'bytes/task':>11} {'shared B':>9} {'train s':>8} {'samples/s':>10}")
    lines = [head, "-" * len(head)]
    for r in comparison["table"]:
        lines.append(
            f"{r['strategy']:<10} {r['optimizer']:<9} {r['lr']:>7.0e} {r['average_accuracy']:>8.4f} "
            f"{r['forgetting']:>7.4f} {r['backward_transfer']:>7.4f} {r['bytes_per_task']:>11,} "
            f"{r['shared_learned_bytes']:>9,} {r['train_seconds']:>8.1f} {r['samples_per_second']:>10,.0f}"
        )
    return "\n".join(lines)


def plot_comparison(comparison: dict, path, title: str = "") -> str:
    """The comparison figure, saved at ``path`` (PNG, PDF or SVG by its extension); returns
    the path.

    Top row: each strategy's accuracy matrix. Bottom row: average accuracy over the tasks
    seen so far after each task, per strategy; final average accuracy against the learned
    bytes stored per task (log x; fine-tuning's shared readout amortised over the tasks).
    """
    from .plots import draw_accuracy_matrix, new_figure, save_figure

    names = comparison["strategies"]
    n = len(names)
    fig = new_figure(figsize=(max(10, 3.3 * n), 8), layout="constrained")
    grid = fig.add_gridspec(2, max(n, 2))
    image = None
    for i, name in enumerate(names):
        R = ContinualResult.from_dict(comparison["results"][name]["report"]).acc_matrix
        image = draw_accuracy_matrix(fig.add_subplot(grid[0, i]), R, title=name)
    if image is not None:
        fig.colorbar(image, ax=fig.axes[:n], fraction=0.02, label="test accuracy")
    half = max(n, 2) // 2
    curves = fig.add_subplot(grid[1, :half])
    costs = fig.add_subplot(grid[1, half:])
    for i, name in enumerate(names):
        color = f"C{i}"  # one colour per strategy in both panels
        summary = comparison["results"][name]["summary"]
        after = summary["accuracy_after_each_task"]
        curves.plot(range(1, len(after) + 1), after, marker="o", color=color, label=name)
        x = comparison["results"][name]["storage"]["stored_bytes_per_task_amortised"]
        costs.scatter([x], [summary["average_accuracy"]], s=60, color=color)
        costs.annotate(f"{name}\n{x:,.0f} B", (x, summary["average_accuracy"]),
                       textcoords="offset points", xytext=(6, 4), fontsize=8)
    T = len(comparison["results"][names[0]]["summary"]["accuracy_after_each_task"])
    curves.set_xticks(range(1, T + 1) if T <= 12 else np.linspace(1, T, 7).astype(int))
    curves.set_xlabel("tasks learned")
    curves.set_ylabel("average accuracy over tasks seen")
    curves.set_title("average accuracy after each task")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    costs.set_xscale("log")
    xs = [comparison["results"][name]["storage"]["stored_bytes_per_task_amortised"] for name in names]
    costs.set_xlim(max(min(xs), 1) / 2, max(max(xs), 1) * 4)  # room for the labels
    costs.margins(y=0.15)
    costs.set_xlabel("learned bytes stored per task (shared state / T added)")
    costs.set_ylabel("final average accuracy")
    costs.set_title("accuracy against memory per task")
    costs.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``compare`` command's options. Every experiment option defaults to ``None`` (not
    given) so that a preset's values apply unless the flag is given."""
    p.add_argument("--strategies", default=None,
                   help=f"comma-separated, from {', '.join(STRATEGIES)} (default: all)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="a published protocol (see nmnp.presets); explicit flags override it")
    p.add_argument("--benchmark", choices=BENCHMARKS, help="rotated (default), permuted or split")
    p.add_argument("--dataset", help="fashion-mnist-subset (shipped, default), fashion-mnist, mnist, kmnist")
    p.add_argument("--data-dir", help="folder holding the dataset's IDX files")
    p.add_argument("--download", action="store_true",
                   help="download the dataset into the cache if it is found nowhere")
    p.add_argument("--tasks", type=int, help="number of tasks (default 5)")
    p.add_argument("--step", type=float, help="degrees between rotated tasks (default 10)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, help="rotation resampling (default nearest)")
    p.add_argument("--epochs", type=int, help="epochs per task (default 1)")
    p.add_argument("--max-steps", type=int,
                   help="cap on each task's optimiser steps over all its epochs (default: none)")
    p.add_argument("--lr", type=float, help="learning rate for every strategy (default: each its own)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--optimizer", help="rmsprop, sgd or adam for every strategy (default: each its own)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--backend", choices=BACKENDS,
                   help="where every kernel runs: numpy, cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--units", type=int, help="encoder units (FlyNet: 7840)")
    p.add_argument("--k", type=int, help="inputs per encoder unit (FlyNet: 7)")
    p.add_argument("--skip-unchanged", action=argparse.BooleanOptionalAction, default=None,
                   help=SKIP_UNCHANGED_HELP)
    p.add_argument("--json", default=None,
                   help="write the comparison here (JSON), and again as each strategy starts and "
                        "ends; the strategy running is checkpointed beside it after every task")
    p.add_argument("--plot", default=None, help="write the comparison figure here (.png, .pdf or .svg)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the final table (no header, progress or per-task lines)")
    p.add_argument("--resume", default=None, metavar="JSON",
                   help="run the strategies that a comparison cut short (its --json report) did "
                        "not finish, with its options (the one cut short continues from its "
                        "checkpoint, JSON.STRATEGY.nmnp), and write the whole comparison back to "
                        "it (or to --json, leaving JSON as it was); any option given must agree "
                        "with it (only --data-dir, --threads and --skip-unchanged may differ)")


def read_comparison(path) -> dict:
    """The comparison that ``compare --json`` wrote at ``path``, to continue it.

    Raises
    ------
    ConfigError
        If ``path`` cannot be read, is not JSON, or is not a comparison that can be resumed
        (a run's report, or one written before comparisons stored their options).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--resume {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"--resume {path} is not a comparison report ({err})") from None
    if not isinstance(data, dict) or "unfinished" not in data:
        hint = (" (a report of nmnp run: a run continues from its --checkpoint, with nmnp run "
                "--resume)" if isinstance(data, dict) and "unfinished_tasks" in data else "")
        raise ConfigError(f"--resume {path} is not a comparison written by nmnp compare --json{hint}")
    if "options" not in data:
        raise ConfigError(f"--resume {path} was written by an nmnp that did not store a "
                          "comparison's options, so it cannot be continued")
    return data


def _resumed_settings(args, finished: dict) -> tuple[dict, list, str | None]:
    """(options, strategies, preset) of the comparison ``finished``; options given on the
    command line may only repeat them, or change :data:`~nmnp.experiment.RESUMABLE_CHANGES`."""
    stored = finished["options"]
    names = [*finished["strategies"], *finished["unfinished"]]
    clashes = [
        f"--{key.replace('_', '-')} {getattr(args, key)!r} (stored {stored.get(key)!r})"
        for key in CONFIG_OPTIONS
        if getattr(args, key) is not None and key not in RESUMABLE_CHANGES
        and getattr(args, key) != stored.get(key)
    ]
    if args.strategies is not None and list(parse_strategies(args.strategies)) != names:
        clashes.append(f"--strategies {args.strategies} (stored {','.join(names)})")
    if args.preset is not None and args.preset != finished.get("preset"):
        clashes.append(f"--preset {args.preset} (stored {finished.get('preset')!r})")
    if clashes:
        raise ConfigError(f"cannot resume {args.resume} with options that change its comparison: "
                          + ", ".join(clashes))
    options = {key: stored.get(key) for key in CONFIG_OPTIONS}
    options.update({key: getattr(args, key) for key in RESUMABLE_CHANGES
                    if getattr(args, key) is not None})
    return options, names, finished.get("preset")


def _check_checkpoint_paths(to_run, checkpoint_of, finished, resumed_report) -> None:
    """Before any work: ConfigError for a file at a strategy's checkpoint path (or, resuming,
    at the checkpoint the cut-short strategy continues from) that is not a checkpoint: it is
    the user's, and compare would need that path. A damaged checkpoint to continue from is
    named with what to do about it."""
    paths = [(name, checkpoint_of(name)) for name in to_run]
    if finished is not None and to_run:
        paths.append((to_run[0], strategy_checkpoint(resumed_report, to_run[0])))
    for name, path in paths:
        if os.path.exists(path) and not is_checkpoint(path):
            raise ConfigError(f"{path} exists and is not an nmnp checkpoint: compare keeps "
                              f"{name}'s checkpoint there; move it elsewhere")
    if finished is not None and to_run and os.path.exists(paths[-1][1]):
        try:
            describe_checkpoint(paths[-1][1])
        except CheckpointError as err:
            raise CheckpointError(f"{err}; delete it to run {to_run[0]} again from its first "
                                  "task") from None


def _prepare_checkpoints(to_run, checkpoint_of, finished, resumed_report) -> None:
    """Make the strategies' checkpoint paths ready, just before the first strategy starts
    (after every check and the dataset's loading, so nothing is replaced for a comparison
    that then fails to start).

    * A fresh comparison replaces the checkpoints an earlier one left for its strategies (its
      report is being replaced too), so a later ``--resume`` cannot pick up a stranger's run.
    * A resume written to another report (``--resume X --json Y``) replaces whatever Y's place
      holds for the cut-short strategy by X's checkpoint, if X has one, so that Y alone can be
      resumed again; X and its checkpoint are left as they were.
    """
    if finished is None:
        for name in to_run:
            _replace_leftover(checkpoint_of(name))
        return
    if not to_run:
        return
    cut = to_run[0]
    source, target = strategy_checkpoint(resumed_report, cut), checkpoint_of(cut)
    if same_file(source, target):
        return
    _replace_leftover(target)
    if os.path.exists(source):
        with exclusive(target):
            atomic_write_bytes(target, Path(source).read_bytes())


def _remove_checkpoint(path) -> None:
    """Remove a strategy's checkpoint once the report holds its results (a failure to remove
    it loses nothing: a later resume finds the strategy finished)."""
    with contextlib.suppress(OSError):
        os.remove(path)


def cmd_compare(args) -> int:
    """Run ``python -m nmnp compare``; every check happens before the first run."""
    # An empty name (`--json ""`) would otherwise pass for "not given", or for the current folder.
    check_paths_given({"--json": args.json, "--plot": args.plot, "--resume": args.resume})
    check_paths_given({"--data-dir": args.data_dir}, "folder")
    finished = read_comparison(args.resume) if args.resume is not None else None
    # a resumed comparison is written back where it was
    report = args.json if args.json is not None else args.resume
    if report is not None:
        check_report_path(report, "--json")
    if args.plot is not None:
        check_figure_path(args.plot, "--plot")
    check_distinct_paths({"--json": report, "--plot": args.plot})
    if finished is not None:
        options, names, preset = _resumed_settings(args, finished)
    else:
        options = {key: getattr(args, key) for key in CONFIG_OPTIONS}
        names = parse_strategies(args.strategies or DEFAULT_STRATEGIES)
        preset = args.preset
    configs = [resolve_config({**options, "strategy": s}, preset) for s in names]  # validate all
    check_rotation_options(args, configs[0])
    get_spec(configs[0].dataset)
    say = printer(args.quiet)  # a closed pipe (`| head`) silences it; the comparison goes on
    c = configs[0]
    say(f"nmnp compare: {', '.join(names)} on {c.benchmark} {c.dataset}, {c.tasks} task(s), "
        f"{epochs_text(c)}, seed {c.seed}" + (f", preset {preset}" if preset else "")
        + (f", resuming {args.resume}" if args.resume else ""))
    if finished is not None:
        say(f"kept from {args.resume}: {', '.join(finished['strategies']) or 'nothing'}; "
            f"to run: {', '.join(finished['unfinished']) or 'nothing'}")
    saved = list(finished["strategies"]) if finished is not None else []
    written = []  # whether the report was written: a resume needs it
    checkpoint_of = None if report is None else (lambda s: strategy_checkpoint(report, s))
    to_run = [n for n in names if finished is None or n not in finished["results"]]
    running, ran = [], []  # the strategy running now; those this process ran

    def write_so_far(so_far) -> bool:
        try:
            atomic_write_json(report, so_far)
        except OutputError as err:  # the comparison goes on; the final write will try again
            print(f"nmnp compare: warning: {err}", file=sys.stderr, flush=True)
            return False
        written.append(True)
        return True

    def start(name, config, so_far):
        if report is not None and not ran:  # the dataset is loaded: the first strategy starts
            _prepare_checkpoints(to_run, checkpoint_of, finished, args.resume)
        resumed = ""
        if finished is not None and name == to_run[0] and os.path.exists(checkpoint_of(name)):
            done = len(describe_checkpoint(checkpoint_of(name))["tasks"])
            resumed = f", continuing from {checkpoint_of(name)} after task {done} of {config.tasks}"
        say(f"-- {name} ({config.optimizer} {config.lr:g}){resumed}")
        running[:] = [name]
        ran.append(name)
        if report is not None:  # so that a strategy cut short can be resumed
            write_so_far(so_far)

    def save_so_far(name, so_far):
        # The finished strategies survive an interruption or a later strategy's failure.
        running.clear()
        if report is None or not so_far["unfinished"]:
            return
        if not write_so_far(so_far):
            return
        saved.append(name)
        _remove_checkpoint(checkpoint_of(name))  # the report holds the strategy now
        say(f"{name} saved to {report}; still to run: {', '.join(so_far['unfinished'])}")

    try:
        # One writer per report: a second compare on it (a resume started twice) is refused.
        with exclusive(report, "comparison report") if report is not None else contextlib.nullcontext():
            if report is not None:
                _check_checkpoint_paths(to_run, checkpoint_of, finished, args.resume)
            # As in `run`: a diverging strategy is reported once, by train_task, not by NumPy too.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                comparison = run_comparison(
                    options, names, preset=preset, download=args.download,
                    progress=False if args.quiet else None,
                    on_strategy_start=start,
                    on_task_end=lambda name, result, learner: say(f"{name:>9} " + format_row(result)),
                    on_strategy_end=save_so_far,
                    finished=finished,
                    checkpoints=checkpoint_of,
                )
            printer()(format_table(comparison))  # printed even with --quiet: it is the result
            if report is not None:
                say(f"results: {write_report(report, comparison)}")
                for name in ran:  # the report holds every strategy now
                    _remove_checkpoint(checkpoint_of(name))
    except (NmnpError, KeyboardInterrupt) as err:
        if written and not isinstance(err, OutputError):
            held = (f"the strategies that finished ({', '.join(saved)})" if saved
                    else "no finished strategy yet")
            cut = running[0] if running else None
            partly = (f", {cut} from its checkpoint {checkpoint_of(cut)}"
                      if cut is not None and is_checkpoint(checkpoint_of(cut)) else "")
            if isinstance(err, TrainingError) and cut is not None:
                # runs are deterministic and a resume keeps the options: it would diverge again
                partly += (f" (with the stored options, under which {cut} diverged: a new "
                           "comparison with other options, such as a smaller --lr, is needed "
                           "for it)")
            note = (f"{report} holds {held}; `nmnp compare --resume {report}` runs the rest"
                    f"{partly}")
            if isinstance(err, KeyboardInterrupt):
                raise type(err)(note) from None
            raise type(err)(f"{err}; {note}") from err
        raise
    if args.plot is not None:
        title = f"{c.benchmark} {c.dataset}, {c.tasks} tasks, {epochs_text(c)}, seed {c.seed}"
        say(f"figure: {plot_comparison(comparison, args.plot, title)}")
    return 0
