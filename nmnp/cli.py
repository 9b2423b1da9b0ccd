"""The command line: ``python -m nmnp run ...``.

Every problem with the user's input ends the program with a one-line message naming it and
a non-zero exit status, never a stack trace.

``run --checkpoint PATH`` saves the learner (the network, or any strategy) and the run after
every task (see :mod:`nmnp.checkpoint`); ``run --resume PATH`` continues such a run from its
last finished task with the configuration stored in it (options that would change the run are
refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from .atomic import (
    atomic_write_json, check_distinct_paths, check_output_path, check_paths_given,
    check_report_path, same_file,
)
from .console import one_line_warnings, printer, reader_gone
from .data.datasets import get_spec
from .errors import ConfigError, NmnpError, OutputError, TrainingError
from .experiment import (
    BENCHMARKS, INTERPOLATIONS, RESUMABLE_CHANGES, ExperimentConfig, epochs_text, format_row,
    run_experiment, stored_run_config, zero_forgetting,
)
from .interrupt import report_interrupt, sigterm_as_interrupt
from .kernels import BACKENDS, get_backend
from .kernels.backend import quiet_low_occupancy_warnings
from .plots import check_figure_path
from .presets import PRESETS, get_preset, resolve_config
from .strategies import STRATEGIES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, as for the library's own errors
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    d = ExperimentConfig()
    p.add_argument("--benchmark", choices=BENCHMARKS, default=d.benchmark,
                   help=f"how tasks differ: rotated images, permuted pixels or split classes "
                        f"(default {d.benchmark})")
    p.add_argument("--dataset", default=d.dataset,
                   help="fashion-mnist-subset (shipped, the default), fashion-mnist, mnist or kmnist")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's IDX files (default: searched for in "
                        "$NMNP_DATA, Debian's dataset folder, then the download cache)")
    p.add_argument("--tasks", type=int, default=d.tasks, help=f"number of tasks (default {d.tasks})")
    p.add_argument("--step", type=float, default=d.step,
                   help=f"degrees between rotated tasks (default {d.step:g})")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation,
                   help=f"rotation resampling (default {d.interpolation})")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"epochs per task (default {d.epochs}; the authors' protocol and "
                        "python -m nmnp.demo use 3)")
    p.add_argument("--max-steps", type=_positive_int, default=None,
                   help="cap on each task's optimiser steps over all its epochs (default: none)")
    p.add_argument("--lr", type=float, default=d.lr,
                   help=f"learning rate (default: the strategy's own, {d.lr:g} for crwn)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"samples per step (default {d.batch_size})")
    p.add_argument("--optimizer", default=d.optimizer,
                   help=f"rmsprop (the paper's), sgd or adam (default: the strategy's own, "
                        f"{d.optimizer} for crwn)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the network, the stream and the shuffling (default {d.seed})")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help=f"where the kernels run: numpy (the reference), cpu (Numba) or cuda "
                        f"(default {d.backend})")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all)")
    p.add_argument("--units", type=int, default=d.units, help="encoder units (FlyNet: 7840)")
    p.add_argument("--k", type=int, default=d.k, help="inputs per encoder unit (FlyNet: 7)")
    p.add_argument("--json", default=None,
                   help="write the results here (JSON; rewritten after each task, so an "
                        "interrupted run keeps the tasks it finished)")
    p.add_argument("--plot", default=None, help="write the accuracy figure here (.png, .pdf or .svg)")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but warnings and errors (no header, progress, rows or "
                        "summary): the results are in --json")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="save the learner (any --strategy) and the run here after every task "
                        "(atomic; refused if the file exists, or while another run writes it)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run stored in this checkpoint from its last finished task; "
                        "its configuration is used, and any run option given must agree with it "
                        "(only --data-dir, --threads and --skip-unchanged may differ); saving "
                        "continues there unless --checkpoint names another file. --json and --plot "
                        "are not stored in it: give them again")
    p.add_argument("--strategy", choices=tuple(STRATEGIES), default=None,
                   help="learning rule on the fixed encoder: crwn (the paper's Configurable Random "
                        "Weight Network: a context per task, the default), finetune, separate or "
                        "supsup (see nmnp.strategies)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="a published protocol (see nmnp.presets); flags given explicitly override it")
    p.add_argument("--download", action="store_true",
                   help="download the dataset into the cache if it is found nowhere")
    p.add_argument("--skip-unchanged", action=argparse.BooleanOptionalAction, default=None,
                   help=SKIP_UNCHANGED_HELP)
    # The parser records None ("not given") for every experiment option, so that a preset and
    # each strategy's own learning rate apply unless a flag says otherwise; the values above are
    # ExperimentConfig's, filled in by nmnp.presets.resolve_config.
    p.set_defaults(**{name: None for name in _CONFIG_OPTIONS})


#: The ExperimentConfig fields the run command takes as options.
_CONFIG_OPTIONS = (
    "benchmark", "dataset", "data_dir", "tasks", "step", "interpolation", "epochs", "max_steps",
    "lr", "batch_size", "optimizer", "seed", "backend", "threads", "units", "k", "strategy",
    "skip_unchanged",
)

#: ``--skip-unchanged``'s help, shared by ``run`` and ``compare``.
SKIP_UNCHANGED_HELP = (
    "copy a learned task's accuracy from its last evaluation instead of measuring it again when "
    "nothing its predictions read has changed (checked by SHA-256 of its learned arrays): one "
    "test pass per task instead of T(T+1)/2 for crwn, separate and supsup; finetune is always "
    "re-evaluated. Off by default: every entry of the accuracy matrix is measured"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``nmnp`` command line: the ``run`` and ``compare`` subcommands and their options."""
    from . import __version__

    parser = _Parser(prog="nmnp", description="Neuromodulated random-weight networks for continual learning.")
    parser.add_argument("--version", action="version", version=f"nmnp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="learn a stream of tasks and report the accuracy matrix")
    _add_run_arguments(run)
    from .compare import add_arguments as add_compare_arguments

    add_compare_arguments(sub.add_parser("compare", help="run several strategies on one stream, side by side"))
    return parser


def _config_from(args) -> ExperimentConfig:
    """Explicit flags, over the preset's values, over the defaults (nmnp.presets.resolve_config)."""
    return resolve_config({name: getattr(args, name) for name in _CONFIG_OPTIONS}, args.preset)


def check_rotation_options(args, config: ExperimentConfig) -> None:
    """ConfigError if ``--step`` or ``--interpolation`` is given for a benchmark that does not
    rotate: the option would be silently ignored, and the user surely meant something by it."""
    given = [f"--{name}" for name in ("step", "interpolation") if getattr(args, name) is not None]
    if given and config.benchmark != "rotated":
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f"{' and '.join(given)} only {verb} to the rotated benchmark, not "
                          f"{config.benchmark}")


def _given_options(args) -> set:
    """The experiment fields this command line sets: explicit flags and a preset's values."""
    given = {name for name in _CONFIG_OPTIONS if getattr(args, name) is not None}
    if args.preset is not None:
        preset = get_preset(args.preset)
        given |= set(preset.values) | ({"lr", "optimizer"} if preset.recipes else set())
    return given


def _resumed_config(args, path) -> ExperimentConfig:
    """The stored run's configuration; refuse command-line options that contradict it.

    Options left out take the stored values, so ``nmnp run --resume PATH`` alone is enough;
    repeating the original command with ``--resume PATH`` added works too.
    """
    stored = stored_run_config(path)
    given = _config_from(args)
    clashes = [
        f"--{name.replace('_', '-')} {getattr(given, name)!r} (stored {getattr(stored, name)!r})"
        for name in sorted(_given_options(args))
        if name not in RESUMABLE_CHANGES and getattr(given, name) != getattr(stored, name)
    ]
    if clashes:
        raise ConfigError(
            f"cannot resume {path} with options that change its run: {', '.join(clashes)}"
        )
    return dataclasses.replace(stored, **{
        name: getattr(given, name) for name in RESUMABLE_CHANGES if getattr(args, name) is not None
    })


def _expected_runtime(args, config: ExperimentConfig) -> str | None:
    """The preset's measured run time (with ``--skip-unchanged`` if given), when it applies
    to this run: the preset's protocol (no value overridden) on what it was measured with (a
    full 60,000-image dataset, the FlyNet network, the cpu backend); ``None`` otherwise."""
    flynet = ExperimentConfig()
    if (args.preset is None or args.resume or config.backend != "cpu"
            or get_spec(config.dataset).shipped or (config.units, config.k) != (flynet.units, flynet.k)):
        return None
    preset = get_preset(args.preset)
    if any(getattr(config, k) != v for k, v in preset.values.items()):
        return None
    if config.skip_unchanged:
        expected, how = preset.expected_runtime_skipping, " with --skip-unchanged"
    else:
        expected, how = preset.expected_runtime, ""
    return f"preset {preset.name}: expected run time{how} {expected} (see nmnp.presets)" if expected else None


def cmd_run(args) -> int:
    """``nmnp run``: build the stream, learn its tasks (resuming a checkpoint if asked), print
    the accuracy matrix and metrics, and write the JSON report and figure; returns 0."""
    check_run_paths(args)
    config = _resumed_config(args, args.resume) if args.resume is not None else _config_from(args)
    check_rotation_options(args, config)
    if config.data_dir is not None and get_spec(config.dataset).shipped:
        raise ConfigError(
            f"--data-dir is only for datasets read from files; {config.dataset} is shipped with nmnp"
        )
    get_backend(config.backend)  # an unusable backend (cuda without a GPU) fails now, before any data
    checkpoint = args.checkpoint if args.checkpoint is not None else args.resume
    # fail before hours of training, not after
    if args.json is not None:
        check_report_path(args.json, "--json")
    if args.plot is not None:
        check_figure_path(args.plot, "--plot")
    if checkpoint is not None:
        check_output_path(checkpoint)
    outputs = {"--json": args.json, "--plot": args.plot, "--checkpoint": args.checkpoint}
    if args.resume is not None and not (args.checkpoint is not None
                                        and same_file(args.checkpoint, args.resume)):
        outputs["--resume"] = args.resume  # read, then saved to after every task
    check_distinct_paths(outputs)
    if args.download:  # fetch into the cache now; the run then finds the files there
        from .data.datasets import load_dataset

        load_dataset(config.dataset, config.data_dir, download=True)
    say = printer(args.quiet)  # a closed pipe (`| head`) silences it; the run goes on
    say(f"nmnp run: {config.benchmark} {config.dataset}, {config.tasks} task(s), "
        f"{epochs_text(config)}, {config.strategy} ({config.optimizer} {config.lr:g}), "
        f"backend {config.backend}"
        + (f", preset {args.preset}" if args.preset else "")
        + (f", resuming {args.resume}" if args.resume else ""))
    expected = _expected_runtime(args, config)
    if expected:
        say(expected)
    elif args.preset and not args.resume and get_spec(config.dataset).shipped:
        say(f"note: preset {args.preset}'s protocol on the shipped {config.dataset} (a subset of the "
            "training images); the published figures used the full dataset: add --dataset "
            "fashion-mnist --download")
    partial = []  # whether --json holds the report of the tasks finished so far

    def save_so_far(report):
        # An interrupted or failing run keeps the rows it finished (with unfinished_tasks > 0).
        try:
            atomic_write_json(args.json, {**report, "preset": args.preset})
        except OutputError as err:  # the run goes on; the final write will try again
            print(f"nmnp run: warning: {err}", file=sys.stderr, flush=True)
            return
        partial.append(report["unfinished_tasks"])

    try:
        # A diverging run overflows before its loss turns NaN; train_task detects that and
        # stops with one line naming task and step, so NumPy's own warnings would only repeat it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = run_experiment(
                config,
                progress=False if args.quiet else None,
                on_task_end=lambda result, learner: say(format_row(result)),
                on_report=save_so_far if args.json is not None else None,
                checkpoint=checkpoint,
                resume=args.resume,
            )
    except (TrainingError, KeyboardInterrupt) as err:
        raise _with_what_was_kept(err, args, checkpoint, bool(partial)) from (
            None if isinstance(err, KeyboardInterrupt) else err)
    out["preset"] = args.preset  # as in compare's report (None: no preset)
    if args.resume is not None:
        before = out["resumed_from"]
        if before["tasks_done"] == config.tasks:
            say(f"{args.resume} already holds all {config.tasks} task(s): nothing left to train"
                + ("" if same_file(checkpoint, args.resume) else f", so {checkpoint} was not written"))
        else:
            say(f"resumed after task {before['tasks_done']} of {config.tasks}")
        if before["threads"] not in (None, out["threads"]):
            say(f"note: the run began on {before['threads']} thread(s) and went on with "
                f"{out['threads']}; results agree within rounding, not bit for bit (use --threads "
                f"{before['threads']} to match)")
    say(f"average accuracy {out['average_accuracy']:.4f}, forgetting {out['forgetting']:.4f}, "
        f"{out['samples_per_second']:,.0f} training samples/s on {out['threads']} thread(s)")
    if config.tasks > 1:
        say("earlier tasks' accuracies unchanged by later tasks: "
            + ("yes (every column identical)" if zero_forgetting(out_matrix(out)) else "NO")
            + _reuse_note(out))
    if args.json is not None:
        say(f"results: {write_report(args.json, out, checkpoint)}")
    if args.plot is not None:
        from .plots import plot_continual_run

        say(f"figure: {plot_continual_run(out_matrix(out), args.plot, title=_title(config))}")
    return 0


def check_run_paths(args) -> None:
    """ConfigError, before anything else, for a path option of ``run`` given an empty name
    (``--json ""``): it would otherwise be taken for "not given", or for the current folder."""
    check_paths_given({"--json": args.json, "--plot": args.plot, "--checkpoint": args.checkpoint,
                       "--resume": args.resume})
    check_paths_given({"--data-dir": args.data_dir}, "folder")


def _with_what_was_kept(err, args, checkpoint, partial_json: bool):
    """``err`` (a TrainingError or an interrupt) with a note on what survives it: the
    checkpoint and how to resume it (repeating --json and --plot, which it does not store),
    and a --json report of the tasks finished so far."""
    kept = []
    if checkpoint and os.path.exists(checkpoint) and isinstance(err, TrainingError):
        # resuming would repeat the same steps (the learning rate is part of the run)
        kept.append(f"{checkpoint} still holds every task finished before")
    elif checkpoint and os.path.exists(checkpoint):
        again = "".join(f" {flag} {path}" for flag, path in
                        (("--json", args.json), ("--plot", args.plot)) if path)
        kept.append(f"{checkpoint} holds every task finished before; continue with "
                    f"`nmnp run --resume {checkpoint}{again}`")
    if partial_json:
        kept.append(f"{args.json} holds the results of the tasks finished so far")
    if not kept and isinstance(err, KeyboardInterrupt):
        kept.append("nothing was saved (--checkpoint PATH makes a run resumable)")
    if not kept:
        return err
    prefix = f"{err}; " if err.args else ""
    return type(err)(prefix + "; ".join(kept))


def write_report(path, report: dict, checkpoint=None) -> str:
    """Write ``report`` as JSON to ``path`` (atomically) and return the path.

    When the write fails at the end of a long run (a full disk, say), the results must not be
    lost: the report then goes to standard output instead, and the OutputError raised after
    it says so, and where the run's checkpoint is if it has one.
    """
    try:
        return str(atomic_write_json(path, report))
    except OutputError as err:
        print(json.dumps(report, indent=2, allow_nan=False), flush=True)
        note = "; the report was printed above instead"
        if checkpoint and os.path.exists(checkpoint):
            note += f" (and {checkpoint} holds the run: `nmnp run --resume {checkpoint} --json PATH` writes it again)"
        raise OutputError(f"{err}{note}") from err


def _reuse_note(out: dict) -> str:
    """How many entries of the matrix ``--skip-unchanged`` copied rather than measured."""
    reused = out.get("reused_evaluations", 0)
    if not reused:
        return ""
    T = len(out["acc_matrix"])
    return (f"; {reused:,} of {T * (T + 1) // 2:,} entries copied, not re-measured, because "
            "the task's learned arrays were unchanged (--skip-unchanged)")


def out_matrix(out: dict):
    """The accuracy matrix (T, T) of a ``run`` JSON report, NaN above the diagonal."""
    from .continual.runner import ContinualResult

    return ContinualResult.from_dict(out).acc_matrix


def _title(config: ExperimentConfig) -> str:
    return f"{config.strategy} on {config.benchmark} {config.dataset}, {config.tasks} tasks"


def main(argv=None) -> int:
    """Run ``nmnp`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status: 0 done,
    2 for a library error (printed as one line, without a traceback), 130 after Ctrl-C and
    143 after SIGTERM.
    An option the parser refuses exits with status 2 (SystemExit) before anything runs."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # `nmnp` alone: say what it can do
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    quiet_low_occupancy_warnings()
    try:
        from .compare import cmd_compare

        with sigterm_as_interrupt(), one_line_warnings("nmnp"):
            return {"run": cmd_run, "compare": cmd_compare}[args.command](args)
    except NmnpError as err:
        print(f"nmnp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return report_interrupt("nmnp", err)
    except BrokenPipeError:  # the report printed after a failed write, to a closed pipe
        return reader_gone()


if __name__ == "__main__":
    sys.exit(main())
