"""The benchmark's work counts (checked by hand) and its report (a tiny, quick run)."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from nmnp import NetworkConfig, bench
from nmnp.bench import (dense_inference_flops_per_sample, inference_flops_per_sample, main,
                        training_bytes_per_sample, training_flops_per_sample)
from nmnp.model import ModulatedNetwork


def test_flynet_work_counts_by_hand():
    flynet = NetworkConfig.flynet()
    # encoder 7840*7 adds + 2*7840 (centre, relu); readout 7840 (modulate) + 2*7840*10;
    # backward 2*7840*10 (g = dl W) + 2*7840 (dc)
    assert training_flops_per_sample(flynet) == 54_880 + 15_680 + 7_840 + 156_800 + 156_800 + 15_680
    assert inference_flops_per_sample(flynet, 1) == 54_880 + 15_680 + 7_840 + 156_800
    assert inference_flops_per_sample(flynet, 36) - inference_flops_per_sample(flynet, 1) == 35 * (7_840 + 156_800)
    # the authors' dense encoder: 2 * 784 * 7840 flops in place of the 7840 * 7 adds
    assert dense_inference_flops_per_sample(flynet, 1) == 12_293_120 + 15_680 + 7_840 + 156_800
    assert dense_inference_flops_per_sample(flynet, 36) == 12_293_120 + 15_680 + 36 * (7_840 + 156_800)
    # input 784 floats + label, plus (idx 7840*7 + W 78,400 + c read and written 2*7840) floats / batch
    assert training_bytes_per_sample(flynet, 128) == pytest.approx(3136 + 8 + 4 * (54_880 + 78_400 + 15_680) / 128)


def test_the_many_tasks_line_sets_the_measured_cost_against_the_flops():
    flynet = NetworkConfig.flynet()
    one = {"tasks": 1, "seconds": {"median": 1.0}, "samples_per_second": {"median": 1000.0}}
    many = {"tasks": 36, "seconds": {"median": 14.0}, "samples_per_second": {"median": 1000.0 / 14}}
    # 36 tasks: 5,997,600 flops per sample (25.5 x 235,200) at 71.4 samples/s = 0.43 GFLOP/s,
    # which is 43% of a 1 GFLOP/s probe
    line = bench.lines.many_tasks_line(flynet, [one, many], {"sgemm_gflops": 1.0}, True)
    assert line == "evaluating 36 tasks costs 14.00 x one task, for 25.50 x its flops (0.4 GFLOP/s, 43% of the sgemm probe)"
    # the host's sgemm probe says nothing of a GPU's limit
    assert "sgemm" not in bench.lines.many_tasks_line(flynet, [one, many], {"sgemm_gflops": 1.0}, False)


def test_the_dense_many_tasks_line_compares_pytorchs_cost_and_the_cpu_backends():
    flynet = NetworkConfig.flynet()
    one = {"tasks": 1, "seconds": {"median": 10.0}}
    many = {"tasks": 36, "seconds": {"median": 22.0}}
    cpu_many = {"tasks": 36, "seconds": {"median": 6.0}}
    # 18,235,840 / 12,473,440 flops = 1.46; cpu's 6 s for 36 tasks against PyTorch's 10 for one
    assert bench.lines.dense_many_tasks_line(flynet, [one, many], [cpu_many]) == (
        "evaluating 36 tasks costs 2.20 x one task, for 1.46 x its flops; "
        "cpu evaluates 36 tasks in 0.60 x the time torch dense takes for one")
    assert bench.lines.dense_many_tasks_line(flynet, [one, many], []).endswith("for 1.46 x its flops")


def test_pytorch_dense_inference_gives_the_reference_logits():
    """The dense formulation the bench times computes what nmnp computes, task by task."""
    pytest.importorskip("torch")
    from nmnp.kernels import reference

    config = NetworkConfig(784, 64, 7, 10, 0)
    net = ModulatedNetwork(config, "numpy")
    for _ in range(3):
        net.add_task()
    x, _ = bench.random_inputs(config, 5)
    gains = np.stack([c.gains for c in net.tasks])
    strengths = np.concatenate([c.strength for c in net.tasks])
    expected = reference.task_logits(x, net.encoder_indices, gains, strengths, net.readout)
    run = bench.torch_dense_inference_runner(net, x, threads=1)
    np.testing.assert_allclose(run(), expected, rtol=1e-5, atol=1e-6)
    # the comparison notices tasks taken in the wrong order
    assert not np.allclose(run()[::-1], expected, rtol=1e-5, atol=1e-6)


def test_quick_bench_with_pytorch_times_its_inference(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    assert main(["--threads", "all", "--repeats", "2", "--units", "64", "--backends", "cpu", "--batch-sizes", "8",
                 "--steps", "1", "--samples", "8", "--inference-batch", "8", "--evaluate-samples", "0",
                 "--json", str(out)]) == 0
    report, printed = json.loads(out.read_text()), capsys.readouterr().out
    assert [(r["batch_size"], r["tasks"]) for r in report["pytorch_inference"]] == [(8, 1), (8, 36)]
    assert "torch dense batch     8 evaluating 36 tasks costs" in printed
    assert "cpu evaluates 36 tasks in" in printed
    assert "the authors' dense formulation: training samples/s" in printed


def _quick_bench(tmp_path, capsys, *flags) -> tuple[dict, str]:
    """(report, printed) of a bench of a 64-unit network on 2 repeats, with ``flags``."""
    out = tmp_path / "bench.json"
    code = main(["--threads", "both", "--repeats", "2", "--units", "64", "--no-torch", *flags, "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _rates_from(count: int, seconds: dict) -> dict:
    """Samples/s of ``count`` samples in each of ``seconds``: the slowest repeat gives the
    lowest rate."""
    return {"median": count / seconds["median"], "min": count / seconds["max"],
            "max": count / seconds["min"]}


def test_quick_bench_reports_every_section(tmp_path, capsys):
    report, printed = _quick_bench(tmp_path, capsys, "--backends", "numpy,cpu,cuda",
                                   "--batch-sizes", "4,16", "--steps", "2", "--samples", "32",
                                   "--inference-batch", "8,5", "--evaluate-samples", "40")
    config, peaks = NetworkConfig.from_dict(report["config"]), report["peaks"]
    assert report["machine"]["cores"] >= 1 and peaks["sgemm_gflops"] > 0
    assert (f"sgemm {peaks['sgemm_gflops']:.1f} GFLOP/s, "
            f"streaming read {peaks['stream_gbs']:.1f} GB/s") in printed
    rows = [r for r in report["training"] if r["backend"] in ("numpy", "cpu")]
    assert {(r["backend"], r["batch_size"]) for r in rows} == {
        (b, s) for b in ("numpy", "cpu") for s in (4, 16)}
    all_threads = max(r["threads"] for r in rows)
    for r in rows:
        # --steps 2 within --samples 32: two steps at batch 4 and at batch 16
        samples, rate = 2 * r["batch_size"], r["samples_per_second"]
        assert rate == pytest.approx(_rates_from(samples, r["seconds"]))
        limit = bench.training_roofline(config, r["batch_size"], peaks, r["threads"], all_threads)
        assert r["roofline_samples_per_second"] == pytest.approx(limit)
        assert r["roofline_fraction"] == pytest.approx(rate["median"] / limit)
        assert (f"{r['backend']:>5} {r['threads']:>2} thr  batch {r['batch_size']:>5}: "
                f"{samples / r['seconds']['median']:>12,.0f}") in printed
    inference = {(r["batch_size"], r["tasks"]): r for r in report["inference"]
                 if r["backend"] == "cpu"}
    assert set(inference) == {(8, 1), (8, 36), (5, 1), (5, 36)}
    for (batch_size, _), r in inference.items():
        assert r["samples_per_second"] == pytest.approx(_rates_from(batch_size, r["seconds"]))
    cost = inference[(5, 36)]["seconds"]["median"] / inference[(5, 1)]["seconds"]["median"]
    assert f"cpu batch     5 evaluating 36 tasks costs {cost:.2f} x one task" in printed
    evaluate = {r["backend"]: r for r in report["evaluate"] if r["backend"] in ("numpy", "cpu")}
    assert set(evaluate) == {"numpy", "cpu"} and evaluate["cpu"]["n_samples"] == 40
    for r in evaluate.values():
        assert r["samples_per_second"] == pytest.approx(_rates_from(40, r["seconds"]))
    assert "evaluate(): one task on 40 samples" in printed
    # the training ratios divide the all-thread medians, not the one-thread ones
    median = {(r["backend"], r["threads"], r["batch_size"]): r["samples_per_second"]["median"]
              for r in rows}
    ratio = median[("cpu", all_threads, 16)] / median[("numpy", all_threads, 16)]
    assert report["ratios"]["cpu/numpy batch 16"] == pytest.approx(ratio)
    assert f"cpu/numpy batch 16 = {ratio:.1f}x" in printed
    paired = report["paired"]
    assert (paired["batch_size"], paired["steps"]) == (4, 2)
    assert set(paired) >= {"cpu", "cached set", "numpy"}
    cpu = paired["cpu"]["seconds"]
    for name in ("cached set", "numpy"):
        seconds, q = paired[name]["seconds"], paired[name]["ratio"]
        # Over two repeats each ratio is this side's time over cpu's in the same repeat, so
        # its extremes are the stored times over cpu's, matched one way or the crossed way.
        matched = sorted([seconds["min"] / cpu["min"], seconds["max"] / cpu["max"]])
        crossed = sorted([seconds["min"] / cpu["max"], seconds["max"] / cpu["min"]])
        extremes = [q["min"], q["max"]]
        assert extremes == pytest.approx(matched) or extremes == pytest.approx(crossed)
        # the printed rates are the 8 samples of the two steps over each side's median time
        assert (f"cpu vs {name:<12} {q['median']:6.1f}x  [{q['min']:.1f} .. {q['max']:.1f}]"
                f"   (cpu {8 / cpu['median']:,.0f}/s, {name} {8 / seconds['median']:,.0f}/s)"
                ) in printed
    assert "roofline" in printed and "numba" in printed  # machine and versions printed beside figures


def _report_for_targets(train_rate, paired_cpu_rate, torch_ratio, numpy_ratio, one_task_rate, many_over_one):
    """A bench report of batch 128 on 2 threads with the figures the targets read."""
    ratio = lambda q: {"median": q, "min": q * 0.9, "max": q * 1.1}  # noqa: E731
    return {
        "config": NetworkConfig.flynet().to_dict(),
        "training": [{"backend": "cpu", "threads": 2, "batch_size": 128, "samples_per_second": {"median": train_rate}},
                     {"backend": "cpu", "threads": 1, "batch_size": 128, "samples_per_second": {"median": 1e9}}],
        "paired": {"batch_size": 128, "threads": 2, "steps": 10,
                   "cpu": {"seconds": {"median": 1280 / paired_cpu_rate}},
                   "torch dense": {"ratio": ratio(torch_ratio)}, "numpy": {"ratio": ratio(numpy_ratio)}},
        "inference": [
            {"backend": "cpu", "batch_size": 128, "tasks": 1,
             "samples_per_second": {"median": one_task_rate}, "seconds": {"median": 1.0}},
            {"backend": "cpu", "batch_size": 128, "tasks": 36,
             "samples_per_second": {"median": one_task_rate / many_over_one}, "seconds": {"median": many_over_one}},
        ],
    }


def test_each_speed_target_is_judged_on_its_figure():
    met = bench.target_checks(_report_for_targets(150_000, 120_000, 20.0, 10.0, 200_000, 5.9), threads=2)
    assert [c["met"] for c in met] == [True] * 5
    # training is judged on the slower of its two timings; the 1-thread row never counts
    assert met[0]["value"] == pytest.approx(120_000) and "150,000/s and 120,000/s" in met[0]["measured"]
    assert "(the flops: 25.50x)" in met[4]["measured"]
    missed = bench.target_checks(_report_for_targets(150_000, 99_000, 19.9, 9.9, 199_000, 6.0), threads=2)
    assert [c["met"] for c in missed] == [False] * 5
    # a report without the paired section or the inference rows judges only what it has
    partial = _report_for_targets(150_000, 120_000, 20.0, 10.0, 200_000, 5.9)
    del partial["paired"], partial["inference"]
    only = bench.target_checks(partial, threads=2)
    assert [c["target"] for c in only] == ["cpu training samples/s at least 100,000"]
    assert only[0]["value"] == 150_000
    assert bench.target_checks(partial, threads=1)[0]["value"] == 1e9  # the 1-thread run's own row


def test_quick_bench_at_batch_128_prints_the_targets(tmp_path, capsys):
    report, printed = _quick_bench(tmp_path, capsys, "--backends", "numpy,cpu", "--batch-sizes", "128",
                                   "--steps", "1", "--samples", "128", "--inference-batch", "128",
                                   "--evaluate-samples", "0")
    targets = report["targets"]
    assert [t["target"].split(" at least")[0].split(" below")[0] for t in targets] == [
        "cpu training samples/s", "cpu vs numpy, paired", "cpu one-task inference samples/s",
        "cpu inference of 36 tasks, times one task's cost"]
    assert "speed targets (batch 128" in printed
    for t in targets:
        assert t["measured"] in printed and t["met"] == (t["value"] < 6 if "36 tasks" in t["target"] else
                                                         t["value"] >= t["threshold"])


def test_timed_leaves_out_the_warm_up_and_reports_median_min_max(monkeypatch):
    """On a fake clock: a slow first call (a JIT compile) is not timed; the rest are."""
    costs = iter([100.0, 3.0, 1.0, 2.0, 5.0, 4.0])
    clock = {"now": 0.0}
    monkeypatch.setattr(bench.timing.time, "perf_counter", lambda: clock["now"])

    def run():
        clock["now"] += next(costs)

    assert bench.timed(run, repeats=5) == {"median": 3.0, "min": 1.0, "max": 5.0}
    # without the warm-up, the first (slow) call is one of the timed ones
    costs = iter([100.0, 3.0, 1.0])
    assert bench.timed(run, repeats=3, warmup=False) == {"median": 3.0, "min": 1.0, "max": 100.0}


def test_paired_ratios_survive_a_change_in_machine_speed(monkeypatch):
    """Runners on a fake clock: 'slow' takes 3x 'fast', and the whole machine slows 4x
    halfway through. Paired ratios stay exactly 3; medians of separate sections would not."""
    clock = {"now": 0.0, "speed": 1.0, "calls": 0}
    monkeypatch.setattr(bench.timing.time, "perf_counter", lambda: clock["now"])

    def runner(cost):
        def run():
            clock["calls"] += 1
            if clock["calls"] > 6:  # after the warm-ups and two repeats, the host gets busy
                clock["speed"] = 0.25
            clock["now"] += cost / clock["speed"]
        return run

    out = bench.measure_paired({"fast": runner(1.0), "slow": runner(3.0)}, repeats=6, base="fast")
    assert out["slow"]["ratio"] == {"median": pytest.approx(3.0), "min": pytest.approx(3.0), "max": pytest.approx(3.0)}
    assert out["fast"]["ratio"]["median"] == 1.0
    assert out["fast"]["seconds"]["min"] == 1.0 and out["fast"]["seconds"]["max"] == 4.0
    with pytest.raises(ValueError, match="base 'cpu' is not among the runners"):
        bench.measure_paired({"fast": runner(1.0)}, repeats=1, base="cpu")


@pytest.mark.parametrize("broken", [False, True])
def test_cached_set_runner_trains_like_the_fused_path(broken):
    """The paired comparison with the encoded-set cache is like for like: replaying its
    batches through the fused training step lands on the same context. Feeding the replay
    other labels (broken=True) shows the comparison would notice a difference."""
    from nmnp.optim import make_optimizer

    config = NetworkConfig(784, 96, 7, 10, 0)
    run = bench.cached_training_runner(config, batch_size=8, steps=3)
    run()
    assert sorted(np.concatenate(run.batches).tolist()) == list(range(24))  # a shuffled epoch
    net = ModulatedNetwork(config, "cpu")
    t = net.add_task()
    optimizer = make_optimizer("rmsprop", net.trainable_params(t), 0.01)
    x, y = bench.random_inputs(config, 24)
    if broken:
        y = (y + 1) % config.n_outputs
    for b in run.batches:
        _, grads, _ = net.loss_and_grads_batch(x[b], y[b], t)
        optimizer.step(grads)
    same = np.allclose(net.tasks[t].gains, run.net.tasks[run.task_id].gains, rtol=1e-4, atol=1e-6)
    assert same != broken


def _fake_scaling_report():
    """A report shaped like ``--scaling --json`` output, with made-up rates (plotting only)."""

    def rates(r):
        return {"median": r, "min": 0.8 * r, "max": 1.1 * r}

    return {
        "config": NetworkConfig.flynet().to_dict(),
        "machine": {"cpu": "test cpu"},
        "peaks": {"sgemm_gflops": 50.0},
        "scaling": {
            "threads": 2,
            "units": [{"units": u, "samples_per_second": rates(1e8 / u)} for u in (784, 7840)],
            "batch": [{"batch_size": b, "samples_per_second": rates(300.0 * b)} for b in (1, 128)],
            "tasks": [
                {"tasks": t, "samples_per_second": rates(1024 / (0.01 * t)), "seconds": rates(0.01 * t)}
                for t in (1, 4, 36)
            ],
        },
    }


def test_plot_redraws_the_scaling_tables_of_a_saved_report(tmp_path, capsys):
    report = tmp_path / "bench.json"
    report.write_text(json.dumps(_fake_scaling_report()))
    figure = tmp_path / "scaling.png"
    assert main(["--from-json", str(report), "--plot", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    assert f"figure: {figure}" in capsys.readouterr().out


def test_scaling_tables_have_a_row_per_size_with_rates_from_their_seconds(tmp_path):
    """A small --scaling run, real measurements included; the batch and task tables always
    use FlyNet."""
    import numba

    threads, printed = numba.get_num_threads(), []
    scaling = bench.scaling.run_scaling(argparse.Namespace(repeats=2, samples=256), threads,
                                        printed.append, unit_counts=(64, 160),
                                        batch_sizes=(16, 256), task_counts=(1, 3))
    assert set(scaling) == {"threads", "units", "batch", "tasks"} and scaling["threads"] == threads
    # samples per timed repeat: --samples 256 gives two steps of 128 in the units table, 16 of
    # 16 and one of 256 in the batch table; the task table evaluates one batch of 1,024
    samples = {"units": [256, 256], "batch": [256, 256], "tasks": [1024, 1024]}
    sizes = {"units": ("units", [64, 160]), "batch": ("batch_size", [16, 256]),
             "tasks": ("tasks", [1, 3])}
    for table, (key, expected) in sizes.items():
        rows = scaling[table]
        assert [r[key] for r in rows] == expected
        for r, n in zip(rows, samples[table]):
            figures = [*r["seconds"].values(), *r["samples_per_second"].values()]
            assert all(np.isfinite(figures)) and min(figures) > 0
            assert r["samples_per_second"] == pytest.approx(_rates_from(n, r["seconds"]))
    one, three = (r["seconds"]["median"] for r in scaling["tasks"])
    assert scaling["tasks"][1]["cost_vs_one_task"] == pytest.approx(three / one)
    line = f"     3 tasks: {three * 1e3:8.2f} ms per batch ({three / one:5.2f} x one task)"
    assert line in printed
    assert len(printed) == 3 + 2 + 2 + 2  # three headings, then one line per row
    # what a real run stores is what --plot draws (the plot tests use a made-up report)
    report = {"config": NetworkConfig.flynet().to_dict(), "scaling": scaling}
    figure = bench.cli.plot_report(report, str(tmp_path / "scaling.png"))
    assert open(figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_memory_measures_the_demo_in_a_child_process():
    """The real demo: it has no option to make it smaller, and takes seconds once Numba's cache
    is warm. ru_maxrss is in KiB on Linux: a peak read in the wrong unit is 1,024 times off,
    outside these bounds either way."""
    out = bench.measure_demo_memory()
    assert set(out) == {"peak_rss_bytes", "seconds"}
    assert 32 * 2**20 < out["peak_rss_bytes"] < 16 * 2**30
    assert 0 < out["seconds"] < 600


def test_demo_memory_reports_a_failed_demo(monkeypatch):
    """A demo that fails must not yield a memory figure (of whatever ran before it)."""
    import sys

    real_child, commands = bench.memory.child_peak_memory, []

    def failing_child(argv):
        commands.append(argv)
        return real_child([sys.executable, "-c", "import sys; sys.exit('no data here')"])

    monkeypatch.setattr(bench.memory, "child_peak_memory", failing_child)
    with pytest.raises(RuntimeError, match="the demo failed: no data here"):
        bench.measure_demo_memory()
    assert commands[0][1:4] == ["-m", "nmnp.demo", "--out"]


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak memory of a child needs POSIX wait4")
def test_child_peak_memory_is_that_childs_peak_not_the_largest_so_far():
    """From a process whose own peak is over 500 MiB: a 400 MiB child, then a 40 MiB one; the
    second figure must be the second child's. The largest peak among all children
    (RUSAGE_CHILDREN, which the bench used to read) is asserted too, to show that it would
    have failed this test."""
    import resource
    import sys

    mib = 2**20

    def child(size):
        return bench.memory.child_peak_memory([sys.executable, "-c", f"b = b'x' * {size}"])

    ballast = b"x" * (500 * mib)  # a child forked from here starts with this much
    big, small = child(400 * mib), child(40 * mib)
    del ballast
    assert big["returncode"] == small["returncode"] == 0
    assert big["peak_rss_bytes"] >= 400 * mib
    assert 40 * mib <= small["peak_rss_bytes"] < 400 * mib
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert largest * (1 if sys.platform == "darwin" else 1024) >= 400 * mib
    failed = bench.memory.child_peak_memory([sys.executable, "-c", "import sys; sys.exit('gone')"])
    assert failed["returncode"] == 1 and failed["stderr"].strip() == "gone"


@pytest.mark.parametrize(
    "argv, report, message",
    [
        (["--from-json", "REPORT"], _fake_scaling_report(), "give --plot PATH"),
        (["--plot", "FIG"], None, "add --scaling"),
        (["--from-json", "REPORT", "--plot", "FIG"], {"config": {}}, "no scaling tables"),
        (["--from-json", "REPORT", "--plot", "FIG"], "{not json", "not a bench report"),
        (["--from-json", "REPORT", "--plot", "FIG"], b"\x89PNG\r\n\x1a\n\xff", "not a bench report"),
        (["--from-json", "MISSING", "--plot", "FIG"], None, "cannot read bench report"),
        (["--from-json", "REPORT", "--plot", "FIG"], "[1, 2]", "no scaling tables"),
        (["--from-json", "REPORT", "--plot", "FIG"], {**_fake_scaling_report(), "scaling": {"threads": 2}},
         "incomplete or malformed"),
        (["--from-json", "REPORT", "--plot", "NOFOLDER"], _fake_scaling_report(), "does not exist"),
    ],
)
def test_plot_options_misused_are_clear_errors(tmp_path, capsys, argv, report, message):
    path = tmp_path / "bench.json"
    if report is not None:
        if isinstance(report, bytes):  # a figure given where the report belongs: not UTF-8
            path.write_bytes(report)
        else:
            path.write_text(report if isinstance(report, str) else json.dumps(report))
    names = {"REPORT": str(path), "MISSING": str(tmp_path / "missing.json"), "FIG": str(tmp_path / "f.png"),
             "NOFOLDER": str(tmp_path / "no-such-folder" / "f.png")}
    assert main([names.get(a, a) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()  # nothing half-drawn is left behind


@pytest.mark.parametrize("option", ["--batch-sizes", "--inference-batch"])
@pytest.mark.parametrize("value", ["128,abc", "0,128", "-4"])
def test_bad_batch_size_lists_are_usage_errors(capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main([option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and repr(value) in err


@pytest.mark.parametrize("option, value", [
    ("--evaluate-samples", "-1"), ("--evaluate-samples", "ten"), ("--evaluate-samples", "2.5"),
    ("--repeats", "0"), ("--steps", "0"), ("--samples", "0"), ("--units", "0"), ("--units", "-3"),
    ("--threads", "0"), ("--threads", "some"),
    ("--backends", "cpu,gpu"), ("--backends", "cpu,"), ("--backends", "cpu,numpy,cpu"),
])
def test_bad_counts_are_usage_errors(capsys, option, value):
    """Refused before anything is measured (--repeats 0 once crashed on an empty median, and
    --units 0 silently ran FlyNet)."""
    with pytest.raises(SystemExit) as exit_info:
        main([option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and repr(value) in err


def test_more_threads_than_numba_has_is_refused_before_measuring(capsys, monkeypatch):
    import numba

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured before checking --threads")

    monkeypatch.setattr(bench.report, "measure_peaks", no_measuring)
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    assert main(["--threads", str(too_many)]) == 2
    assert f"--threads {too_many} exceeds the" in capsys.readouterr().err


def test_thread_settings_parse():
    parse = bench.build_parser().parse_args
    assert [parse(["--threads", t]).threads for t in ("both", "all", "1", "2")] == ["both", "all", 1, 2]
    assert parse([]).threads == "both" and parse(["--evaluate-samples", "0"]).evaluate_samples == 0


def test_backend_lists_parse():
    parse = bench.build_parser().parse_args
    assert parse([]).backends == ["numpy", "cpu", "cuda"]
    assert parse(["--backends", "cpu, numpy"]).backends == ["cpu", "numpy"]


def test_batch_size_lists_parse():
    args = bench.build_parser().parse_args(["--batch-sizes", "4,16", "--inference-batch", "8"])
    assert args.batch_sizes == [4, 16] and args.inference_batch == [8]
    assert bench.build_parser().parse_args([]).inference_batch == [128, 1024]


def test_unwritable_plot_path_fails_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.cli, "run_bench", lambda args: pytest.fail("measured before checking --plot"))
    assert main(["--scaling", "--plot", str(tmp_path / "no-such-folder" / "f.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_roofline_is_the_slower_of_the_two_limits():
    flynet = NetworkConfig.flynet()
    flops, nbytes = training_flops_per_sample(flynet), training_bytes_per_sample(flynet, 128)
    # 1 GFLOP/s against 407,680 flops: 2,453 samples/s; 1 GB/s against 7,799 bytes: 128,221
    compute_bound = {"sgemm_gflops": 1.0, "stream_gbs": 1.0}
    assert bench.training_roofline(flynet, 128, compute_bound, 2, 2) == pytest.approx(1e9 / flops)
    memory_bound = {"sgemm_gflops": 1.0, "stream_gbs": 0.01}
    assert bench.training_roofline(flynet, 128, memory_bound, 2, 2) == pytest.approx(1e7 / nbytes)
    # the peaks were measured on every thread: one thread of two is held to half of them
    assert bench.training_roofline(flynet, 128, compute_bound, 1, 2) == pytest.approx(0.5e9 / flops)


def test_training_ratios_divide_the_right_figures():
    def row(backend, threads, batch_size, rate):
        return {"backend": backend, "threads": threads, "batch_size": batch_size,
                "samples_per_second": {"median": rate}}

    training = [row("numpy", 2, 128, 10.0), row("cpu", 2, 128, 150.0), row("cpu", 1, 128, 90.0),
                row("cuda", 2, 128, 600.0), row("cpu", 2, 32, 40.0)]
    pytorch = [{"batch_size": 128, "samples_per_second": {"median": 5.0}},
               {"batch_size": 1024, "samples_per_second": {"median": 50.0}}]
    ratios = bench.report.training_ratios(training, pytorch, [32, 128], threads=2)
    # batch 32 has no numpy or cuda figure, batch 1024 no cpu figure: no ratio for either
    assert ratios == {"cpu/numpy batch 128": 15.0, "cuda/cpu batch 128": 4.0, "cpu/torch-dense batch 128": 30.0}
    assert bench.report.training_ratios(training, [], [128], threads=1) == {}


def test_training_section_gives_every_thread_back_even_when_interrupted(monkeypatch):
    """A one-thread measurement that fails (or is interrupted) must not leave the rest of the
    bench, or the caller, on one thread."""
    import numba

    all_threads = bench.report.set_threads(None)
    if all_threads < 2:
        pytest.skip("needs at least two Numba threads")
    seen = []

    def interrupted(backend, config, batch_size, repeats, steps):
        seen.append(numba.get_num_threads())
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.report, "measure_training", interrupted)
    args = argparse.Namespace(batch_sizes=[4], repeats=1, steps=1, samples=4)
    with pytest.raises(KeyboardInterrupt):
        bench.report.training_section(args, NetworkConfig(784, 16, 7, 10, 0), ["cpu"], [1], all_threads,
                                      {"sgemm_gflops": 1.0, "stream_gbs": 1.0}, say=lambda line: None)
    assert seen == [1] and numba.get_num_threads() == all_threads
