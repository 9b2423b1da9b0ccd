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

Where each part lives:

* :mod:`~nmnp.bench.timing`: medians over repeats, rates, paired timing;
* :mod:`~nmnp.bench.roofline`: the flops and bytes a sample needs, the measured peaks, the
  rate they allow;
* :mod:`~nmnp.bench.runners`: what is timed on nmnp's backends;
* :mod:`~nmnp.bench.pytorch`: the same work in the authors' dense formulation;
* :mod:`~nmnp.bench.report`, :mod:`~nmnp.bench.paired`, :mod:`~nmnp.bench.scaling`,
  :mod:`~nmnp.bench.lines`: the sections, and how their figures are printed;
* :mod:`~nmnp.bench.targets`: the speed targets and the figure each is judged on;
* :mod:`~nmnp.bench.memory`: the demo's peak memory;
* :mod:`~nmnp.bench.cli`: the command line.
"""

from .cli import build_parser, main
from .memory import measure_demo_memory
from .pytorch import (measure_torch_dense, measure_torch_dense_inference, torch_dense_inference_runner,
                      torch_dense_runner)
from .report import run_bench
from .roofline import (dense_inference_flops_per_sample, inference_flops_per_sample, measure_peaks,
                       training_bytes_per_sample, training_flops_per_sample, training_roofline)
from .runners import (cached_training_runner, measure_evaluate, measure_inference, measure_training,
                      measure_training_cuda, random_inputs, training_runner)
from .targets import TARGETS, target_checks
from .timing import measure_paired, rate, timed

__all__ = [
    "TARGETS", "build_parser", "cached_training_runner", "dense_inference_flops_per_sample",
    "inference_flops_per_sample", "main", "measure_demo_memory", "measure_evaluate",
    "measure_inference", "measure_paired", "measure_peaks", "measure_torch_dense",
    "measure_torch_dense_inference", "measure_training", "measure_training_cuda", "random_inputs",
    "rate", "run_bench", "target_checks", "timed", "torch_dense_inference_runner",
    "torch_dense_runner", "training_bytes_per_sample", "training_flops_per_sample",
    "training_roofline", "training_runner",
]
