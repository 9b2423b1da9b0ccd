"""Device-resident training for the cuda backend: a task's data stays on the GPU for all epochs.

:func:`nmnp.train.train_task` hands a :class:`~nmnp.model.ModulatedNetwork` on the cuda
backend to :func:`train_task_resident`, which does what the host loop does, with the same
results up to floating-point rounding:

* the same mini-batches: each epoch's order is ``rng_for(seed, SHUFFLE, task_id, epoch)
  .permutation(n)``, drawn on the host and uploaded (n int32);
* the same loss (softmax cross-entropy over the competing ``classes``, which may be a subset
  for split tasks), the same gradients, and the same optimiser update as :mod:`nmnp.optim`
  (RMSprop, SGD with optional (Nesterov) momentum, Adam; hyperparameters read from the
  optimiser object train_task built);
* the same failure rule: a non-finite loss, a non-finite gradient or an update that would
  overflow stops training with :class:`~nmnp.errors.TrainingError` naming the task, epoch and
  step, and the parameters keep their last finite values. The test runs on the device at every
  step (so nothing is ever written after a bad step); it is *reported* at the end of the epoch,
  when the metrics come back, because asking every step would cost a device round trip each.

Data movement per task: the inputs (N, n_in), the labels, the competing classes, the initial
context and optimiser state, and zero-filled scratch (status word, counters, per-sample
buffers) go up once; per epoch the order goes up and the per-sample losses and hits plus a 4-int status word come
back (the epoch's loss and accuracy are summed on the host in float64); at the end the status
word and the learned context come back. Nothing else crosses the bus.

Where it differs from the host loop, on purpose: a label outside the competing classes is
refused before the first step (the host loop finds it at the first batch that holds it, after
the steps before); the optimiser state stays on the device (train_task discards its optimiser
anyway); the optimiser's arithmetic is done in float64 and stored at the parameters' precision
(the host does it at the parameters' precision), and the loss per sample is summed in float64.

Kernel launches
---------------
Per epoch: 1 (``stage_batch``: gather the epoch's rows in the shuffled order into the
batch-innermost layout ``xT`` (n_in, N) and compute each sample's mean unit activity), after
the order's upload, so that every batch is a contiguous column range of ``xT``.

Per training step: 4, independent of the batch size and the network's width, and no transfer
and no synchronisation (the host only queues launches, so at small batches the step costs
about four Python kernel launches). Steps 1 and 3 are :mod:`nmnp.kernels.cuda_kernels`'s,
shared with the per-batch interface; steps 2 and 4 are
:mod:`nmnp.kernels.cuda_training_kernels`'s:

1. ``logit_partials``: fused encoder + modulated readout; per unit-chunk partial logits.
2. ``loss_and_dlogits``: sums the chunks, scales by the strength, softmax cross-entropy over
   the competing classes, ``dlogits`` (batch-innermost), per-sample loss and hit, loss check.
3. ``context_grad_from_activity``: readout backward on the activity that step 1 stored
   (unit-major, n_units x batch); per batch-tile partial ``dc``. Where that buffer would
   exceed :data:`ACTIVITY_BYTES_CAP`, step 1 stores nothing and ``context_grad_partials``
   recomputes the activity from the inputs instead (same sums in the same order).
4. ``optimizer_step``: sums the tiles (second reduction pass), the gains' update, per-block
   partial sums of ``ds = c . gh`` (shared-memory tree), and, in the last block to finish
   (elected with one atomic counter), the fixed-order sum of those partials and the strength's
   update.

All-or-nothing steps without a second pass: parameters and optimiser state live in two
buffers; step g reads buffer ``g % 2`` and writes the other one, so a step that fails half-way
has written only into the buffer that is thrown away, and every later step sees the status
word and writes nothing at all.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ShapeError, TrainingError
from ..initializers import SHUFFLE, rng_for
from . import cuda_device as device
from . import cuda_kernels as kernels
from .cuda_device import cuda
from .cuda_training_kernels import GRAD_NOT_FINITE, LOSS_NOT_FINITE, RULES, loss_kernel, step_kernel

_KEYS = ("gains", "strength")
#: Largest activity buffer (n_units x batch size, bytes) a training step keeps on the device
#: for its backward (FlyNet at batch 1,024 in float32: 32 MB). Above it, the backward
#: recomputes the activity from the inputs instead: slower, but it needs no such buffer.
ACTIVITY_BYTES_CAP = 1 << 30


# ------------------------------------------------------------------------------ the optimiser
def optimizer_rule(optimizer) -> tuple[int, dict]:
    """(rule id, hyperparameters h1, h2, h3) of an :mod:`nmnp.optim` optimiser object."""
    name = type(optimizer).__name__.lower()
    if name not in RULES:
        raise TrainingError(f"the cuda backend cannot run optimiser {type(optimizer).__name__}")
    hp = optimizer.hyperparameters
    if name == "rmsprop":
        h = (hp["alpha"], hp["eps"], 0.0)
    elif name == "sgd":
        h = (hp["momentum"], 1.0 if hp["nesterov"] else 0.0, 0.0)
    else:
        h = (hp["beta1"], hp["beta2"], hp["eps"])
    return RULES[name], {"lr": float(hp["lr"]), "h": tuple(float(v) for v in h)}


_SLOTS = {  # optimiser state slot names, as slot1 / slot2
    "rmsprop": ("square_avg", None),
    "sgd": ("momentum_buffer", None),
    "adam": ("exp_avg", "exp_avg_sq"),
}


# ------------------------------------------------------------------------------ the resident run
class ResidentTask:
    """One task's training state on the device: data, double-buffered parameters, scratch.

    Parameters
    ----------
    idx : (n_units, k) encoder indices; W : (n_out, n_units) readout
    gains : (n_units,), strength : (1,) the initial context (host arrays, not modified)
    x : (N, n_in) validated inputs of the model dtype; y : (N,) labels in 0..n_out-1
    classes : competing class ids, or None for all
    batch_size : int
    rule, hyper : from :func:`optimizer_rule`
    state : optional dict ``{(slot_index, key): array}`` of initial optimiser state
    start_step : steps the optimiser has already taken (0 for a fresh one)
    """

    def __init__(self, idx, W, gains, strength, x, y, classes, batch_size, rule, hyper, state=None,
                 start_step=0):
        dtype = x.dtype
        N, n_in = x.shape
        n_out, n = W.shape
        self.N, self.n_in, self.n, self.n_out, self.dtype = N, n_in, n, n_out, dtype
        self.batch_size = batch_size
        self.rule, self.lr, self.h = rule, hyper["lr"], hyper["h"]
        self.tpb = device.tpb()
        self.tables = device.encoder_tables(idx)
        self.idx, self.counts = self.tables.idx, self.tables.counts(n_in)
        self.W = device.constant(W)
        cls = np.arange(n_out) if classes is None else np.asarray(classes)
        self.classes = device.to_device(cls.astype(np.int32))
        # Data: resident for all epochs.
        self.x = device.to_device(x)
        self.y = device.to_device(np.asarray(y, dtype=np.int32))
        self.xT = device.empty((n_in, N), dtype)
        self.mean = device.empty(N, dtype)
        self.order = None
        # Parameters and optimiser state: two buffers each (see the module docstring).
        both = lambda a: np.stack([a, a]).astype(dtype)  # noqa: E731
        self.gains = device.to_device(both(np.asarray(gains).reshape(n)))
        self.strength = device.to_device(both(np.asarray(strength).reshape(1)))
        state = state or {}
        zeros_n, zeros_1 = np.zeros(n, dtype), np.zeros(1, dtype)
        self.slot1 = device.to_device(both(state.get((0, "gains"), zeros_n)))
        self.slot2 = device.to_device(both(state.get((1, "gains"), zeros_n)))
        self.sslot1 = device.to_device(both(state.get((0, "strength"), zeros_1)))
        self.sslot2 = device.to_device(both(state.get((1, "strength"), zeros_1)))
        # Per-step scratch, sized for a full batch.
        nb = min(batch_size, N)
        settings = device.launch_settings
        self.chunk, self.tile = chunk, tile = settings["units_per_chunk"], settings["tile"]
        self.start_step = start_step
        self.partials = device.empty((-(-n // chunk), 1, n_out, nb), dtype)
        self.z = device.empty((nb, n_out), dtype)
        self.dlT = device.empty((n_out, nb), dtype)
        self.gh_part = device.empty((-(-nb // tile), n), dtype)
        # The forward stores the batch's activity for the backward when it fits the cap.
        self.store_h = n * nb * np.dtype(dtype).itemsize <= ACTIVITY_BYTES_CAP
        self.hT = device.empty((n, nb), dtype) if self.store_h else device.no_activity(dtype)
        self.step_blocks = device.grid1(n)
        self.ds_part = device.zeros(self.step_blocks, np.float64)
        # The four kernels of a step and their grids, looked up once (the step is hot).
        dtype_name = np.dtype(dtype).name
        self.k_forward = kernels.forward_kernel(n_out, 1, dtype)
        self.k_loss = loss_kernel()
        self.k_backward = (kernels.context_grad_from_activity_kernel(dtype_name) if self.store_h
                           else kernels.context_grad_partials_kernel(dtype_name))
        self.k_step = step_kernel(self.tpb, dtype_name)
        cap_x = lambda items: device.blocks(items, self.tpb)  # noqa: E731
        cap_y = lambda rows: device.blocks(rows, 1, device.GRID_YZ_MAX)  # noqa: E731
        self.grid_forward = lambda nb: (cap_x(nb), cap_y(self.partials.shape[0]))  # noqa: E731
        self.grid_loss = lambda nb: device.blocks(nb, max(1, self.tpb // n_out))  # noqa: E731
        self.grid_backward = (cap_x(n), cap_y(self.gh_part.shape[0]))
        self.counter = device.zeros(1, np.int32)
        self.status = device.zeros(4, np.int32)
        self.sample_loss = device.zeros(N, np.float64)
        self.sample_correct = device.zeros(N, np.int32)
        self.steps_done = 0

    def begin_epoch(self, order) -> None:
        """Upload the epoch's order and lay the data out in it (1 launch)."""
        self.upload_order(order)
        self.stage()

    def upload_order(self, order) -> None:
        """The epoch's sample order, host to device (N int32)."""
        self.order = device.to_device(np.asarray(order, dtype=np.int32))

    def stage(self) -> None:
        """``xT`` and the sample means in the uploaded order (the per-epoch launch)."""
        device.launch(kernels.plain_kernels(self.dtype)["stage_batch"], device.grid1(self.N),
                      self.tpb, self.x, self.order, self.counts, 1.0 / self.n, True, self.xT,
                      self.mean)

    def step(self, col0: int, nb: int) -> None:
        """One optimiser step on epoch positions ``col0 .. col0+nb-1`` (4 launches, no sync)."""
        g = self.steps_done
        rd, wr = g % 2, 1 - g % 2
        step_id = g + 1
        tpb = self.tpb
        device.launch(self.k_forward, self.grid_forward(nb), tpb, self.xT, col0, nb, self.idx,
                      self.mean, self.gains, rd, 1, self.W, self.chunk, self.partials, self.store_h,
                      self.hT, self.status)
        device.launch(self.k_loss, self.grid_loss(nb), tpb, self.partials, self.strength, rd,
                      self.order, self.y, self.classes, col0, nb, self.z, self.dlT,
                      self.sample_loss, self.sample_correct, step_id, self.status)
        if self.store_h:
            device.launch(self.k_backward, self.grid_backward, tpb, self.hT, nb, self.W, self.dlT,
                          self.tile, self.gh_part, self.status)
        else:
            device.launch(self.k_backward, self.grid_backward, tpb, self.xT, col0, nb, self.idx,
                          self.mean, self.W, self.dlT, self.tile, self.gh_part, self.status)
        t = self.start_step + g + 1  # the optimiser's step count, from 1 (Adam's corrections)
        c1 = c2 = 1.0
        if self.rule == RULES["adam"]:
            c1, c2 = 1.0 - self.h[0] ** t, 1.0 - self.h[1] ** t
        device.launch(self.k_step, self.step_blocks, tpb, self.gh_part, self.gains, self.strength,
                      self.slot1, self.slot2, self.sslot1, self.sslot2, rd, wr, self.rule, self.lr,
                      self.h[0], self.h[1], self.h[2], c1, c2, t == 1, step_id, self.ds_part,
                      self.counter, self.status)
        self.steps_done += 1

    def metrics(self):
        """(status (4,), per-sample losses (N,), hits (N,)): the only per-epoch download."""
        return (device.host(self.status), device.host(self.sample_loss),
                device.host(self.sample_correct))

    def last_good_buffer(self) -> int:
        """The buffer holding the last finite parameters: the one the failed step read, or the
        one the next step would read."""
        status = device.host(self.status)
        return (int(status[1]) - 1) % 2 if status[0] != 0 else self.steps_done % 2

    def params(self, buffer: int):
        """(gains, strength) of buffer 0 or 1, on the host."""
        return device.host(self.gains)[buffer], device.host(self.strength)[buffer]


def _initial_state(optimizer) -> dict:
    """The optimiser's state as ``{(slot index, key): array}`` (zeros for a fresh one)."""
    name = type(optimizer).__name__.lower()
    sd = optimizer.state_dict()
    state = {}
    for i, slot in enumerate(_SLOTS[name]):
        for key in _KEYS:
            name_ = f"state/{slot}/{key}"
            if slot is not None and name_ in sd:
                state[i, key] = np.asarray(sd[name_])
    return state


def _check_labels_in_classes(y, classes) -> None:
    """The host loop's check (``model._restrict``), done once before any step."""
    if classes is None:
        return
    outside = ~np.isin(y, classes)
    if outside.any():
        bad = y[outside][0]
        raise ShapeError(f"label {bad} is not among this task's classes {classes.tolist()}")


def _failure_message(code, key, where, epoch, step, batch_loss, settings, optimizer, dtype) -> str:
    """The host loop's messages (:func:`nmnp.train.train_task`), ``where`` naming the task."""
    where = f"{where}, epoch {epoch + 1}, step {step + 1}"
    if code == LOSS_NOT_FINITE:
        return (f"{where}: the loss became {batch_loss}; try a smaller learning rate "
                f"(now {settings.lr})")
    name = _KEYS[key]
    if code == GRAD_NOT_FINITE:
        return (f"{where}: grads[{name!r}] contains non-finite values (NaN or inf in "
                f"{np.dtype(dtype)}); no parameter was updated.")
    return (f"{where}: {type(optimizer).__name__} step would make params[{name!r}] or its state "
            f"non-finite (overflow at lr={settings.lr}); no parameter was updated.")


def train_task_resident(learner, task_id, x, y, settings, *, classes, optimizer, report, bar,
                        where=None):
    """Train task ``task_id`` of ``learner`` (a ModulatedNetwork) with its data on the device.

    Called by :func:`nmnp.train.train_task` after it has validated ``x``, ``y``, ``classes``
    and built ``optimizer``; fills ``report`` (steps, samples, per-epoch loss and accuracy)
    and advances ``bar`` once per epoch. The task's gains and strength are updated in place
    at the end, or, on a TrainingError, set to their last finite values. ``where`` names the
    task in error messages (default ``"task id <task_id>"``, as the host loop).
    """
    where = where or f"task id {task_id}"
    ctx = learner.tasks[task_id]
    _check_labels_in_classes(y, classes)
    rule, hyper = optimizer_rule(optimizer)
    run = ResidentTask(learner.encoder_indices, learner.readout, ctx.gains, ctx.strength, x, y,
                       classes, settings.batch_size, rule, hyper, _initial_state(optimizer),
                       optimizer.n_steps)
    n, bs = x.shape[0], settings.batch_size
    # Every epoch but a last one cut short by settings.max_steps is whole, so the global step
    # counter (status[1]) maps to a step of this epoch by subtracting earlier epochs' steps.
    plan = settings.steps_per_epoch(n)
    try:
        for epoch, steps in enumerate(plan):
            run.begin_epoch(rng_for(settings.seed, SHUFFLE, task_id, epoch).permutation(n))
            for step in range(steps):
                run.step(step * bs, min(bs, n - step * bs))
            status, losses, hits = run.metrics()
            if status[0] != 0:
                step = int(status[1]) - 1 - sum(plan[:epoch])
                col0 = step * bs
                batch_loss = float(np.mean(losses[col0 : col0 + min(bs, n - col0)]))
                raise TrainingError(_failure_message(
                    int(status[0]), int(status[2]), where, epoch, step, batch_loss, settings,
                    optimizer, x.dtype,
                ))
            # The per-sample buffers are indexed by position in the epoch's order; an epoch
            # cut short saw only its first `seen` positions (the rest hold an earlier epoch's).
            seen = min(n, steps * bs)
            report.steps += steps
            report.samples += seen
            report.epoch_losses.append(float(losses[:seen].sum()) / seen)
            report.epoch_accuracies.append(int(hits[:seen].sum()) / seen)
            bar.update(steps)
            bar.set_postfix(loss=f"{report.epoch_losses[-1]:.4f}")
    finally:  # also on an interrupt: the model gets the last step that completed cleanly
        if run.steps_done:
            gains, strength = run.params(run.last_good_buffer())
            np.copyto(ctx.gains, gains)
            np.copyto(ctx.strength, strength)
    return report


# ------------------------------------------------------------------------------ benchmark
def benchmark_training(config=None, *, batch_size=1024, n_samples=None, steps=50, repeats=3,
                       optimizer="rmsprop", seed=0) -> dict:
    """Time resident training steps on this device, transfers apart from compute.

    Parameters
    ----------
    config : NetworkConfig, default FlyNet (784 -> 7840, k = 7 -> 10), float32
    batch_size : samples per step
    n_samples : resident training-set size (default ``batch_size * steps``, at least one batch)
    steps : steps per timed repeat (they cycle through the resident set's batches)
    repeats : timed repeats after one warm-up repeat (which compiles the kernels)
    optimizer : "rmsprop", "sgd" or "adam", default hyperparameters, lr 0.01
    seed : seed of the FlyNet config when ``config`` is None, and of the random inputs,
        labels and sample order

    Returns
    -------
    dict with ``device``, ``simulator`` (True: figures are *not* GPU figures), the shapes,
    ``upload_seconds`` and ``upload_bytes`` (inputs, labels, context and optimiser state,
    host to device, once per task, including allocation), ``order_upload_seconds`` (per
    epoch, N int32) and ``stage_seconds`` (per epoch, the data laid out in that order on the
    device: compute), ``step_seconds``
    (median, min, max over repeats of one step's compute, synchronised, data resident),
    ``queue_seconds`` (the same, for the host's time to queue one step's launches without
    waiting for the device: numba-cuda's launch overhead; when it is close to
    ``step_seconds`` the host, not the GPU, sets the pace),
    ``samples_per_second`` (batch_size / median step), ``metrics_seconds`` (the per-epoch
    download of losses, hits and status), ``launches_per_step`` and ``launches_per_epoch``.
    """
    from ..config import NetworkConfig
    from ..initializers import initial_context, sparse_encoder_indices, uniform_readout
    from ..optim import make_optimizer

    device.check_available()
    config = config or NetworkConfig.flynet(seed, "float32")
    dtype = np.dtype(config.dtype)
    n_samples = n_samples or max(batch_size, batch_size * steps)
    idx = sparse_encoder_indices(config.n_inputs, config.n_units, config.inputs_per_unit,
                                 config.seed)
    W = uniform_readout(config.n_outputs, config.n_units, config.seed, dtype)
    idx.flags.writeable = W.flags.writeable = False
    gains, strength = initial_context(config.n_units, config.seed, 0, dtype)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, config.n_inputs)).astype(dtype)
    y = rng.integers(0, config.n_outputs, n_samples)
    opt = make_optimizer(optimizer, {"gains": gains.copy(), "strength": strength.copy()}, 0.01)
    rule, hyper = optimizer_rule(opt)
    sync = (lambda: None) if device.compile_only is not None else cuda.synchronize
    steps_per_epoch = -(-n_samples // batch_size)

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    holder = {}
    upload = timed(lambda: holder.setdefault("run", ResidentTask(
        idx, W, gains, strength, x, y, None, batch_size, rule, hyper)))
    run = holder["run"]
    order = rng.permutation(n_samples)
    order_upload = timed(lambda: run.upload_order(order))
    stage = timed(run.stage)
    counts_before = dict(device.launch_counts)

    queued = []

    def some_steps():
        t0 = time.perf_counter()
        for i in range(steps):
            pos = (run.steps_done % steps_per_epoch) * batch_size
            run.step(pos, min(batch_size, n_samples - pos))
        queued.append((time.perf_counter() - t0) / steps)  # before the device is waited for

    timed(some_steps)  # warm-up: compiles every kernel
    queued.clear()
    per_step = [timed(some_steps) / steps for _ in range(max(1, repeats))]
    launched = sum(device.launch_counts.values()) - sum(counts_before.values())
    metrics = timed(run.metrics)
    median = float(np.median(per_step))
    return {
        "device": device.device_name() if device.compile_only is None else "compile only",
        "simulator": device.SIMULATOR,
        "config": config.to_dict() if hasattr(config, "to_dict") else repr(config),
        "batch_size": batch_size,
        "n_samples": n_samples,
        "steps": steps,
        "repeats": max(1, repeats),
        "launch_config": device.current_config(),
        "upload_seconds": upload,
        "upload_bytes": int(x.nbytes + y.size * 4 + 6 * (gains.nbytes + strength.nbytes)),
        "order_upload_seconds": order_upload,
        "stage_seconds": stage,
        "step_seconds": {
            "median": median, "min": float(min(per_step)), "max": float(max(per_step)),
        },
        "samples_per_second": batch_size / median if median > 0 else float("inf"),
        "queue_seconds": {
            "median": float(np.median(queued)), "min": float(min(queued)),
            "max": float(max(queued)),
        },
        "metrics_seconds": metrics,
        "launches_per_step": launched / (steps * (1 + max(1, repeats))),
        "launches_per_epoch": 1,
    }


def _compile_training(dtype) -> None:
    """A short resident run in compile-only mode (:func:`nmnp.kernels.cuda._compile_everything`)."""
    from ..optim import make_optimizer

    rng = np.random.default_rng(1)
    n_in, n, k, n_out, N = 6, 7, 3, 4, 9
    idx = np.sort(np.argsort(rng.random((n, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
    W = rng.normal(size=(n_out, n)).astype(dtype)
    x = rng.normal(size=(N, n_in)).astype(dtype)
    y = rng.integers(0, n_out, N)
    for name in RULES:
        gains, strength = np.ones(n, dtype), np.ones(1, dtype)
        opt = make_optimizer(name, {"gains": gains, "strength": strength}, 0.01)
        rule, hyper = optimizer_rule(opt)
        run = ResidentTask(idx, W, gains, strength, x, y, np.array([0, 2]), 4, rule, hyper)
        run.begin_epoch(np.arange(N))
        run.step(0, 4)
        run.metrics()
