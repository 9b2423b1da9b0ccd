"""What the bench times on nmnp's own backends: training steps, inference, ``evaluate``.

Each ``*_runner`` builds a fresh network of the given ``config`` (FlyNet in the bench's main
tables, other widths in the scaling table) and returns a function that does the
timed work; each ``measure_*`` times one with :func:`~nmnp.bench.timing.timed` and turns the
seconds into samples/s.
"""

from __future__ import annotations

import numpy as np

from ..config import NetworkConfig
from ..errors import ConfigError
from ..model import ModulatedNetwork
from ..optim import make_optimizer
from .timing import rate, timed


def random_inputs(config: NetworkConfig, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random samples: inputs (n, n_in) float32 from a standard normal, labels (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, config.n_inputs)).astype(np.float32)
    return x, rng.integers(0, config.n_outputs, n)


def training_runner(backend: str, config: NetworkConfig, batch_size: int, steps: int):
    """A function that runs ``steps`` full training steps (fused forward + backward +
    RMSprop) of a fresh network at ``batch_size``: what :func:`measure_training` times."""
    net = ModulatedNetwork(config, backend)
    t = net.add_task()
    optimizer = make_optimizer("rmsprop", net.trainable_params(t), 0.01)
    x, y = random_inputs(config, batch_size * steps)
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
    x, y = random_inputs(config, batch_size * steps)
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
    return {"samples_per_second": rate(batch_size * steps, seconds), "seconds": seconds}


def measure_training_cuda(config: NetworkConfig, batch_size: int, repeats: int, steps: int) -> dict:
    """Device-resident training on the cuda backend; transfers are reported apart from compute."""
    from ..kernels import get_backend

    cuda = get_backend("cuda")  # BackendError when no GPU (or simulator) is usable
    r = cuda.benchmark_training(config, batch_size=batch_size, steps=steps, repeats=repeats)
    step = r["step_seconds"]
    seconds = {"median": step["median"] * steps, "min": step["min"] * steps, "max": step["max"] * steps}
    return {
        "samples_per_second": rate(batch_size * steps, seconds), "seconds": seconds,
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
    x, _ = random_inputs(config, batch_size)
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
    return {"samples_per_second": rate(batch_size, seconds), "seconds": seconds, "via": via}


def measure_evaluate(backend: str, config: NetworkConfig, n_samples: int, repeats: int,
                     generic: bool = False) -> dict:
    """Samples/s of ``net.evaluate`` of one task on an ``n_samples`` set, in the backend's
    default batches (1,024 samples on the host, up to 16,384 on the GPU): the call the
    continual runner makes for every (task, test set) pair.

    ``generic=True`` times :class:`~nmnp.model.Classifier`'s batch loop instead (one
    ``task_logits`` call per 1,024 samples, the logits back on the host), which is how the
    cuda backend evaluated before ``task_predictions``.
    """
    from ..model import Classifier

    net = ModulatedNetwork(config, backend)
    t = net.add_task()
    x, y = random_inputs(config, n_samples, seed=2)
    if generic:
        run = lambda: float((Classifier.predict(net, x, t) == y).mean())  # noqa: E731
    else:
        run = lambda: net.evaluate(x, y, t)  # noqa: E731
    seconds = timed(run, repeats)
    return {"samples_per_second": rate(n_samples, seconds), "seconds": seconds,
            "n_samples": n_samples, "generic_loop": generic}
