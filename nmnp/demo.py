"""``python -m nmnp.demo``: five rotated tasks, learned one after another, forgetting nothing.

Runs on the Fashion-MNIST subset shipped inside the package (no download), prints the
accuracy matrix as it grows, checks that no earlier task's accuracy moved, and writes a
figure. About half a minute on a 2-core laptop, Numba compilation on the first run included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from .atomic import check_paths_given
from .console import printer, reader_gone
from .errors import NmnpError
from .experiment import ExperimentConfig, format_row, run_experiment, zero_forgetting
from .interrupt import report_interrupt, sigterm_as_interrupt

#: The demo's protocol: the authors' rotated stream, on the shipped subset.
DEMO = ExperimentConfig(benchmark="rotated", dataset="fashion-mnist-subset", tasks=5, step=10.0, epochs=3)


def _default_output() -> str:
    """``nmnp-demo.png`` in the working folder, or in the temp folder if that is read-only."""
    folder = os.getcwd() if os.access(os.getcwd(), os.W_OK) else tempfile.gettempdir()
    return os.path.join(folder, "nmnp-demo.png")


def main(argv=None) -> int:
    """Run the demo with ``argv`` (default: ``sys.argv[1:]``); returns the exit status: 0 done,
    1 if an earlier task's accuracy moved, 2 for an error (one line), 130 or 143 when
    interrupted."""
    parser = argparse.ArgumentParser(prog="python -m nmnp.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="where to write the figure (.png, .pdf or .svg)")
    parser.add_argument("--backend", default="cpu", choices=("numpy", "cpu", "cuda"))
    args = parser.parse_args(argv)
    config = ExperimentConfig(**{**DEMO.to_dict(), "backend": args.backend})
    try:
        # `--out ""` is a mistake (an unset shell variable), not a request for the default
        check_paths_given({"--out": args.out})
        out = args.out if args.out is not None else _default_output()
        with sigterm_as_interrupt():
            return _run(config, out)
    except NmnpError as err:
        print(f"nmnp.demo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return report_interrupt("nmnp.demo", err)
    except BrokenPipeError:
        return reader_gone()


def _run(config: ExperimentConfig, out: str) -> int:
    """The demo itself: learn, print, check, draw; 0 when no earlier task's accuracy moved."""
    from .continual.runner import ContinualResult
    from .kernels import get_backend
    from .plots import check_figure_path, plot_continual_run

    check_figure_path(out, "--out")
    get_backend(config.backend)  # no usable GPU: one line now, before any header or work
    say = printer()  # a closed pipe (`| head`) silences it; the figure is still drawn
    say(f"nmnp demo: {config.tasks} rotated Fashion-MNIST tasks ({config.step:g} degrees apart), "
        f"{config.epochs} epochs each, shipped subset, backend {config.backend}")
    say("Each row: test accuracy of every task learned so far, right after learning the newest.")
    start = time.perf_counter()
    report = run_experiment(config, on_task_end=lambda result, learner: say(format_row(result)))
    wall = time.perf_counter() - start

    R = ContinualResult.from_dict(report).acc_matrix
    unchanged = zero_forgetting(R)
    say(
        "Earlier tasks' accuracies did not change as new tasks were learned (every column of "
        "the matrix is identical)." if unchanged else
        "WARNING: an earlier task's accuracy changed; this should be impossible."
    )
    say(f"Average accuracy over the {config.tasks} tasks: {report['average_accuracy']:.3f}")
    say(
        f"Training: {sum(report['train_seconds']):.1f} s in all "
        f"({report['samples_per_second']:,.0f} samples/s on {report['threads']} threads); "
        f"whole demo {wall:.1f} s."
    )
    say(
        f"Learned per task: {report['params_per_task']:,} parameters "
        f"({report['bytes_per_task'] / 1024:.1f} KiB); fixed random weights shared by all tasks: "
        f"{report['fixed_params']:,} parameters, regenerated from an "
        f"{report['fixed_bytes_to_regenerate']}-byte seed."
    )
    path = plot_continual_run(R, out, title="nmnp demo: 5 rotated Fashion-MNIST tasks, no forgetting")
    say(f"Figure: {path}")
    return 0 if unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
