"""The full bench run: every section in turn, printed as it is measured and kept in one report.

:func:`run_bench` returns the report that ``--json`` writes: ``machine``, ``config``,
``repeats``, ``peaks``, then one entry per section (``training``, ``inference``,
``pytorch_inference``, ``evaluate``, ``pytorch``, ``ratios``, ``paired``, ``targets`` and,
with ``--scaling``, ``scaling``).
"""

from __future__ import annotations

from ..config import NetworkConfig
from ..errors import BackendError, ConfigError
from ..system import describe_machine, set_threads
from .lines import dense_many_tasks_line, fmt_rate, many_tasks_line
from .paired import run_paired
from .pytorch import measure_torch_dense, measure_torch_dense_inference
from .roofline import measure_peaks, training_flops_per_sample, training_roofline
from .runners import measure_evaluate, measure_inference, measure_training, measure_training_cuda
from .scaling import run_scaling
from .targets import target_checks


def _steps(args, batch_size: int) -> int:
    """Training steps per timed repeat: ``--steps``, fewer when ``--samples`` caps the work."""
    return max(1, min(args.steps, (args.samples // batch_size) or 1))


def run_bench(args, say=print) -> dict:
    """Measure every section that ``args`` (from :func:`~nmnp.bench.cli.build_parser`) asks
    for, print each figure through ``say`` as it comes, and return the whole report."""
    backends = args.backends
    all_threads = set_threads(None)
    if isinstance(args.threads, int) and args.threads > all_threads:  # refuse before measuring
        raise ConfigError(f"--threads {args.threads} exceeds the {all_threads} threads Numba was started with")
    thread_counts = {"both": sorted({1, all_threads}), "all": [all_threads]}.get(args.threads, [args.threads])
    config = NetworkConfig.flynet() if not args.units else NetworkConfig(784, args.units, 7, 10, 0)
    out = {"machine": describe_machine(), "config": config.to_dict(), "repeats": args.repeats}

    say("nmnp bench, FlyNet preset" if not args.units else f"nmnp bench, {args.units} units")
    m = out["machine"]
    say(f"machine: {m['cpu']}, {m['cores']} cores, SIMD {'/'.join(m['simd']) or 'n/a'}; "
        f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']}; "
        f"load average {m['load_average_1min']:.2f} at start")
    peaks = out["peaks"] = measure_peaks(args.repeats)
    say(f"measured peaks ({all_threads} threads): sgemm {peaks['sgemm_gflops']:.1f} GFLOP/s, "
        f"streaming read {peaks['stream_gbs']:.1f} GB/s")
    say(f"work per training sample: {training_flops_per_sample(config):,} flops (see training_flops_per_sample)")

    out["training"] = training_section(args, config, backends, thread_counts, all_threads, peaks, say)
    out["inference"], dense = inference_section(args, config, backends, all_threads, peaks, say)
    if dense:
        out["pytorch_inference"] = dense
    if args.evaluate_samples:
        out["evaluate"] = evaluate_section(args, config, backends, say)
    if args.torch:
        out["pytorch"] = pytorch_training_section(args, config, all_threads, say)
    out["ratios"] = training_ratios(out["training"], out.get("pytorch") or [], args.batch_sizes, all_threads)
    if out["ratios"]:
        say("\nratios measured in this run (medians): "
            + ", ".join(f"{k} = {v:.1f}x" for k, v in out["ratios"].items()))
    out["paired"] = run_paired(args, config, backends, args.batch_sizes, all_threads, say)
    out["targets"] = target_checks(out, all_threads)
    if out["targets"]:
        say(f"\nspeed targets (batch 128, {all_threads} threads): the figure each is judged on")
        width = max(len(t["target"]) for t in out["targets"])
        for t in out["targets"]:
            say(f"  {t['target']:<{width}}  {t['measured']:<46} {'met' if t['met'] else 'NOT met'}")
    if args.scaling:
        out["scaling"] = run_scaling(args, all_threads, say)
    return out


def training_section(args, config, backends, thread_counts, all_threads: int, peaks: dict, say) -> list[dict]:
    """Training samples/s per backend, thread count and batch size, each host figure with its
    share of :func:`~nmnp.bench.roofline.training_roofline`. A backend that cannot run here
    (cuda without a GPU) is reported as skipped, with the reason. Every thread is in use
    again when it returns."""
    results = []
    say("\ntraining samples/s: median [min .. max]")
    try:
        for backend in backends:
            # the GPU does not use the CPU thread count: measure it once
            for threads in (thread_counts if backend != "cuda" else [all_threads]):
                set_threads(threads)
                try:
                    for bs in args.batch_sizes:
                        if backend == "cuda":
                            r = measure_training_cuda(config, bs, args.repeats, _steps(args, bs))
                        else:
                            r = measure_training(backend, config, bs, args.repeats, _steps(args, bs))
                        r.update(backend=backend, threads=threads, batch_size=bs)
                        if backend != "cuda":  # the roofline's peaks are the CPU's
                            limit = training_roofline(config, bs, peaks, threads, all_threads)
                            r.update(roofline_samples_per_second=limit,
                                     roofline_fraction=r["samples_per_second"]["median"] / limit)
                        results.append(r)
                        say(_training_line(r))
                except BackendError as err:
                    say(f"  {backend}: skipped ({err})")
                    break
    finally:
        set_threads(all_threads)
    return results


def _training_line(r: dict) -> str:
    """One figure of :func:`training_section` as printed."""
    bs = r["batch_size"]
    if r["backend"] == "cuda":
        t = r["transfers"]
        return (f"   cuda {'(simulator) ' if r['simulator'] else ''}batch {bs:>5}: "
                f"{fmt_rate(r['samples_per_second'])}  data resident, {r['launches_per_step']} launches/step "
                f"(host queues them in {r['queue_seconds_per_step']['median'] * 1e6:.0f} us); "
                f"upload once {t.get('upload_seconds', float('nan')) * 1e3:.1f} ms "
                f"({t.get('upload_bytes', 0) / 2**20:.1f} MiB), metrics per epoch "
                f"{t.get('metrics_seconds', float('nan')) * 1e3:.2f} ms")
    return (f"  {r['backend']:>5} {r['threads']:>2} thr  batch {bs:>5}: {fmt_rate(r['samples_per_second'])}"
            f"   {r['roofline_fraction']:6.1%} of roofline ({r['roofline_samples_per_second']:,.0f}/s)")


def inference_section(args, config, backends, all_threads: int, peaks: dict, say) -> tuple[list, list]:
    """Inference samples/s of one and of 36 tasks per ``--inference-batch`` and backend, and
    the authors' dense formulation's when PyTorch is installed: (nmnp's, PyTorch's)."""
    results, dense_results = [], []
    say(f"\ninference samples/s ({all_threads} threads): median [min .. max]")
    for bs in args.inference_batch:
        for backend in backends:
            for n_tasks in (1, 36):
                try:
                    r = measure_inference(backend, config, bs, n_tasks, args.repeats)
                except BackendError:
                    break
                r.update(backend=backend, tasks=n_tasks, batch_size=bs)
                results.append(r)
                say(f"  {backend:>5} batch {bs:>5} {n_tasks:>3} task(s): {fmt_rate(r['samples_per_second'])}")
                if backend == "cuda":  # what the class ids on the device save
                    r["logits_to_host"] = measure_inference(backend, config, bs, n_tasks, args.repeats,
                                                            via="task_logits")
                    say(f"  {backend:>5} batch {bs:>5} {n_tasks:>3} task(s), logits to the host: "
                        f"{fmt_rate(r['logits_to_host']['samples_per_second'])}")
            pair = [r for r in results if r["backend"] == backend and r["batch_size"] == bs]
            if len(pair) == 2:
                say(f"  {backend:>5} batch {bs:>5} " + many_tasks_line(config, pair, peaks, backend != "cuda"))
        if args.torch:
            dense = []
            for n_tasks in (1, 36):
                r = measure_torch_dense_inference(config, bs, n_tasks, args.repeats, all_threads)
                if r is None:
                    break
                r.update(tasks=n_tasks, batch_size=bs, threads=all_threads)
                dense.append(r)
                say(f"  torch dense batch {bs:>5} {n_tasks:>3} task(s): {fmt_rate(r['samples_per_second'])}")
            if dense:
                dense_results.extend(dense)
                cpu_many = [r for r in results if r["backend"] == "cpu" and r["batch_size"] == bs and r["tasks"] == 36]
                say(f"  torch dense batch {bs:>5} " + dense_many_tasks_line(config, dense, cpu_many[:1]))
    return results, dense_results


def evaluate_section(args, config, backends, say) -> list[dict]:
    """``net.evaluate`` samples/s of one task on ``--evaluate-samples`` samples per backend;
    on cuda also the generic loop that copies the logits back to the host."""
    results = []
    say(f"\nevaluate(): one task on {args.evaluate_samples:,} samples, samples/s: median [min .. max]")
    for backend in backends:
        for generic in ((False, True) if backend == "cuda" else (False,)):
            try:
                r = measure_evaluate(backend, config, args.evaluate_samples, args.repeats, generic)
            except BackendError:
                break
            r.update(backend=backend)
            results.append(r)
            how = "per 1,024 samples, logits to the host" if generic else "evaluate()"
            say(f"  {backend:>5} {how:>37}: {fmt_rate(r['samples_per_second'])}")
    return results


def pytorch_training_section(args, config, all_threads: int, say) -> list[dict]:
    """Training samples/s of the authors' dense formulation in PyTorch at each batch size;
    empty, with a line saying so, when PyTorch is not installed."""
    results = []
    for bs in args.batch_sizes:
        r = measure_torch_dense(config, bs, args.repeats, _steps(args, bs), all_threads)
        if r is None:
            say("\npytorch: not installed, dense comparison skipped")
            break
        r.update(batch_size=bs, threads=all_threads)
        if not results:
            say(f"\nPyTorch {r['torch']}, the authors' dense formulation: training samples/s, median [min .. max]")
        results.append(r)
        say(f"  torch dense {all_threads} thr batch {bs:>5}: {fmt_rate(r['samples_per_second'])}")
    return results


def training_ratios(training: list, pytorch: list, batch_sizes, threads: int) -> dict:
    """How many times faster one training figure is than another, per batch size, at
    ``threads`` threads: ``cpu/numpy``, ``cuda/cpu`` and ``cpu/torch-dense``, where both were
    measured. These compare sections measured minutes apart; the paired section does not."""
    fast = {(r["backend"], r["threads"], r["batch_size"]): r["samples_per_second"]["median"] for r in training}
    ratios = {}
    for bs in batch_sizes:
        cpu = fast.get(("cpu", threads, bs))
        if cpu and ("numpy", threads, bs) in fast:
            ratios[f"cpu/numpy batch {bs}"] = cpu / fast[("numpy", threads, bs)]
        if cpu and ("cuda", threads, bs) in fast:
            ratios[f"cuda/cpu batch {bs}"] = fast[("cuda", threads, bs)] / cpu
    for r in pytorch:
        cpu = fast.get(("cpu", threads, r["batch_size"]))
        if cpu:
            ratios[f"cpu/torch-dense batch {r['batch_size']}"] = cpu / r["samples_per_second"]["median"]
    return ratios
