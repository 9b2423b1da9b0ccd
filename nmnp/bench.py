"""``python -m nmnp.bench``: how fast nmnp trains and infers, and how close to the machine's limit.

Every figure is a median over repeats (with min and max), measured after a warm-up that
compiles the JIT kernels, and printed next to the machine, the thread count and the library
versions. Sections:

* peaks: single-precision matrix-multiply GFLOP/s (BLAS) and streaming read GB/s, measured here;
* training: samples/s through forward, backward and the optimiser step, per backend, batch
  size and thread count, with a roofline line (work per sample against the measured peaks);
* inference: one task, and 36 tasks evaluated on the same batch, at each ``--inference-batch``
  (a host batch in, class ids out; on cuda also with the logits copied back, as before);
* evaluate: ``net.evaluate`` of one task on a 10,000-sample set (``--evaluate-samples``), the
  call the continual runner makes after every task;
* scaling (``--scaling``): training time against encoder width and batch size, and the time
  of evaluating T tasks against T; ``--plot PATH`` draws these tables, and ``--from-json
  REPORT --plot PATH`` redraws them from a saved report without measuring anything;
* pytorch: the authors' dense formulation, if PyTorch happens to be installed: its training
  at each batch size, and its inference of one and of 36 tasks at each ``--inference-batch``;
* paired: the cpu backend against training from a cached encoded set, numpy and PyTorch at
  batch 128, every repeat running each side back to back, so that a change in a shared
  machine's speed cancels out of the ratios;
* targets: each speed target of the cpu backend (:data:`TARGETS`), the figure of this run it
  is judged on, and whether it is met (:func:`target_checks`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .config import NetworkConfig
from .errors import BackendError, ConfigError, NmnpError
from .kernels.backend import quiet_low_occupancy_warnings
from .model import ModulatedNetwork
from .optim import make_optimizer
from .system import describe_machine, set_threads

# ----------------------------------------------------------------------------- work counts


def training_flops_per_sample(config: NetworkConfig) -> int:
    """Arithmetic operations one training sample needs at minimum (float adds/multiplies).

    Encoder: ``n k`` adds for the gather-sums, ``2 n`` for centring and ReLU. Readout
    forward: ``n`` to modulate plus ``2 n n_out`` multiply-adds. Backward: ``2 n n_out`` for
    ``g = dlogits W`` and ``2 n`` for ``dc = s sum_b g h``. The softmax and the optimiser are
    O(n_out) and O(n / batch) per sample and are left out. FlyNet: 407,680.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    return n * k + 2 * n + n + 2 * n * o + 2 * n * o + 2 * n


def training_bytes_per_sample(config: NetworkConfig, batch_size: int) -> float:
    """Bytes one training sample must move from memory at minimum (float32).

    The sample's input (``4 n_in``) and label, plus its share of what every step reads
    once: the encoder indices (``4 n k``), the readout (``4 n n_out``) and the context
    (``4 n``, read and written) divided by the batch size.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    shared = 4 * n * k + 4 * n * o + 2 * 4 * n
    return 4 * config.n_inputs + 8 + shared / batch_size


def inference_flops_per_sample(config: NetworkConfig, n_tasks: int = 1) -> int:
    """Arithmetic operations one sample's inference needs for ``n_tasks`` tasks.

    The encoder runs once, whatever the number of tasks: ``n k + 2 n`` (as in
    :func:`training_flops_per_sample`). Each task then modulates (``n``) and reads out
    (``2 n n_out``), and shares none of that with another task, since task t's logits are
    ``s_t sum_j W[o, j] c_t[j] h[j, b]``. FlyNet: 235,200 for one task, 5,997,600 (25.5
    times as many) for 36.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    return n * k + 2 * n + n_tasks * (n + 2 * n * o)


def dense_inference_flops_per_sample(config: NetworkConfig, n_tasks: int = 1) -> int:
    """:func:`inference_flops_per_sample` for the authors' dense formulation, whose encoder
    is a product with the dense (n x n_in) binary matrix: ``2 n n_in`` flops where nmnp's
    gather needs ``n k``. FlyNet: 12,473,440 for one task and 18,235,840 for 36 (1.46 times
    as many), since there the shared encoder is most of the work.
    """
    n, k = config.n_units, config.inputs_per_unit
    return inference_flops_per_sample(config, n_tasks) - n * k + 2 * n * config.n_inputs


# ----------------------------------------------------------------------------- timing


def timed(fn, repeats: int) -> dict:
    """Median/min/max seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": float(np.median(times)), "min": float(min(times)), "max": float(max(times))}


def _rate(count: float, seconds: dict) -> dict:
    """Convert seconds (median/min/max) into a rate; the fastest run gives the max rate."""
    return {
        "median": count / seconds["median"],
        "min": count / seconds["max"],
        "max": count / seconds["min"],
    }


def measure_peaks(repeats: int = 5, size: int = 1024) -> dict:
    """The machine's measured limits for this kind of work, with every thread in use.

    ``sgemm_gflops``: a float32 (size x size) matrix product through NumPy's BLAS.
    ``stream_gbs``: a parallel Numba sum over a 256 MiB float32 array (read bandwidth).
    Both are medians over ``repeats``; ``sgemm_gflops_best`` and ``stream_gbs_best`` are the
    fastest repeat, the fair peak for a rate that is itself the fastest of several runs.
    """
    from threadpoolctl import threadpool_limits

    from .kernels.cpu import stream_sum

    import os

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    # every core for the peak (nmnp otherwise holds BLAS to one thread; see system.set_threads)
    with threadpool_limits(limits=os.cpu_count(), user_api="blas"):
        t = timed(lambda: a @ a, repeats)
    big = np.ones(64 * 2**20, dtype=np.float32)
    s = timed(lambda: stream_sum(big), repeats)
    return {
        "sgemm_gflops": 2 * size**3 / t["median"] / 1e9,
        "stream_gbs": big.nbytes / s["median"] / 1e9,
        "sgemm_gflops_best": 2 * size**3 / t["min"] / 1e9,
        "stream_gbs_best": big.nbytes / s["min"] / 1e9,
    }


def _inputs(config: NetworkConfig, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, config.n_inputs)).astype(np.float32)
    return x, rng.integers(0, config.n_outputs, n)


def training_runner(backend: str, config: NetworkConfig, batch_size: int, steps: int):
    """A function that runs ``steps`` full training steps (fused forward + backward +
    RMSprop) of a fresh network at ``batch_size``: what :func:`measure_training` times."""
    net = ModulatedNetwork(config, backend)
    t = net.add_task()
    optimizer = make_optimizer("rmsprop", net.trainable_params(t), 0.01)
    x, y = _inputs(config, batch_size * steps)
    batches = [(x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size]) for i in range(steps)]

    def run():
        for xb, yb in batches:
            _, grads, _ = net.loss_and_grads_batch(xb, yb, t)
            optimizer.step(grads)

    return run


def cached_training_runner(config: NetworkConfig, batch_size: int, steps: int, seed: int = 1):
    """Like :func:`training_runner` on the cpu backend, but training from the encoder output
    computed once beforehand: the encoded-set cache of
    :attr:`nmnp.train.TrainSettings.encode_cache_mb`.

    What each step then costs is what the cache costs: gathering a shuffled batch of encoded
    rows (``n_units`` values per sample instead of ``n_inputs``), the readout forward and
    backward from them, and RMSprop. The encoding itself is done before timing, as an epoch
    after the first would find it. The function keeps ``net``, ``task_id`` and ``batches``
    (index arrays) as attributes, so a test can replay the same steps on the fused path.
    """
    net = ModulatedNetwork(config, "cpu")
    t = net.add_task()
    optimizer = make_optimizer("rmsprop", net.trainable_params(t), 0.01)
    x, y = _inputs(config, batch_size * steps)
    encoded = net.encode_dataset(x)
    order = np.random.default_rng(seed).permutation(batch_size * steps)
    batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]

    def run():
        for b in batches:
            _, grads, _ = net.loss_and_grads_encoded(encoded[b], y[b], t)
            optimizer.step(grads)

    run.net, run.task_id, run.batches = net, t, batches
    return run


def measure_training(backend: str, config: NetworkConfig, batch_size: int, repeats: int, steps: int) -> dict:
    """Samples/s of full training steps (fused forward + backward + RMSprop)."""
    seconds = timed(training_runner(backend, config, batch_size, steps), repeats)
    return {"samples_per_second": _rate(batch_size * steps, seconds), "seconds": seconds}


def measure_paired(runners: dict, repeats: int, base: str) -> dict:
    """Time several runners in alternation and give each one's speed relative to ``base``.

    Each repeat times every runner once, back to back, so a change in the machine's speed
    during the benchmark (a shared host) affects both sides of each ratio alike. Returns
    ``{name: {"seconds": ..., "ratio": {"median", "min", "max"}}}`` where ratio is
    ``time(name) / time(base)`` per repeat: how many times faster ``base`` is.
    """
    if base not in runners:
        raise ValueError(f"base {base!r} is not among the runners {sorted(runners)}")
    for run in runners.values():
        run()  # warm-up: compilation, caches
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base])]
        out[name] = {
            "seconds": {"median": float(np.median(ts)), "min": min(ts), "max": max(ts)},
            "ratio": {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)},
        }
    return out


def measure_training_cuda(config: NetworkConfig, batch_size: int, repeats: int, steps: int) -> dict:
    """Device-resident training on the cuda backend; transfers are reported apart from compute."""
    from .kernels import get_backend

    cuda = get_backend("cuda")  # BackendError when no GPU (or simulator) is usable
    r = cuda.benchmark_training(config, batch_size=batch_size, steps=steps, repeats=repeats)
    step = r["step_seconds"]
    seconds = {"median": step["median"] * steps, "min": step["min"] * steps, "max": step["max"] * steps}
    return {
        "samples_per_second": _rate(batch_size * steps, seconds), "seconds": seconds,
        "transfers": {k: r[k] for k in ("upload_seconds", "upload_bytes", "order_upload_seconds", "metrics_seconds") if k in r},
        "launches_per_step": r.get("launches_per_step"), "device": r.get("device"),
        "queue_seconds_per_step": r.get("queue_seconds"),
        "simulator": r.get("simulator"),
    }


def measure_inference(backend: str, config: NetworkConfig, batch_size: int, n_tasks: int, repeats: int,
                      via: str = "task_predictions") -> dict:
    """Samples/s of evaluating ``n_tasks`` stored tasks on one batch (one encoder pass).

    ``via="task_predictions"`` (what ``evaluate`` and ``predict`` run): a host batch in, the
    class ids (n_tasks, batch) out. ``via="task_logits"``: the logits come back to the host,
    which takes their argmax (the cuda backend's evaluation before ``task_predictions``).
    """
    net = ModulatedNetwork(config, backend)
    for _ in range(n_tasks):
        net.add_task()
    x, _ = _inputs(config, batch_size)
    gains = np.stack([c.gains for c in net.tasks])
    strengths = np.concatenate([c.strength for c in net.tasks])
    kernels, idx, W = net.kernels, net.encoder_indices, net.readout
    if via == "task_predictions":
        run = lambda: kernels.task_predictions(x, idx, gains, strengths, W, None, batch_size)  # noqa: E731
    elif via == "task_logits":
        run = lambda: kernels.task_logits(x, idx, gains, strengths, W).argmax(axis=2)  # noqa: E731
    else:
        raise ConfigError(f"via must be 'task_predictions' or 'task_logits', got {via!r}")
    seconds = timed(run, repeats)
    return {"samples_per_second": _rate(batch_size, seconds), "seconds": seconds, "via": via}


def measure_evaluate(backend: str, config: NetworkConfig, n_samples: int, repeats: int,
                     generic: bool = False) -> dict:
    """Samples/s of ``net.evaluate`` of one task on an ``n_samples`` set, in the backend's
    default batches (1,024 samples on the host, up to 16,384 on the GPU): the call the
    continual runner makes for every (task, test set) pair.

    ``generic=True`` times :class:`~nmnp.model.Classifier`'s batch loop instead (one
    ``task_logits`` call per 1,024 samples, the logits back on the host), which is how the
    cuda backend evaluated before ``task_predictions``.
    """
    from .model import Classifier

    net = ModulatedNetwork(config, backend)
    t = net.add_task()
    x, y = _inputs(config, n_samples, seed=2)
    if generic:
        run = lambda: float((Classifier.predict(net, x, t) == y).mean())  # noqa: E731
    else:
        run = lambda: net.evaluate(x, y, t)  # noqa: E731
    seconds = timed(run, repeats)
    return {"samples_per_second": _rate(n_samples, seconds), "seconds": seconds,
            "n_samples": n_samples, "generic_loop": generic}


def _torch_fixed_weights(torch, net: ModulatedNetwork):
    """(dense, W) as PyTorch tensors: the encoder as the dense (n x n_in) binary matrix the
    authors multiply by, and the fixed readout (n_out x n)."""
    config = net.config
    dense = torch.zeros(config.n_units, config.n_inputs)
    dense[torch.arange(config.n_units)[:, None], torch.from_numpy(net.encoder_indices.astype(np.int64))] = 1.0
    return dense, torch.from_numpy(net.readout.copy())


def torch_dense_runner(config: NetworkConfig, batch_size: int, steps: int, threads: int):
    """The authors' formulation in PyTorch: a dense binary encoder matmul, autograd and
    RMSprop, ``steps`` training steps per call; None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = ModulatedNetwork(config, "numpy")
    dense, W = _torch_fixed_weights(torch, net)
    c = torch.nn.Parameter(torch.randn(config.n_units) * (2 / (config.n_units + 1)) ** 0.5)
    s = torch.nn.Parameter(torch.randn(1))
    opt = torch.optim.RMSprop([c, s], lr=0.01)
    x, y = _inputs(config, batch_size * steps)
    xs = torch.from_numpy(x).split(batch_size)
    ys = torch.from_numpy(y).split(batch_size)

    def run():
        for xb, yb in zip(xs, ys):
            m = xb @ dense.T
            h = torch.relu(m - m.mean(dim=1, keepdim=True))
            loss = torch.nn.functional.cross_entropy(s * (h * c) @ W.T, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    run.torch_version = torch.__version__
    return run


def measure_torch_dense(config: NetworkConfig, batch_size: int, repeats: int, steps: int, threads: int):
    """Samples/s of :func:`torch_dense_runner`; None when PyTorch is not installed."""
    run = torch_dense_runner(config, batch_size, steps, threads)
    if run is None:
        return None
    seconds = timed(run, repeats)
    return {"samples_per_second": _rate(batch_size * steps, seconds), "seconds": seconds, "torch": run.torch_version}


def torch_dense_inference_runner(net: ModulatedNetwork, x: np.ndarray, threads: int):
    """Evaluating every task of ``net`` on the batch ``x`` (B, n_in) in the authors' dense
    formulation with PyTorch: the dense encoder product once, then every task's readout
    ``s_t (h * c_t) W^T`` as one matrix product with the stacked effective readouts
    ``s_t W diag(c_t)`` (T n_out x n). ``run()`` returns the (T, B, n_out) logits as a NumPy
    array; None when PyTorch is not installed.

    Folding the tasks into one product is the fastest way of writing it that we found: a
    loop of ``s * (h * c) @ W.T`` over the tasks, as in training, reads and writes the whole
    (B, n) activity twice per task, and took 2.2 (batch 128) and 3.1 (batch 1,024) times as
    long for 36 tasks in a scratch comparison on the bench machine.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    dense, W = _torch_fixed_weights(torch, net)
    gains = torch.from_numpy(np.stack([c.gains for c in net.tasks]))
    strengths = torch.from_numpy(np.concatenate([c.strength for c in net.tasks]))
    xb = torch.from_numpy(np.ascontiguousarray(x))
    n_tasks, n_out, batch = gains.shape[0], W.shape[0], xb.shape[0]

    def run():
        with torch.no_grad():
            m = xb @ dense.T
            h = torch.relu(m - m.mean(dim=1, keepdim=True))
            readouts = (strengths[:, None, None] * W[None] * gains[:, None, :]).reshape(n_tasks * n_out, -1)
            return (h @ readouts.T).reshape(batch, n_tasks, n_out).permute(1, 0, 2).numpy()

    run.torch_version = torch.__version__
    return run


def measure_torch_dense_inference(config: NetworkConfig, batch_size: int, n_tasks: int, repeats: int,
                                  threads: int) -> dict | None:
    """Samples/s of :func:`torch_dense_inference_runner` on ``n_tasks`` fresh tasks; None
    when PyTorch is not installed."""
    net = ModulatedNetwork(config, "numpy")
    for _ in range(n_tasks):
        net.add_task()
    x, _ = _inputs(config, batch_size)
    run = torch_dense_inference_runner(net, x, threads)
    if run is None:
        return None
    seconds = timed(run, repeats)
    return {"samples_per_second": _rate(batch_size, seconds), "seconds": seconds, "torch": run.torch_version}


# ----------------------------------------------------------------------------- the report


def _many_tasks_line(config: NetworkConfig, pair: list, peaks: dict, on_host: bool) -> str:
    """What evaluating 36 tasks costs against one (``pair``: the two inference results), next
    to what it must cost: the flops of 36 readouts and one shared encoder pass against one of
    each, and the rate the 36 tasks computed at (with its share of the sgemm probe for a host
    backend, whose probe it is)."""
    ratio = pair[1]["seconds"]["median"] / pair[0]["seconds"]["median"]
    flops = inference_flops_per_sample(config, pair[1]["tasks"])
    flop_ratio = flops / inference_flops_per_sample(config, pair[0]["tasks"])
    gflops = flops * pair[1]["samples_per_second"]["median"] / 1e9
    share = f", {gflops / peaks['sgemm_gflops']:.0%} of the sgemm probe" if on_host else ""
    return (f"evaluating {pair[1]['tasks']} tasks costs {ratio:.2f} x one task, for {flop_ratio:.2f} x "
            f"its flops ({gflops:.1f} GFLOP/s{share})")


def _dense_many_tasks_line(config: NetworkConfig, dense: list, cpu_many: list) -> str:
    """The 36-task cost against one in the authors' dense formulation (``dense``: its two
    inference results), whose flops ratio is far lower because its dense encoder, shared by
    the tasks, is most of its work; and, with ``cpu_many`` (the cpu backend's 36-task result
    on the same batch), how long the cpu backend takes for 36 tasks against PyTorch's one."""
    ratio = dense[1]["seconds"]["median"] / dense[0]["seconds"]["median"]
    flop_ratio = dense_inference_flops_per_sample(config, 36) / dense_inference_flops_per_sample(config, 1)
    line = f"evaluating 36 tasks costs {ratio:.2f} x one task, for {flop_ratio:.2f} x its flops"
    if cpu_many:
        vs = cpu_many[0]["seconds"]["median"] / dense[0]["seconds"]["median"]
        line += f"; cpu evaluates 36 tasks in {vs:.2f} x the time torch dense takes for one"
    return line


def _fmt_rate(r: dict) -> str:
    return f"{r['median']:>12,.0f}  [{r['min']:,.0f} .. {r['max']:,.0f}]"


def run_bench(args) -> dict:
    backends = args.backends.split(",")
    batch_sizes = args.batch_sizes
    all_threads = set_threads(None)
    if isinstance(args.threads, int) and args.threads > all_threads:  # refuse before measuring
        raise ConfigError(f"--threads {args.threads} exceeds the {all_threads} threads Numba was started with")
    thread_counts = {"both": sorted({1, all_threads}), "all": [all_threads]}.get(args.threads, [args.threads])
    config = NetworkConfig.flynet() if not args.units else NetworkConfig(784, args.units, 7, 10, 0)
    out = {"machine": describe_machine(), "config": config.to_dict(), "repeats": args.repeats}
    say = print

    say("nmnp bench, FlyNet preset" if not args.units else f"nmnp bench, {args.units} units")
    m = out["machine"]
    say(f"machine: {m['cpu']}, {m['cores']} cores, SIMD {'/'.join(m['simd']) or 'n/a'}; "
        f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']}; "
        f"load average {m['load_average_1min']:.2f} at start")
    peaks = measure_peaks(args.repeats)
    out["peaks"] = peaks
    say(f"measured peaks ({all_threads} threads): sgemm {peaks['sgemm_gflops']:.1f} GFLOP/s, "
        f"streaming read {peaks['stream_gbs']:.1f} GB/s")
    flops = training_flops_per_sample(config)
    say(f"work per training sample: {flops:,} flops (see training_flops_per_sample)")

    out["training"] = []
    say("\ntraining samples/s: median [min .. max]")
    for backend in backends:
        skipped = False
        # the GPU does not use the CPU thread count: measure it once
        for threads in (thread_counts if backend != "cuda" else [all_threads]):
            if skipped:
                break
            set_threads(threads)
            for bs in batch_sizes:
                try:
                    steps = max(1, min(args.steps, (args.samples // bs) or 1))
                    if backend == "cuda":
                        r = measure_training_cuda(config, bs, args.repeats, steps)
                    else:
                        r = measure_training(backend, config, bs, args.repeats, steps)
                except BackendError as err:
                    say(f"  {backend}: skipped ({err})")
                    skipped = True
                    break
                nbytes = training_bytes_per_sample(config, bs)
                limit = min(peaks["sgemm_gflops"] * 1e9 / flops, peaks["stream_gbs"] * 1e9 / nbytes)
                if threads != all_threads:  # the peaks were measured with every thread
                    limit *= threads / all_threads
                r.update(backend=backend, threads=threads, batch_size=bs,
                         roofline_samples_per_second=limit,
                         roofline_fraction=r["samples_per_second"]["median"] / limit)
                out["training"].append(r)
                if backend == "cuda":
                    t = r["transfers"]
                    say(f"   cuda {'(simulator) ' if r['simulator'] else ''}batch {bs:>5}: "
                        f"{_fmt_rate(r['samples_per_second'])}  data resident, {r['launches_per_step']} launches/step "
                        f"(host queues them in {r['queue_seconds_per_step']['median'] * 1e6:.0f} us); "
                        f"upload once {t.get('upload_seconds', float('nan')) * 1e3:.1f} ms "
                        f"({t.get('upload_bytes', 0) / 2**20:.1f} MiB), metrics per epoch "
                        f"{t.get('metrics_seconds', float('nan')) * 1e3:.2f} ms")
                    r.pop("roofline_samples_per_second"), r.pop("roofline_fraction")  # CPU peaks
                    continue
                say(f"  {backend:>5} {threads:>2} thr  batch {bs:>5}: {_fmt_rate(r['samples_per_second'])}"
                    f"   {r['roofline_fraction']:6.1%} of roofline ({limit:,.0f}/s)")
    set_threads(all_threads)

    out["inference"] = []
    say(f"\ninference samples/s ({all_threads} threads): median [min .. max]")
    for bs in args.inference_batch:
        for backend in backends:
            for n_tasks in (1, 36):
                try:
                    r = measure_inference(backend, config, bs, n_tasks, args.repeats)
                except BackendError:
                    break
                r.update(backend=backend, tasks=n_tasks, batch_size=bs)
                out["inference"].append(r)
                say(f"  {backend:>5} batch {bs:>5} {n_tasks:>3} task(s): {_fmt_rate(r['samples_per_second'])}")
                if backend == "cuda":  # what the class ids on the device save
                    r["logits_to_host"] = measure_inference(backend, config, bs, n_tasks, args.repeats,
                                                            via="task_logits")
                    say(f"  {backend:>5} batch {bs:>5} {n_tasks:>3} task(s), logits to the host: "
                        f"{_fmt_rate(r['logits_to_host']['samples_per_second'])}")
            pair = [r for r in out["inference"] if r["backend"] == backend and r["batch_size"] == bs]
            if len(pair) == 2:
                say(f"  {backend:>5} batch {bs:>5} " + _many_tasks_line(config, pair, peaks, backend != "cuda"))
        if args.torch:
            dense = []
            for n_tasks in (1, 36):
                r = measure_torch_dense_inference(config, bs, n_tasks, args.repeats, all_threads)
                if r is None:
                    break
                r.update(tasks=n_tasks, batch_size=bs, threads=all_threads)
                dense.append(r)
                say(f"  torch dense batch {bs:>5} {n_tasks:>3} task(s): {_fmt_rate(r['samples_per_second'])}")
            if dense:
                out.setdefault("pytorch_inference", []).extend(dense)
                cpu_many = [r for r in out["inference"]
                            if r["backend"] == "cpu" and r["batch_size"] == bs and r["tasks"] == 36]
                say(f"  torch dense batch {bs:>5} " + _dense_many_tasks_line(config, dense, cpu_many[:1]))

    if args.evaluate_samples:
        out["evaluate"] = []
        say(f"\nevaluate(): one task on {args.evaluate_samples:,} samples, samples/s: median [min .. max]")
        for backend in backends:
            for generic in ((False, True) if backend == "cuda" else (False,)):
                try:
                    r = measure_evaluate(backend, config, args.evaluate_samples, args.repeats, generic)
                except BackendError:
                    break
                r.update(backend=backend)
                out["evaluate"].append(r)
                how = "per 1,024 samples, logits to the host" if generic else "evaluate()"
                say(f"  {backend:>5} {how:>37}: {_fmt_rate(r['samples_per_second'])}")

    ratios = {}
    fast = {(r["backend"], r["threads"], r["batch_size"]): r["samples_per_second"]["median"] for r in out["training"]}
    for bs in batch_sizes:
        if ("cpu", all_threads, bs) in fast and ("numpy", all_threads, bs) in fast:
            ratios[f"cpu/numpy batch {bs}"] = fast[("cpu", all_threads, bs)] / fast[("numpy", all_threads, bs)]
        if ("cpu", all_threads, bs) in fast and ("cuda", all_threads, bs) in fast:
            ratios[f"cuda/cpu batch {bs}"] = fast[("cuda", all_threads, bs)] / fast[("cpu", all_threads, bs)]
    if args.torch:
        out["pytorch"] = []
        for bs in batch_sizes:
            r = measure_torch_dense(config, bs, args.repeats, max(1, min(args.steps, args.samples // bs)), all_threads)
            if r is None:
                say("\npytorch: not installed, dense comparison skipped")
                break
            r.update(batch_size=bs, threads=all_threads)
            if not out["pytorch"]:
                say(f"\nPyTorch {r['torch']}, the authors' dense formulation: training samples/s, median [min .. max]")
            out["pytorch"].append(r)
            say(f"  torch dense {all_threads} thr batch {bs:>5}: {_fmt_rate(r['samples_per_second'])}")
            if ("cpu", all_threads, bs) in fast:
                ratios[f"cpu/torch-dense batch {bs}"] = fast[("cpu", all_threads, bs)] / r["samples_per_second"]["median"]
    out["ratios"] = ratios
    if ratios:
        say("\nratios measured in this run (medians): " + ", ".join(f"{k} = {v:.1f}x" for k, v in ratios.items()))
    out["paired"] = run_paired(args, config, backends, batch_sizes, all_threads, say)
    out["targets"] = target_checks(out, all_threads)
    if out["targets"]:
        say(f"\nspeed targets (batch 128, {all_threads} threads): the figure each is judged on")
        width = max(len(t["target"]) for t in out["targets"])
        for t in out["targets"]:
            say(f"  {t['target']:<{width}}  {t['measured']:<46} {'met' if t['met'] else 'NOT met'}")
    if args.scaling:
        out["scaling"] = run_scaling(args, all_threads, say)
    return out


# The speed targets the cpu backend is held to (FlyNet, batch 128, every thread of a 2-core
# laptop-class machine): key -> (name, threshold, "at least" or "below").
TARGETS = {
    "training": ("cpu training samples/s", 100_000, "at least"),
    "torch dense": ("cpu vs PyTorch dense, paired", 20.0, "at least"),
    "numpy": ("cpu vs numpy, paired", 10.0, "at least"),
    "inference": ("cpu one-task inference samples/s", 200_000, "at least"),
    "36 tasks": ("cpu inference of 36 tasks, times one task's cost", 6.0, "below"),
}


def target_checks(report: dict, threads: int, batch_size: int = 128) -> list[dict]:
    """Each of :data:`TARGETS` that ``report`` measured, judged on one figure.

    Training speed is judged on the slower of the training section's median and the cpu
    side of the paired section (both are the same step, timed minutes apart); the ratios on
    the paired medians, which cancel the machine's drifts; inference on its section's median.
    Returns ``[{"target", "threshold", "value", "measured", "met"}]``, the targets that
    could not be judged (a backend or batch size not run) left out.
    """
    found = {}
    train = [r["samples_per_second"]["median"] for r in report.get("training", [])
             if (r["backend"], r["threads"], r["batch_size"]) == ("cpu", threads, batch_size)]
    paired = report.get("paired") or {}
    paired_ok = paired.get("batch_size") == batch_size and paired.get("threads") == threads
    if train:
        rates = train[:1]
        if paired_ok:
            rates.append(paired["steps"] * batch_size / paired["cpu"]["seconds"]["median"])
        found["training"] = (min(rates), " and ".join(f"{v:,.0f}/s" for v in rates)
                                + (" (section and paired)" if len(rates) == 2 else ""))
    for rival in ("torch dense", "numpy"):
        if paired_ok and rival in paired:
            q = paired[rival]["ratio"]
            found[rival] = (q["median"], f"{q['median']:.1f}x (repeats {q['min']:.1f} to {q['max']:.1f})")
    inference = {r["tasks"]: r for r in report.get("inference", [])
                 if r["backend"] == "cpu" and r["batch_size"] == batch_size}
    if 1 in inference:
        one = inference[1]["samples_per_second"]["median"]
        found["inference"] = (one, f"{one:,.0f}/s")
        if 36 in inference:
            ratio = inference[36]["seconds"]["median"] / inference[1]["seconds"]["median"]
            config = NetworkConfig.from_dict(report["config"])
            flops = inference_flops_per_sample(config, 36) / inference_flops_per_sample(config, 1)
            found["36 tasks"] = (ratio, f"{ratio:.2f}x (the flops: {flops:.2f}x)")
    checks = []
    for key, (name, threshold, how) in TARGETS.items():
        if key in found:
            value, measured = found[key]
            met = value >= threshold if how == "at least" else value < threshold
            checks.append({"target": f"{name} {how} {threshold:,g}", "threshold": threshold,
                           "value": value, "measured": measured, "met": bool(met)})
    return checks


def run_paired(args, config, backends, batch_sizes, threads: int, say) -> dict | None:
    """The cpu backend against the others at the targets' batch size, in alternation.

    The ratios above compare sections measured minutes apart; here every repeat runs the cpu
    backend and each comparison back to back (see :func:`measure_paired`). The comparisons:
    the cpu backend training from a cached encoded set (:func:`cached_training_runner`),
    the numpy backend, and PyTorch's dense formulation when it is installed.
    """
    bs = 128 if 128 in batch_sizes else batch_sizes[0]
    steps = max(1, min(args.steps, (args.samples // bs) or 1))
    runners = {}
    if "cpu" in backends:
        runners["cpu"] = training_runner("cpu", config, bs, steps)
    if "cpu" not in runners:
        return None
    # The encoded-set cache recomputes nothing but reads n_units values per sample: which of
    # the two wins decides TrainSettings.encode_cache_mb's default.
    runners["cached set"] = cached_training_runner(config, bs, steps)
    if "numpy" in backends:
        runners["numpy"] = training_runner("numpy", config, bs, steps)
    if args.torch:
        torch_run = torch_dense_runner(config, bs, steps, threads)
        if torch_run is not None:
            runners["torch dense"] = torch_run
    if len(runners) < 2:
        return None
    result = measure_paired(runners, args.repeats, base="cpu")
    say(f"\npaired (each repeat runs every side back to back; batch {bs}, {threads} threads): "
        f"how many times faster cpu is, median [min .. max] over {args.repeats} repeats")
    for name, r in result.items():
        if name == "cpu":
            continue
        q = r["ratio"]
        say(f"  cpu vs {name:<12} {q['median']:6.1f}x  [{q['min']:.1f} .. {q['max']:.1f}]"
            f"   (cpu {bs * steps / result['cpu']['seconds']['median']:,.0f}/s, "
            f"{name} {bs * steps / r['seconds']['median']:,.0f}/s)")
    return {"batch_size": bs, "threads": threads, "steps": steps, **result}


def run_scaling(args, threads: int, say) -> dict:
    """Training time per sample against encoder width and batch size (cpu backend)."""
    scaling = {"threads": threads, "units": [], "batch": []}
    say(f"\nscaling (cpu, {threads} threads): training samples/s against encoder units, batch 128")
    for units in (784, 1960, 3920, 7840, 15680, 31360):
        cfg = NetworkConfig(784, units, 7, 10, 0)
        r = measure_training("cpu", cfg, 128, args.repeats, max(1, args.samples // 128))
        scaling["units"].append({"units": units, **r})
        say(f"  {units:>6} units: {_fmt_rate(r['samples_per_second'])}")
    say("scaling: training samples/s against batch size, FlyNet")
    for bs in (1, 8, 32, 128, 512, 1024, 4096):
        r = measure_training("cpu", NetworkConfig.flynet(), bs, args.repeats, max(1, min(64, args.samples // bs)))
        scaling["batch"].append({"batch_size": bs, **r})
        say(f"  batch {bs:>5}: {_fmt_rate(r['samples_per_second'])}")
    say("scaling: evaluating T stored tasks on one batch of 1024, FlyNet")
    scaling["tasks"] = []
    base = None
    for T in (1, 4, 16, 36, 64, 256):
        r = measure_inference("cpu", NetworkConfig.flynet(), 1024, T, args.repeats)
        base = base or r["seconds"]["median"]
        scaling["tasks"].append({"tasks": T, **r, "cost_vs_one_task": r["seconds"]["median"] / base})
        say(f"  {T:>4} tasks: {r['seconds']['median'] * 1e3:8.2f} ms per batch ({r['seconds']['median'] / base:5.2f} x one task)")
    return scaling


def measure_demo_memory() -> dict:
    """Run ``python -m nmnp.demo`` in a child process; its peak resident memory and time."""
    import resource
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nmnp.demo", "--out", f"{folder}/demo.png"],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed: {proc.stderr.strip()[-500:]}")
    # ru_maxrss of the waited-for children, in KiB on Linux (bytes on macOS)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024
    return {"peak_rss_bytes": int(peak_bytes), "seconds": seconds}


def _batch_size_list(text: str) -> list[int]:
    """"1,32,128" -> [1, 32, 128]; argparse reports anything else as a usage error."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, got {text!r}")
    return sizes


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
    p = argparse.ArgumentParser(prog="python -m nmnp.bench", description=__doc__.splitlines()[0])
    p.add_argument("--backends", "--backend", default="numpy,cpu,cuda",
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
    from .plots import plot_scaling

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


def _read_report(path: str) -> dict:
    """A report written by ``--json``, or ConfigError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as err:
        raise ConfigError(f"cannot read bench report {path!r}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path!r} is not a bench report written by --json: {err}") from err


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_low_occupancy_warnings()
    try:
        from .atomic import check_output_path

        if args.from_json and not args.plot:
            raise ConfigError("--from-json only draws a figure: give --plot PATH as well")
        if args.plot and not (args.scaling or args.from_json):
            raise ConfigError("--plot draws the scaling tables: add --scaling (or use --from-json)")
        for path in (args.json, args.plot):  # fail before minutes of measuring, not after
            if path:
                check_output_path(path)
        if args.from_json:
            print(f"figure: {plot_report(_read_report(args.from_json), args.plot)}")
            return 0
        if args.demo_memory:
            out = {"machine": describe_machine(), "demo": measure_demo_memory()}
            print(f"python -m nmnp.demo: peak resident memory {out['demo']['peak_rss_bytes'] / 2**20:,.0f} MiB, "
                  f"{out['demo']['seconds']:.1f} s (machine: {out['machine']['cpu']}, {out['machine']['cores']} cores)")
        else:
            out = run_bench(args)
        if args.json:
            from .atomic import atomic_write_json

            print(f"\nresults: {atomic_write_json(args.json, out)}")
        if args.plot:
            print(f"figure: {plot_report(out, args.plot)}")
    except NmnpError as err:
        print(f"nmnp.bench: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
