"""The command line: ``python -m nmnp run ...``.

Every problem with the user's input ends the program with a one-line message naming it and
a non-zero exit status, never a stack trace.
"""

from __future__ import annotations

import argparse
import sys

from .atomic import atomic_write_json, check_output_path
from .errors import NmnpError
from .experiment import BENCHMARKS, INTERPOLATIONS, ExperimentConfig, format_row, run_experiment, zero_forgetting
from .kernels import BACKENDS


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
    p.add_argument("--benchmark", choices=BENCHMARKS, default=d.benchmark)
    p.add_argument("--dataset", default=d.dataset,
                   help="fashion-mnist-subset (shipped, the default), fashion-mnist, mnist or kmnist")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's IDX files")
    p.add_argument("--tasks", type=int, default=d.tasks, help="number of tasks (>= 1)")
    p.add_argument("--step", type=float, default=d.step, help="degrees between rotated tasks")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default=d.interpolation)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", default=d.optimizer, help="rmsprop (the paper's), sgd or adam")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backend", choices=BACKENDS, default=d.backend)
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all)")
    p.add_argument("--units", type=int, default=d.units, help="encoder units (FlyNet: 7840)")
    p.add_argument("--k", type=int, default=d.k, help="inputs per encoder unit (FlyNet: 7)")
    p.add_argument("--json", default=None, help="write the results here (JSON)")
    p.add_argument("--plot", default=None, help="write the accuracy figure here (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-task lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nmnp", description="Neuromodulated random-weight networks for continual learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="learn a stream of tasks and report the accuracy matrix")
    _add_run_arguments(run)
    return parser


def _config_from(args) -> ExperimentConfig:
    return ExperimentConfig(
        benchmark=args.benchmark, dataset=args.dataset, data_dir=args.data_dir, tasks=args.tasks,
        step=args.step, interpolation=args.interpolation, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, optimizer=args.optimizer, seed=args.seed, backend=args.backend,
        threads=args.threads, units=args.units, k=args.k,
    )


def cmd_run(args) -> int:
    config = _config_from(args)
    for path in (args.json, args.plot):  # fail before hours of training, not after
        if path:
            check_output_path(path)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"nmnp run: {config.benchmark} {config.dataset}, {config.tasks} task(s), "
        f"{config.epochs} epoch(s), backend {config.backend}")
    out = run_experiment(
        config,
        progress=False if args.quiet else None,
        on_task_end=lambda result, learner: say(format_row(result)),
    )
    say(f"average accuracy {out['average_accuracy']:.4f}, forgetting {out['forgetting']:.4f}, "
        f"{out['samples_per_second']:,.0f} training samples/s on {out['threads']} thread(s)")
    if config.tasks > 1:
        say("earlier tasks' accuracies unchanged by later tasks: "
            + ("yes (every column identical)" if zero_forgetting(out_matrix(out)) else "NO"))
    if args.json:
        say(f"results: {atomic_write_json(args.json, out)}")
    if args.plot:
        from .plots import plot_continual_run

        say(f"figure: {plot_continual_run(out_matrix(out), args.plot, title=_title(config))}")
    return 0


def out_matrix(out: dict):
    from .continual.runner import ContinualResult

    return ContinualResult.from_dict(out).acc_matrix


def _title(config: ExperimentConfig) -> str:
    return f"{config.strategy} on {config.benchmark} {config.dataset}, {config.tasks} tasks"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run}[args.command](args)
    except NmnpError as err:
        print(f"nmnp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nmnp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
