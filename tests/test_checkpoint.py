"""Checkpoints: small, complete, self-checking, written atomically, never half-loaded.

Every damaged file must raise CheckpointError naming the problem; the fuzz tests at the end
check that nothing else (no IndexError, no MemoryError, no hang) ever escapes the loader.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nmnp
from nmnp import FlyNet, ModulatedNetwork, NetworkConfig, checkpoint, initializers
from nmnp.data.datasets import load_dataset
from nmnp.errors import CheckpointError, ConfigError

SMALL = NetworkConfig(n_inputs=20, n_units=60, inputs_per_unit=4, n_outputs=5, seed=3)
PRELUDE = struct.Struct("<8sIIQ")


def small_model(n_tasks=3, config=SMALL, frozen_last=True):
    """A network whose tasks have distinct, non-initial contexts."""
    net = ModulatedNetwork(config)
    rng = np.random.default_rng(0)
    for i in range(n_tasks):
        t = net.add_task(f"task {i} \N{DEGREE SIGN}")
        net.tasks[t].gains *= rng.uniform(0.5, 2.0, config.n_units).astype(config.dtype)
        net.tasks[t].strength[:] = rng.normal()
        if i < n_tasks - 1 or frozen_last:
            net.freeze(t)
    return net


def assert_same_model(a, b):
    assert a.config == b.config and a.fingerprint() == b.fingerprint()
    np.testing.assert_array_equal(a.encoder_indices, b.encoder_indices)
    np.testing.assert_array_equal(a.readout, b.readout)
    assert a.n_tasks == b.n_tasks
    for x, y in zip(a.tasks, b.tasks):
        assert (x.name, x.frozen) == (y.name, y.frozen)
        assert x.gains.dtype == y.gains.dtype and x.strength.shape == y.strength.shape
        np.testing.assert_array_equal(x.gains, y.gains)
        np.testing.assert_array_equal(x.strength, y.strength)


def logits(net, x):
    """Every task's logits (T, B, n_out) in one fused pass."""
    gains = np.stack([c.gains for c in net.tasks])
    strengths = np.concatenate([c.strength for c in net.tasks])
    return net.kernels.task_logits(x, net.encoder_indices, gains, strengths, net.readout)


def split(data: bytes):
    """(version, header dict, array section) of a checkpoint's bytes, for crafting files."""
    _, version, hlen, total = PRELUDE.unpack_from(data)
    header = json.loads(data[PRELUDE.size : PRELUDE.size + hlen])
    start = PRELUDE.size + hlen + (-(PRELUDE.size + hlen) % 8)
    return version, header, data[start : total - 32]


def reseal(version, header, section) -> bytes:
    """A checkpoint with a valid length and checksum around any header and section: what a
    deliberate forger (or a bug in a future writer) would produce."""
    text = json.dumps(header).encode()
    pad = -(PRELUDE.size + len(text)) % 8
    total = PRELUDE.size + len(text) + pad + len(section) + 32
    body = PRELUDE.pack(b"NMNPCKPT", version, len(text), total) + text + b"\0" * pad + section
    return body + hashlib.sha256(body).digest()


# --------------------------------------------------------------------------- round trips
def test_round_trip_restores_every_task_exactly(tmp_path):
    net = small_model(frozen_last=False)
    path = net.save(tmp_path / "net.nmnp")
    again = nmnp.load(path, backend="numpy")
    assert_same_model(net, again)
    assert again.backend == "numpy" and not again.tasks[-1].frozen and again.tasks[0].frozen
    x = np.random.default_rng(1).normal(size=(16, 20)).astype(np.float32)
    np.testing.assert_array_equal(logits(net, x), logits(nmnp.load(path), x))
    # a loaded network keeps learning: new tasks get the same contexts as in the original
    assert again.add_task() == 3 and net.add_task() == 3
    np.testing.assert_array_equal(again.tasks[3].gains, net.tasks[3].gains)


def test_extra_json_round_trips_and_float64_networks_work(tmp_path):
    config = NetworkConfig(**{**SMALL.to_dict(), "dtype": "float64", "seed": 9})
    net = small_model(2, config)
    extra = {"experiment": {"lr": 0.01, "name": "ü"}, "rows": [[0.5], [0.25, 1.0]]}
    checkpoint.save(net, tmp_path / "a", extra=extra)
    ck = checkpoint.read(tmp_path / "a")
    assert ck.extra == extra and ck.version == checkpoint.FORMAT_VERSION
    assert_same_model(net, ck.model)
    assert ck.model.tasks[0].gains.dtype == np.float64
    assert checkpoint.read_extra(tmp_path / "a") == extra
    assert checkpoint.describe(tmp_path / "a")["tasks"] == ["task 0 \N{DEGREE SIGN}", "task 1 \N{DEGREE SIGN}"]


def test_a_network_without_tasks_round_trips(tmp_path):
    net = ModulatedNetwork(SMALL)
    assert_same_model(net, nmnp.load(net.save(tmp_path / "empty")))


def test_the_file_is_the_documented_layout(tmp_path):
    net = small_model(2)
    data = net.save(tmp_path / "a").read_bytes()
    magic, version, hlen, total = PRELUDE.unpack_from(data)
    assert magic == b"NMNPCKPT" and version == 2 and total == len(data)
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    _, header, section = split(data)
    assert header["config"] == SMALL.to_dict() and header["fingerprint"] == net.fingerprint()
    assert header["learner"] == {"strategy": "crwn", "options": {}}
    assert [a["name"] for a in header["arrays"]] == [
        "tasks/0/gains", "tasks/0/strength", "tasks/1/gains", "tasks/1/strength"]
    gains1 = header["arrays"][2]
    raw = np.frombuffer(section, "<f4", 60, gains1["offset"])
    np.testing.assert_array_equal(raw, net.tasks[1].gains)
    # the fixed weights are not in the file: it is the contexts plus a small header
    assert len(section) == 2 * (60 * 4 + 8) and b"pickle" not in data


def test_36_task_flynet_checkpoint_is_small_and_reevaluates_identically(tmp_path):
    """The issue's target: a 36-task FlyNet checkpoint under 1.2 MB, same accuracies after load."""
    net = FlyNet(seed=0)
    rng = np.random.default_rng(2)
    for i in range(36):  # distinct contexts: initial draws, each rescaled differently
        t = net.add_task(f"rotate {10 * i}\N{DEGREE SIGN}")
        net.tasks[t].gains *= rng.uniform(0.0, 3.0, 7840).astype(np.float32)
        net.freeze(t)
    data = load_dataset()
    x, y = data.x_test[:400].reshape(400, -1).astype(np.float32) / 255.0, data.y_test[:400]
    before = net.evaluate_tasks(x, y)
    path = net.save(tmp_path / "fly36.nmnp")
    size = path.stat().st_size
    assert size < 1_200_000, f"a 36-task FlyNet checkpoint takes {size} bytes"
    assert size < 36 * net.bytes_per_task + 20_000  # contexts + a header, no fixed weights
    again = nmnp.load(path, expected_config=NetworkConfig.flynet(0))
    np.testing.assert_array_equal(again.evaluate_tasks(x, y), before)
    assert len(set(before.tolist())) > 5, "the tasks must really differ for this test to mean anything"
    np.testing.assert_array_equal(again.tasks[35].gains, net.tasks[35].gains)


# --------------------------------------------------------------------------- writing
def test_crash_between_write_and_rename_leaves_the_old_checkpoint(tmp_path):
    path = tmp_path / "run.nmnp"
    old = small_model(1)
    old.save(path)
    before = path.read_bytes()
    new = small_model(3)

    def crash(tmp):
        assert len(open(tmp, "rb").read()) > len(before)  # the new file was complete
        raise KeyboardInterrupt  # the process dies here: after writing, before the rename

    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(new, path, _before_rename=crash)
    assert path.read_bytes() == before
    assert_same_model(nmnp.load(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["run.nmnp"]  # no temp file left


def test_checker_detects_a_crash_that_did_replace_the_file(tmp_path):
    """The crash test above could pass by accident if save never wrote anything; prove the
    same steps without the crash do change the file."""
    path = tmp_path / "run.nmnp"
    small_model(1).save(path)
    before = path.read_bytes()
    checkpoint.save(small_model(3), path, _before_rename=lambda tmp: None)
    assert path.read_bytes() != before and nmnp.load(path).n_tasks == 3


def test_saving_refuses_bad_models_and_writes_nothing(tmp_path):
    net = small_model(2)
    net.tasks[1].gains[5] = np.nan
    with pytest.raises(CheckpointError, match=r"task 1 \('task 1 °'\) has NaN or infinite gains, so it was not saved"):
        net.save(tmp_path / "a")
    net.tasks[1].gains[5] = 0.0
    with pytest.raises(CheckpointError, match="extra cannot be stored as plain JSON"):
        net.save(tmp_path / "a", extra={"x": np.int64(3)})
    with pytest.raises(CheckpointError, match="extra cannot be stored as plain JSON"):
        net.save(tmp_path / "a", extra={"x": float("nan")})
    with pytest.raises(ConfigError, match=r"cannot write .*a: folder .*missing does not exist"):
        net.save(tmp_path / "missing" / "a")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = small_model(1).save(tmp_path / "a")
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nmnp.atomic.os.fsync", full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint there is unchanged"):
        small_model(3).save(path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


# --------------------------------------------------------------------------- damaged files
@pytest.fixture
def valid(tmp_path):
    path = small_model(2).save(tmp_path / "ok.nmnp")
    return path, path.read_bytes()


def load_bytes(tmp_path, data, **kwargs):
    p = tmp_path / "bad.nmnp"
    p.write_bytes(data)
    return checkpoint.load(p, **kwargs)


@pytest.mark.parametrize("keep", [0, 5, 30, 100, -33, -1])
def test_truncated_checkpoint(tmp_path, valid, keep):
    _, data = valid
    cut = data[:keep]
    message = {0: "is empty", 5: "is truncated: 5 bytes", 30: "is truncated: 30 bytes"}.get(
        keep, rf"is truncated: it has {len(cut)} of its {len(data)} bytes")
    with pytest.raises(CheckpointError, match=message):
        load_bytes(tmp_path, cut)


@pytest.mark.parametrize("where", ["header", "array", "checksum"])
def test_tampered_checkpoint(tmp_path, valid, where):
    _, data = valid
    position = {"header": 40, "array": len(data) - 100, "checksum": len(data) - 1}[where]
    damaged = bytearray(data)
    damaged[position] ^= 0x01  # one bit
    with pytest.raises(CheckpointError, match="is damaged: its SHA-256 checksum does not match its content"):
        load_bytes(tmp_path, bytes(damaged))
    assert load_bytes(tmp_path, data).n_tasks == 2  # the checker accepts the undamaged file


def test_extra_bytes_after_the_end(tmp_path, valid):
    with pytest.raises(CheckpointError, match="has 3 unexpected bytes after its"):
        load_bytes(tmp_path, valid[1] + b"abc")


def test_newer_format_version_is_named(tmp_path, valid):
    version, header, section = split(valid[1])
    with pytest.raises(CheckpointError, match=r"has format version 3, written by a newer nmnp; this nmnp \(0\.1\.0\) reads format versions 1 to 2"):
        load_bytes(tmp_path, reseal(version + 1, header, section))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not an nmnp checkpoint"):
        load_bytes(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        checkpoint.load(tmp_path)


def test_checkpoint_of_another_configuration_names_the_difference(tmp_path, valid):
    path, _ = valid
    other = NetworkConfig(**{**SMALL.to_dict(), "n_units": 61, "seed": 4})
    with pytest.raises(CheckpointError, match=r"from another network configuration: n_units 60 \(checkpoint\) vs 61 \(expected\); seed 3 \(checkpoint\) vs 4 \(expected\)"):
        checkpoint.load(path, expected_config=other)
    assert checkpoint.load(path, expected_config=SMALL.to_dict()).n_tasks == 2


def test_a_change_in_random_generation_is_caught(tmp_path, valid, monkeypatch):
    path, _ = valid
    original = initializers.uniform_readout
    monkeypatch.setattr(initializers, "uniform_readout",
                        lambda *a: np.nextafter(original(*a), np.float32(1)))  # one ulp apart
    with pytest.raises(CheckpointError, match="do not match its fingerprint"):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h, s: h["arrays"][0].update(shape=[59]), r"tasks/0/gains has shape \[59\], but the configuration needs \[60\]"),
        (lambda h, s: h["arrays"][1].update(dtype="<f8"), "tasks/0/strength has dtype '<f8', but the configuration's dtype float32 needs '<f4'"),
        (lambda h, s: h["config"].update(n_units=70), r"tasks/0/gains has shape \[60\], but the configuration needs \[70\]"),
        (lambda h, s: h["config"].update(inputs_per_unit=30), "invalid network configuration .*cannot exceed"),
        (lambda h, s: h["config"].pop("seed"), "invalid network configuration .*missing keys"),
        (lambda h, s: h["config"].update(n_inputs=10**9), "too large to regenerate"),
        (lambda h, s: h["config"].update(seed=4), "do not match its fingerprint"),
        (lambda h, s: h["arrays"].pop(), "lists 3 arrays but its 2 task"),
        (lambda h, s: h["arrays"].reverse(), "has array 'tasks/1/strength' where 'tasks/0/gains' belongs"),
        (lambda h, s: h["arrays"][2].update(offset=0), "is not where the layout puts it"),
        (lambda h, s: h["tasks"][0].update(frozen="yes"), "task 0 lacks a valid name and frozen flag"),
        (lambda h, s: h.update(extra=[1]), "'extra' entry is not a JSON object"),
        (lambda h, s: h.pop("fingerprint"), "missing or invalid 'fingerprint'"),
        (lambda h, s: s.__setitem__(slice(0, 4), np.float32(np.nan).tobytes()), "tasks/0/gains contains NaN or infinite values"),
        (lambda h, s: s.extend(bytes(8)), "has 8 unexplained bytes after its arrays"),
        (lambda h, s: s.__delitem__(slice(-8, None)), "tasks/1/strength runs past the end of the data"),
    ],
)
def test_forged_headers_are_checked_against_the_configuration(tmp_path, valid, mutate, message):
    """Files with a valid checksum but inconsistent content (a bug or a forger): every array
    is checked against the configuration before anything is built from it."""
    version, header, section = split(valid[1])
    section = bytearray(section)
    mutate(header, section)
    with pytest.raises(CheckpointError, match=message):
        load_bytes(tmp_path, reseal(version, header, bytes(section)))


def test_reseal_helper_produces_loadable_files(valid, tmp_path):
    """The forged-header tests mean something only if an unmodified reseal loads."""
    assert load_bytes(tmp_path, reseal(*split(valid[1]))).n_tasks == 2


# --------------------------------------------------------------------------- strategies
STRATEGY_NAMES = ["finetune", "separate", "supsup"]


def trained_strategy(name, n_tasks=3, frozen_last=True, **options):
    """A comparison strategy whose tasks (and shared state) differ from their initial values."""
    from nmnp.strategies import STRATEGIES

    learner = STRATEGIES[name](SMALL, **options)
    rng = np.random.default_rng(0)
    for i in range(n_tasks):
        t = learner.add_task(f"task {i}")
        for value in learner.trainable_params(t).values():
            value += rng.normal(size=value.shape).astype(value.dtype)
        if i < n_tasks - 1 or frozen_last:
            learner.freeze(t)
    return learner


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_a_strategy_round_trips_and_predicts_and_learns_as_before(tmp_path, name):
    learner = trained_strategy(name, frozen_last=False)
    path = learner.save(tmp_path / f"{name}.nmnp")
    assert nmnp.load(path, backend="numpy").backend == "numpy"
    again = nmnp.load(path)  # the original's backend: the same predictions to the bit
    assert type(again) is type(learner)
    assert [(t.name, t.frozen) for t in again.tasks] == [(t.name, t.frozen) for t in learner.tasks]
    assert checkpoint.describe(path)["learner"] == name
    x = np.random.default_rng(1).normal(size=(16, 20)).astype(np.float32)
    for t in range(3):
        assert again.prediction_digest(t) == learner.prediction_digest(t)
        np.testing.assert_array_equal(again.forward(x, t), learner.forward(x, t))
    # the unfrozen last task trains on from where it was, shared state included
    y = np.arange(16) % 5
    _, grads, _ = learner.loss_and_grads(x, y, 2)
    _, grads_again, _ = again.loss_and_grads(x, y, 2)
    for key in grads:
        np.testing.assert_array_equal(grads_again[key], grads[key], err_msg=key)
    # loading into a fresh learner of the same kind gives the same
    from nmnp.strategies import make_strategy

    into = make_strategy(name, SMALL)
    assert checkpoint.read(path, into=into).model is into
    for t in range(3):
        assert into.prediction_digest(t) == learner.prediction_digest(t)


def test_fine_tuning_s_shared_readout_is_stored_once(tmp_path):
    learner = trained_strategy("finetune")
    _, header, _ = split(learner.save(tmp_path / "f.nmnp").read_bytes())
    assert [a["name"] for a in header["arrays"]] == ["shared/bias", "shared/weight"]
    np.testing.assert_array_equal(nmnp.load(tmp_path / "f.nmnp").readout["weight"],
                                  learner.readout["weight"])


def test_supsup_stores_packed_masks_and_its_kept_fraction(tmp_path):
    learner = trained_strategy("supsup", keep=0.25)
    _, header, _ = split(learner.save(tmp_path / "s.nmnp").read_bytes())
    assert header["learner"] == {"strategy": "supsup", "options": {"keep": 0.25}}
    assert {(a["name"].split("/")[-1], a["dtype"]) for a in header["arrays"]} == {("mask_bits", "|u1")}
    again = nmnp.load(tmp_path / "s.nmnp")
    assert again.keep == 0.25
    np.testing.assert_array_equal(again.mask(1), learner.mask(1))
    from nmnp.strategies import make_strategy

    with pytest.raises(CheckpointError, match=r"holds a supsup learner \(keep 0\.25\), which cannot be "
                                              r"loaded into a supsup learner \(keep 0\.5\)"):
        checkpoint.read(tmp_path / "s.nmnp", into=make_strategy("supsup", SMALL))
    with pytest.raises(CheckpointError, match="holds a supsup learner .*into a crwn learner$"):
        checkpoint.read(tmp_path / "s.nmnp", into=ModulatedNetwork(SMALL))


def test_a_version_1_file_is_still_read_as_a_network(tmp_path, valid):
    version, header, section = split(valid[1])
    assert version == 2
    del header["learner"]  # what format version 1 wrote
    ck = checkpoint.from_bytes(reseal(1, header, section))
    assert ck.version == 1 and isinstance(ck.model, ModulatedNetwork)
    assert_same_model(ck.model, nmnp.load(valid[0]))
    p = tmp_path / "v1.nmnp"
    p.write_bytes(reseal(1, header, section))
    assert checkpoint.describe(p)["learner"] == "crwn"


@pytest.fixture
def supsup_file(tmp_path):
    learner = trained_strategy("supsup", frozen_last=False)
    return learner.save(tmp_path / "s.nmnp").read_bytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: h["learner"].update(strategy="ewc"), "holds an unknown learner 'ewc'; this nmnp knows crwn"),
        (lambda h: h.pop("learner"), "missing or invalid 'learner'"),
        (lambda h: h["learner"].update(options={"keep": 2}), r"invalid options \{'keep': 2\} for its supsup learner \(keep must be"),
        (lambda h: h["learner"].update(options={"keep": True}), r"invalid options \{'keep': True\} for its supsup learner \(keep must be"),
        (lambda h: h["learner"].update(options={"width": 2}), "invalid options .* for its supsup learner .*unexpected keyword"),
        (lambda h: h["learner"].update(strategy="separate"), r"invalid options \{'keep': 0\.5\} for its separate learner"),
        (lambda h: h["learner"].update(options=[]), r"invalid options \[\] for its supsup learner"),
        (lambda h: h["learner"].update(strategy="crwn", options={}), r"lists 3 arrays but its 3 task\(s\) need 6"),
        (lambda h: h["learner"].update(strategy="separate", options={}), r"lists 3 arrays but its 3 task\(s\) need 6"),
        (lambda h: h["tasks"][2].update(frozen=True), "has array 'tasks/2/scores' where 'tasks/2/mask_bits' belongs"),
        (lambda h: h["arrays"][0].update(dtype="<f4"), r"tasks/0/mask_bits has dtype '<f4', but its learner stores it as '\|u1'"),
        (lambda h: h["arrays"][2].update(dtype="<f8"), "tasks/2/scores has dtype '<f8', but the configuration's dtype float32 needs '<f4'"),
        (lambda h: h["arrays"][2].update(shape=[5, 59]), r"tasks/2/scores has shape \[5, 59\], but the configuration needs \[5, 60\]"),
    ],
)
def test_forged_strategy_headers_are_checked_against_the_learner(tmp_path, supsup_file, mutate, message):
    version, header, section = split(supsup_file)
    mutate(header)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.from_bytes(reseal(version, header, section))
    assert checkpoint.from_bytes(reseal(*split(supsup_file))).model.n_tasks == 3  # unmodified: loads


def test_another_configuration_is_named_before_a_strategy_s_layout_is_built(supsup_file, monkeypatch):
    """A strategy's layout comes from a learner built from the stored configuration: for a file
    of another configuration that would draw weights that are never used."""
    def no_drawing(*args):
        raise AssertionError("built a learner before comparing configurations")

    monkeypatch.setattr(checkpoint, "_layout", no_drawing)
    other = NetworkConfig(**{**SMALL.to_dict(), "seed": 4})
    with pytest.raises(CheckpointError, match=r"from another network configuration: seed 3 \(checkpoint\) vs 4"):
        checkpoint.from_bytes(supsup_file, expected_config=other)
    with pytest.raises(AssertionError, match="built a learner"):  # the same call with it
        checkpoint.from_bytes(supsup_file, expected_config=SMALL)


def test_a_supsup_mask_that_another_keep_made_is_refused(supsup_file):
    """The masks are checked against the kept fraction: a file whose keep was changed (or
    whose masks were damaged) would otherwise load and predict unlike the learner it says."""
    version, header, section = split(supsup_file)
    header["learner"]["options"] = {"keep": 0.25}
    with pytest.raises(CheckpointError, match=r"task 0 \('task 0'\) has a mask that keeps 150 of 300 "
                                              r"weights, but keep 0\.25 keeps 75"):
        checkpoint.from_bytes(reseal(version, header, section))
    version, header, section = split(supsup_file)
    section = bytearray(section)
    section[0] ^= 0x80  # one weight more or less in task 0's mask
    with pytest.raises(CheckpointError, match="task 0 .* keeps 1(49|51) of 300 weights"):
        checkpoint.from_bytes(reseal(version, header, bytes(section)))


def test_a_crwn_file_with_options_is_refused(valid):
    version, header, section = split(valid[1])
    header["learner"]["options"] = {"keep": 0.5}
    with pytest.raises(CheckpointError, match=r"invalid options \{'keep': 0\.5\} for its crwn learner"):
        checkpoint.from_bytes(reseal(version, header, section))


def test_a_strategy_whose_state_was_replaced_by_hand_is_not_saved(tmp_path):
    learner = trained_strategy("separate", n_tasks=2)
    learner.tasks[1].state["weight"] = learner.tasks[1].state["weight"][:, :-1]
    with pytest.raises(CheckpointError, match=r"task 1 \('task 1'\) has weight of shape \(5, 59\), expected \(5, 60\)"):
        learner.save(tmp_path / "a.nmnp")
    learner = trained_strategy("separate", n_tasks=2)
    learner.tasks[0].state["extra"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"task 0 \('task 0'\) holds \['bias', 'extra', 'weight'\], expected \['bias', 'weight'\]"):
        learner.save(tmp_path / "a.nmnp")
    learner = trained_strategy("finetune", n_tasks=1)
    learner.readout["bias"][0] = np.nan
    with pytest.raises(CheckpointError, match="the shared state has NaN or infinite bias, so it was not saved"):
        learner.save(tmp_path / "a.nmnp")
    with pytest.raises(CheckpointError, match="a checkpoint holds a ModulatedNetwork or a comparison strategy .* got dict"):
        checkpoint.to_bytes({})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- fuzzing
_BASE = checkpoint.to_bytes(small_model(2), extra={"a": [1, 2.5, "x"]})


def _load_or_checkpoint_error(data: bytes) -> None:
    try:
        out = checkpoint.from_bytes(data, "fuzz")
    except CheckpointError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(out.model, ModulatedNetwork) or checkpoint.learner_kind(out.model) != "crwn"


@given(st.binary(max_size=300))
def test_random_bytes_load_or_raise_checkpoint_error(data):
    _load_or_checkpoint_error(data)
    _load_or_checkpoint_error(b"NMNPCKPT" + data)


@given(
    edits=st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, len(_BASE)),
    extra=st.binary(max_size=8),
)
def test_mutated_bytes_load_or_raise_checkpoint_error(edits, cut, extra):
    data = bytearray(_BASE)
    for pos, value in edits:
        data[pos] = value
    _load_or_checkpoint_error(bytes(data[:cut]) + extra)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.sampled_from([2**31, 2**63, 10**30, -(2**40)])
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
    | st.sampled_from(["float32", "float64", "<f4", "<f8", "tasks/0/gains"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


_HEADER_PATHS = [p for p in _paths(split(_BASE)[1]) if p]


def _forge(base: bytes, where: tuple, value, delete: bool) -> None:
    """Replace (or delete) the header entry at ``where`` of ``base``, reseal, and load."""
    version, header, section = split(base)
    parent = header
    for key in where[:-1]:
        parent = parent[key]
    if delete:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    _load_or_checkpoint_error(reseal(version, header, section))


@given(where=st.sampled_from(_HEADER_PATHS), value=_JSON, delete=st.booleans())
def test_forged_headers_load_or_raise_checkpoint_error(where, value, delete):
    _forge(_BASE, where, value, delete)


def test_odd_arguments_get_named_errors(tmp_path):
    """A network that is not one, a configuration that is not a dict, and an ``extra`` nested
    too deep for JSON: each said something misleading or raised a raw Python error."""
    net = ModulatedNetwork(NetworkConfig(8, 6, 2, 3, seed=0))
    net.add_task()
    path = net.save(tmp_path / "net.nmnp")
    with pytest.raises(CheckpointError, match="only be loaded into a ModulatedNetwork or a comparison strategy, got str"):
        checkpoint.read(path, into="x")
    with pytest.raises(ConfigError, match="must be a dict, got list"):
        NetworkConfig.from_dict([1, 2])
    deep = {}
    for _ in range(100_000):
        deep = {"a": deep}
    with pytest.raises(CheckpointError, match="extra cannot be stored as plain JSON"):
        net.save(tmp_path / "deep.nmnp", extra=deep)
    assert not (tmp_path / "deep.nmnp").exists()


@pytest.mark.parametrize("bad, message", [
    (None, "^checkpoint path must be a str, bytes or os.PathLike, got NoneType$"),
    (3, "^checkpoint path must be a str, bytes or os.PathLike, got int$"),
    ("", "^checkpoint path is empty: a file name is needed$"),
    ("a\0b", "^checkpoint path 'a\\\\x00b' contains a NUL character$"),
])
def test_a_path_that_is_not_one_is_named_by_every_entry_point(tmp_path, monkeypatch, bad, message):
    """nmnp.load(None) or net.save(3) raised pathlib's TypeError; "" meant the current folder."""
    monkeypatch.chdir(tmp_path)
    net = small_model(1)
    for call in (lambda: nmnp.load(bad), lambda: checkpoint.read(bad), lambda: checkpoint.read_extra(bad),
                 lambda: checkpoint.describe(bad), lambda: net.save(bad), lambda: checkpoint.save(net, bad)):
        with pytest.raises(ConfigError, match=message):
            call()
    assert list(tmp_path.iterdir()) == []


def test_bytes_paths_are_paths(tmp_path):
    import os

    net = small_model(2)
    path = os.fsencode(tmp_path / "b.nmnp")
    assert checkpoint.save(net, path, extra={"k": 1}) == tmp_path / "b.nmnp"
    assert_same_model(nmnp.load(path), net)
    assert checkpoint.read_extra(path) == {"k": 1}
    assert checkpoint.describe(path)["path"] == str(tmp_path / "b.nmnp")


@pytest.mark.parametrize("data", ["abc", None, 3, [1, 2]])
def test_from_bytes_names_data_that_is_not_bytes(data):
    with pytest.raises(ConfigError, match=r"^data must be the bytes of a checkpoint \(bytes, bytearray "
                                          rf"or memoryview\), got {type(data).__name__}$"):
        checkpoint.from_bytes(data)


def test_from_bytes_reads_any_bytes_like_object():
    net = small_model(2)
    data = checkpoint.to_bytes(net)
    for view in (bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8)):
        assert_same_model(checkpoint.from_bytes(view).model, net)


@pytest.mark.parametrize("expected", ["flynet", 7, [1]])
def test_an_expected_configuration_of_the_wrong_kind_is_named_before_reading(tmp_path, expected):
    """read(p, expected_config="flynet") failed with "'str' object has no attribute 'to_dict'"."""
    path = small_model(1).save(tmp_path / "a.nmnp")
    message = (rf"^expected_config must be a NetworkConfig, a dict or None, got {type(expected).__name__} "
               r"\(e\.g\. NetworkConfig\.flynet\(\)\)$")
    with pytest.raises(ConfigError, match=message):
        checkpoint.read(path, expected_config=expected)
    with pytest.raises(ConfigError, match=message):  # before the file: a missing one is not named
        checkpoint.read(tmp_path / "missing.nmnp", expected_config=expected)
    with pytest.raises(ConfigError, match=message):
        checkpoint.from_bytes(path.read_bytes(), expected_config=expected)


_STRATEGY_BASE = checkpoint.to_bytes(trained_strategy("supsup", n_tasks=2))
_STRATEGY_HEADER_PATHS = [p for p in _paths(split(_STRATEGY_BASE)[1]) if p]


@given(where=st.sampled_from(_STRATEGY_HEADER_PATHS), value=_JSON, delete=st.booleans())
def test_forged_strategy_headers_load_or_raise_checkpoint_error(where, value, delete):
    _forge(_STRATEGY_BASE, where, value, delete)
