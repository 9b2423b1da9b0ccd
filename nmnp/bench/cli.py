"""The ``python -m nmnp.bench`` command line: options, the report file and the figure."""

from __future__ import annotations

import argparse
import json
import sys

from ..atomic import atomic_write_json, check_distinct_paths, check_paths_given, check_report_path
from ..config import NetworkConfig
from ..console import reader_gone
from ..errors import ConfigError, NmnpError
from ..interrupt import report_interrupt, sigterm_as_interrupt
from ..kernels.backend import BACKENDS, quiet_low_occupancy_warnings
from ..plots import check_figure_path
from ..system import describe_machine
from .memory import measure_demo_memory
from .report import run_bench
from .roofline import inference_flops_per_sample


def _batch_size_list(text: str) -> list[int]:
    """"1,32,128" -> [1, 32, 128]; argparse reports anything else as a usage error."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, got {text!r}")
    return sizes


def _backend_list(text: str) -> list[str]:
    """"numpy,cpu" -> ["numpy", "cpu"]; an unknown or repeated name is a usage error (a
    known backend that cannot run here, cuda without a GPU, is skipped with the reason)."""
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r} in {text!r}; "
                                         f"choose from {', '.join(BACKENDS)}")
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"a backend is named twice in {text!r}")
    return names


def _whole_number(minimum: int):
    """An argparse type: a whole number of at least ``minimum``, anything else a usage error."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
        return n

    return parse


def _thread_setting(text: str) -> str | int:
    """'both' (1 and all), 'all' or a whole number of at least 1; anything else is a usage
    error. A number above Numba's thread count is refused when the bench starts."""
    if text in ("both", "all"):
        return text
    try:
        return _whole_number(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'both', 'all' or a whole number of at least 1, "
                                         f"got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m nmnp.bench`` command line: its options, defaults and help."""
    p = argparse.ArgumentParser(
        prog="python -m nmnp.bench",
        description="How fast nmnp trains and infers, and how close to the machine's limit.")
    p.add_argument("--backends", "--backend", type=_backend_list, default="numpy,cpu,cuda",
                   help="comma-separated (default numpy,cpu,cuda; cuda is skipped with the reason when no GPU)")
    p.add_argument("--batch-sizes", type=_batch_size_list, default="1,32,128,1024")
    p.add_argument("--threads", type=_thread_setting, default="both",
                   help="'both' (1 and all, the default), 'all' or a number")
    p.add_argument("--repeats", type=_whole_number(1), default=7)
    p.add_argument("--steps", type=_whole_number(1), default=16, help="training steps per timed repeat (at most)")
    p.add_argument("--samples", type=_whole_number(1), default=4096, help="samples per timed repeat (at most)")
    p.add_argument("--inference-batch", "--inference-batches", type=_batch_size_list, default="128,1024",
                   help="comma-separated batch sizes for the inference section (default 128,1024)")
    p.add_argument("--evaluate-samples", type=_whole_number(0), default=10_000,
                   help="set size for the evaluate() section (default 10,000; 0 skips it)")
    p.add_argument("--units", type=_whole_number(1), default=None, help="encoder units (default: FlyNet's 7840)")
    p.add_argument("--scaling", action="store_true", help="also run the scaling tables")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch comparison")
    p.add_argument("--demo-memory", action="store_true",
                   help="only run the demo in a child process and report its peak memory")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--plot", default=None,
                   help="draw the scaling tables into this PNG (needs --scaling or --from-json)")
    p.add_argument("--from-json", default=None,
                   help="measure nothing: read a report written by --json and draw its --plot")
    return p


def plot_report(report: dict, path: str) -> str:
    """Draw ``report["scaling"]`` with :func:`nmnp.plots.plot_scaling`; returns the path."""
    from ..plots import plot_scaling

    if not isinstance(report, dict) or "scaling" not in report:
        raise ConfigError("this report has no scaling tables: run the bench with --scaling")
    try:
        config = NetworkConfig.from_dict(report["config"])
        m = report.get("machine", {})
        title = (f"nmnp bench, cpu backend, {report['scaling']['threads']} threads, {m.get('cpu', '?')}"
                 f"{' (sgemm %.1f GFLOP/s at the start)' % report['peaks']['sgemm_gflops'] if 'peaks' in report else ''}")
        return plot_scaling(report["scaling"], path, lambda T: inference_flops_per_sample(config, T), title)
    except (KeyError, TypeError, ValueError, IndexError) as err:  # edited or truncated by hand
        raise ConfigError(f"the report's scaling tables are incomplete or malformed ({type(err).__name__}: {err})") from err


def read_report(path: str) -> dict:
    """A report written by ``--json``, or ConfigError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as err:
        raise ConfigError(f"cannot read bench report {path!r}: {err.strerror}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path!r} is not a bench report written by --json: {err}") from err


def main(argv=None) -> int:
    """Run the bench with ``argv`` (default: ``sys.argv[1:]``); returns the exit status: 0 done,
    2 for a library error (printed as one line), 130 or 143 when interrupted (no report is
    written then). An option the parser refuses exits with status 2 (SystemExit) before
    anything is measured."""
    args = build_parser().parse_args(argv)
    quiet_low_occupancy_warnings()
    try:
        # `--json ""` (an unset shell variable) must not pass for "not given"
        check_paths_given({"--json": args.json, "--plot": args.plot, "--from-json": args.from_json})
        if args.from_json is not None and args.plot is None:
            raise ConfigError("--from-json only draws a figure: give --plot PATH as well")
        if args.plot is not None and not (args.scaling or args.from_json is not None):
            raise ConfigError("--plot draws the scaling tables: add --scaling (or use --from-json)")
        if args.json is not None:  # fail before minutes of measuring, not after
            check_report_path(args.json, "--json")
        if args.plot is not None:
            check_figure_path(args.plot, "--plot")
        check_distinct_paths({"--from-json": args.from_json, "--json": args.json, "--plot": args.plot})
        if args.from_json is not None:
            print(f"figure: {plot_report(read_report(args.from_json), args.plot)}")
            return 0
        if args.demo_memory:
            out = {"machine": describe_machine(), "demo": measure_demo_memory()}
            print(f"python -m nmnp.demo: peak resident memory {out['demo']['peak_rss_bytes'] / 2**20:,.0f} MiB, "
                  f"{out['demo']['seconds']:.1f} s (machine: {out['machine']['cpu']}, {out['machine']['cores']} cores)")
        else:
            with sigterm_as_interrupt():
                out = run_bench(args)
        if args.json is not None:
            print(f"\nresults: {atomic_write_json(args.json, out)}")
        if args.plot is not None:
            print(f"figure: {plot_report(out, args.plot)}")
    except NmnpError as err:
        print(f"nmnp.bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # nothing is written: a report must come from one whole run
        return report_interrupt("nmnp.bench", err)
    except BrokenPipeError:  # the reader of the printed report went away
        return reader_gone()
    return 0
