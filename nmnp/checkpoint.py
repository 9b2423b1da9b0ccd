"""Checkpoints: a learner's every task in one small, self-checking file.

The learner is the paper's network (:class:`~nmnp.model.ModulatedNetwork`, every task's
context) or one of the comparison strategies of :mod:`nmnp.strategies` (every task's state
and the state the tasks share, such as fine-tuning's readout). The fixed random weights are
*not* stored: they are regenerated from the configuration and its seed, and compared with a
stored fingerprint. What is stored is what the tasks learned, so a 36-task FlyNet checkpoint
is about 36 x 31 KB. Loading never executes anything from the file (no pickle): it is a fixed
binary prelude, a JSON header and raw arrays.

Layout (format version 2; every integer little-endian)::

    offset  size  content
    0       8     magic  b"NMNPCKPT"
    8       4     uint32 format version (every future version keeps these 12 bytes)
    12      4     uint32 H, length of the JSON header in bytes
    16      8     uint64 L, length of the whole file in bytes
    24      H     JSON header, UTF-8 (see below)
    ...     0-7   zero padding to a multiple of 8
    D       ...   the arrays, raw little-endian, in the order of the header's table, each
                  starting at D + offset (offsets are multiples of 8)
    L - 32  32    SHA-256 of bytes 0 .. L - 33 (everything before it)

The header holds ``format``, ``nmnp_version``, ``learner`` (``strategy``: ``"crwn"`` for
the network, else the strategy's name; ``options``: what else rebuilds it, e.g. SupSup's
``keep``), ``config`` (the :class:`~nmnp.config.NetworkConfig`, seed included),
``fingerprint`` (SHA-256 of the fixed weights,
:meth:`~nmnp.model.ModulatedNetwork.fingerprint`), ``tasks`` (name and frozen flag of each),
``arrays`` (name, dtype, shape, offset and nbytes of each array: ``tasks/<i>/gains`` and
``tasks/<i>/strength`` for the network; ``tasks/<i>/<key>`` for each key of a strategy's
task state, in sorted order, then ``shared/<key>`` for its shared state) and ``extra`` (any
JSON the caller stored: ``nmnp run`` keeps its experiment configuration and accuracy matrix
there, to resume). Version 1, which nmnp still reads, is the same without ``learner``: it
always holds the network.

Loading checks, in order: magic, version (a newer one is refused by name), length
(truncated or extended), checksum (any changed byte), the header's structure and learner,
an optional expected configuration or learner to load into (a file of another network is
named as such before any weights are drawn), every array's name, dtype, shape and position
against the configuration and the learner (a strategy's layout is that of a freshly built one
of the same kind, with the same options), finite values, and finally the fingerprint of the
fixed weights regenerated from the configuration (a change in how random weights are drawn is caught here, not silently loaded
into a different network). Any failure raises
:class:`~nmnp.errors.CheckpointError` naming the file and the problem.

Writes go through :func:`nmnp.atomic.atomic_write_bytes`: a crash leaves the old file or
the new one, never a mix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import as_path, atomic_write_bytes
from .config import NetworkConfig
from .errors import CheckpointError, ConfigError, NmnpError, OutputError
from .model import ModulatedNetwork, TaskContext

__all__ = ["FORMAT_VERSION", "MAGIC", "Checkpoint", "save", "load", "read", "read_extra",
           "to_bytes", "from_bytes", "describe", "is_checkpoint", "learner_kind",
           "learner_options"]

MAGIC = b"NMNPCKPT"
#: The format version this nmnp writes; it reads this one and every earlier one.
FORMAT_VERSION = 2
_PRELUDE = struct.Struct("<8sIIQ")  # magic, version, header length, file length
_DIGEST = 32
_ALIGN = 8
_MAX_HEADER = 64 << 20  # a header is a few KB per 100 tasks; more is a damaged length field


@dataclass
class Checkpoint:
    """What a checkpoint file holds, verified.

    Attributes
    ----------
    model : ModulatedNetwork or a comparison strategy (:mod:`nmnp.strategies`)
        Fixed weights regenerated, every task restored (frozen flags included).
    extra : dict or None
        The JSON the writer stored alongside (e.g. a run's configuration and results).
    version : int
        Format version of the file.
    nmnp_version : str
        Version of nmnp that wrote it.
    """

    model: object
    extra: dict | None
    version: int
    nmnp_version: str


# --------------------------------------------------------------------------- writing
def to_bytes(model, extra: dict | None = None) -> bytes:
    """The checkpoint file's bytes for ``model`` (see the module docstring for the layout).

    Parameters
    ----------
    model : ModulatedNetwork or a comparison strategy
    extra : dict, optional
        JSON-ready data to store alongside (no NaN or infinity).

    Raises
    ------
    CheckpointError
        If ``model`` is neither, an array of a task has the wrong shape or keys or holds NaN
        or infinite values, or ``extra`` is not plain JSON.
    """
    kind, options = learner_kind(model), learner_options(model)
    layout = _layout(kind, model.config, tuple(bool(t.frozen) for t in model.tasks), options)
    table, blobs, offset = [], [], 0
    for (owner, key, shape, dtype), value in zip(layout, _learned_arrays(model, kind, layout)):
        what = _owner_text(model, owner)
        a = np.ascontiguousarray(value, dtype=dtype)
        if a.shape != shape:  # replaced by hand: the file could not be loaded
            raise CheckpointError(
                f"{what} has {key} of shape {a.shape}, expected {shape}, so it was not saved"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{what} has NaN or infinite {key}, so it was not saved")
        table.append({"name": _array_name(owner, key), "dtype": dtype.str,
                      "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes})
        blobs.append(a.tobytes())
        pad = -a.nbytes % _ALIGN
        if pad:
            blobs.append(b"\0" * pad)
        offset += a.nbytes + pad
    if extra is not None and not isinstance(extra, dict):
        raise CheckpointError(f"extra must be a dict of JSON data, got {type(extra).__name__}")
    header = {
        "format": "nmnp checkpoint",
        "nmnp_version": __version__,
        "learner": {"strategy": kind, "options": options},
        "config": model.config.to_dict(),
        "fingerprint": model.fingerprint(),
        "tasks": [{"name": str(t.name), "frozen": bool(t.frozen)} for t in model.tasks],
        "arrays": table,
        "extra": extra,
    }
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as err:  # RecursionError: nested too deep
        raise CheckpointError(f"extra cannot be stored as plain JSON ({err})") from err
    head_pad = -(_PRELUDE.size + len(text)) % _ALIGN
    total = _PRELUDE.size + len(text) + head_pad + offset + _DIGEST
    body = b"".join(
        [_PRELUDE.pack(MAGIC, FORMAT_VERSION, len(text), total), text, b"\0" * head_pad, *blobs]
    )
    return body + hashlib.sha256(body).digest()


# --------------------------------------------------------------------------- learners
def _strategies():
    """The strategy classes by name (imported late: nmnp.strategies imports the model)."""
    from .strategies import STRATEGIES

    return STRATEGIES


def learner_kind(model) -> str:
    """``"crwn"`` for a :class:`~nmnp.model.ModulatedNetwork` (of any subclass), else the
    name of the comparison strategy ``model`` is; CheckpointError for anything else."""
    if isinstance(model, ModulatedNetwork):
        return "crwn"
    name = getattr(model, "name", None)
    cls = _strategies().get(name) if isinstance(name, str) else None
    if cls is not None and isinstance(model, cls):
        return name
    raise CheckpointError(f"a checkpoint holds a ModulatedNetwork or a comparison strategy "
                          f"({', '.join(_strategies())}), got {type(model).__name__}")


def learner_options(model) -> dict:
    """What rebuilds ``model`` beyond its configuration and backend (JSON-ready): its
    ``init_options()`` if it has them (SupSup's ``keep``), else nothing."""
    options = getattr(model, "init_options", None)
    return dict(options()) if options is not None else {}


def _learner_text(kind: str, options: dict) -> str:
    """E.g. ``"a supsup learner (keep 0.5)"``, for messages."""
    text = ", ".join(f"{k} {v!r}" for k, v in sorted(options.items()))
    return f"a {kind} learner" + (f" ({text})" if text else "")


def _owner_text(model, owner) -> str:
    """E.g. ``"task 1 ('upright')"`` or ``"the shared state"``, for messages."""
    return "the shared state" if owner == "shared" else f"task {owner} ({model.tasks[owner].name!r})"


def _array_name(owner, key: str) -> str:
    return f"shared/{key}" if owner == "shared" else f"tasks/{owner}/{key}"


def _state_layout(state: dict) -> list:
    return [(key, tuple(np.shape(state[key])), np.asarray(state[key]).dtype.newbyteorder("<"))
            for key in sorted(state)]


@functools.lru_cache(maxsize=32)
def _strategy_layouts(kind: str, config: NetworkConfig, options: tuple) -> tuple:
    """(training task, frozen task, shared state) layouts of a strategy: the keys, shapes
    and dtypes of a freshly built one's, so no strategy describes its state twice.
    ``options`` is ``_options_key(options)``."""
    probe = _strategies()[kind](config, "numpy", **{k: v for k, _, v in options})
    probe.add_task()
    training = _state_layout(probe.task(0).state)
    probe.freeze(0)
    return training, _state_layout(probe.task(0).state), _state_layout(probe.shared_state())


def _options_key(options: dict) -> tuple:
    """``options`` as a cache key that tells their types apart (True == 1.0 to Python, but
    SupSup refuses ``keep=True``)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in options.items()))


def _layout(kind: str, config: NetworkConfig, frozen: tuple, options: dict) -> list:
    """[(owner, key, shape, dtype), ...]: every array a checkpoint of this learner holds, in
    file order. ``owner`` is a task's index or ``"shared"``."""
    if kind == "crwn":
        dtype = np.dtype(config.dtype).newbyteorder("<")
        return [(i, key, shape, dtype) for i in range(len(frozen))
                for key, shape in (("gains", (config.n_units,)), ("strength", (1,)))]
    training, frozen_task, shared = _strategy_layouts(kind, config, _options_key(options))
    out = [(i, key, shape, dtype) for i, f in enumerate(frozen)
           for key, shape, dtype in (frozen_task if f else training)]
    return out + [("shared", key, shape, dtype) for key, shape, dtype in shared]


def _learned_arrays(model, kind: str, layout: list) -> list:
    """The arrays of ``model`` in ``layout``'s order; CheckpointError if a task's state has
    other keys than the layout (replaced by hand)."""
    if kind == "crwn":
        return [getattr(model.tasks[owner], key) for owner, key, _, _ in layout]
    states = {"shared": model.shared_state()}
    states.update({i: t.state for i, t in enumerate(model.tasks)})
    for owner, state in states.items():
        want = sorted(key for o, key, _, _ in layout if o == owner)
        if sorted(state) != want:
            raise CheckpointError(f"{_owner_text(model, owner)} holds {sorted(state)}, expected {want}, so it was not saved")
    return [states[owner][key] for owner, key, _, _ in layout]


def save(model, path, extra: dict | None = None, *, _before_rename=None) -> Path:
    """Write ``model``'s checkpoint to ``path`` atomically.

    Parameters
    ----------
    model : ModulatedNetwork or a comparison strategy
    path : str or PathLike
        Its folder must exist. An existing file is replaced only once the new one is
        complete on disk.
    extra : dict, optional
        JSON-ready data stored alongside (read back as :attr:`Checkpoint.extra`).
    _before_rename : callable, optional
        Test hook passed to :func:`~nmnp.atomic.atomic_write_bytes` (simulated crash).

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        If ``path`` is not a path (``None``, a number, an empty string), or its folder does
        not exist or is not writable: checked before the model is serialised.
    CheckpointError
        If the model cannot be stored (not a learner, a non-finite context, non-JSON ``extra``) or the
        write fails (disk full...); an existing checkpoint is left unchanged.
    """
    path = as_path(path, "checkpoint path")
    data = to_bytes(model, extra)
    try:
        return atomic_write_bytes(path, data, _before_rename=_before_rename)
    except OutputError as err:
        cause = err.__cause__
        raise CheckpointError(
            f"cannot write checkpoint {path} ({getattr(cause, 'strerror', None) or cause}); any "
            "previous checkpoint there is unchanged"
        ) from cause


# --------------------------------------------------------------------------- reading
def _read_file(path) -> bytes:
    path = as_path(path, "checkpoint path")  # ConfigError for None, a number or ""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from err


def _verified_header(data: bytes, name: str) -> tuple[dict, memoryview]:
    """Check magic, version, length and checksum; return (header, array section)."""
    data = memoryview(data)
    head = bytes(data[: len(MAGIC)])
    if not data:
        raise CheckpointError(f"checkpoint {name} is empty (0 bytes)")
    if head != MAGIC[: len(head)]:
        raise CheckpointError(
            f"{name} is not an nmnp checkpoint (it starts with {head.hex(' ')}, not the magic "
            f"{MAGIC.decode()})"
        )
    if len(data) < _PRELUDE.size + _DIGEST:
        raise CheckpointError(
            f"checkpoint {name} is truncated: {len(data)} bytes, fewer than the "
            f"{_PRELUDE.size + _DIGEST} of even an empty checkpoint"
        )
    _, version, header_len, total = _PRELUDE.unpack_from(data)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {name} has format version {version}, written by a newer nmnp; this "
            f"nmnp ({__version__}) reads format versions 1 to {FORMAT_VERSION}"
        )
    if version < 1:
        raise CheckpointError(f"checkpoint {name} has invalid format version {version}")
    if len(data) < total:
        raise CheckpointError(
            f"checkpoint {name} is truncated: it has {len(data)} of its {total} bytes"
        )
    if len(data) > total:
        raise CheckpointError(
            f"checkpoint {name} has {len(data) - total} unexpected bytes after its {total}-byte end"
        )
    if hashlib.sha256(data[: total - _DIGEST]).digest() != bytes(data[total - _DIGEST :]):
        raise CheckpointError(
            f"checkpoint {name} is damaged: its SHA-256 checksum does not match its content"
        )
    data_start = _PRELUDE.size + header_len + (-(_PRELUDE.size + header_len) % _ALIGN)
    if header_len > _MAX_HEADER or data_start > total - _DIGEST:
        raise CheckpointError(f"checkpoint {name} has an impossible header length {header_len}")
    try:
        header = json.loads(
            bytes(data[_PRELUDE.size : _PRELUDE.size + header_len]).decode("utf-8"),
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"checkpoint {name} has an unreadable JSON header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {name}'s header is not a JSON object")
    if data[_PRELUDE.size + header_len : data_start].tobytes().strip(b"\0"):
        raise CheckpointError(f"checkpoint {name} has non-zero padding after its header")
    return header, data[data_start : total - _DIGEST]


def _refuse_constant(token):
    raise ValueError(f"{token} is not allowed")


def _field(header: dict, key: str, kind, name: str):
    value = header.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CheckpointError(f"checkpoint {name}'s header has a missing or invalid {key!r} entry")
    return value


def _config_of(header: dict, name: str) -> NetworkConfig:
    raw = _field(header, "config", dict, name)
    missing = sorted(set(NetworkConfig().to_dict()) - set(raw))
    if missing:  # never fill a stored network's shape from today's defaults
        raise CheckpointError(f"checkpoint {name} holds an invalid network configuration (missing keys {missing})")
    try:
        config = NetworkConfig.from_dict(raw)
    except (NmnpError, TypeError) as err:
        raise CheckpointError(f"checkpoint {name} holds an invalid network configuration ({err})") from None
    return config  # NetworkConfig refuses one too large to regenerate (MAX_RANDOM_DRAWS)


def _arrays(header: dict, section: memoryview, config: NetworkConfig, layout: list, name: str):
    """The arrays of ``layout`` (see :func:`_layout`), checked against it, as writeable
    native arrays keyed by their names."""
    table = _field(header, "arrays", list, name)
    n_tasks = len(_field(header, "tasks", list, name))
    if len(table) != len(layout):
        raise CheckpointError(
            f"checkpoint {name} lists {len(table)} arrays but its {n_tasks} task(s) need {len(layout)}"
        )
    config_dtype = np.dtype(config.dtype).newbyteorder("<")
    out, offset = {}, 0
    for entry, (owner, key, want_shape, dtype) in zip(table, layout):
        want_name = _array_name(owner, key)
        if not isinstance(entry, dict) or entry.get("name") != want_name:
            got = entry.get("name") if isinstance(entry, dict) else entry
            raise CheckpointError(f"checkpoint {name} has array {got!r} where {want_name!r} belongs")
        if entry.get("dtype") != dtype.str:
            needs = (f"the configuration's dtype {config.dtype} needs" if dtype == config_dtype
                     else "its learner stores it as")
            raise CheckpointError(
                f"checkpoint {name}: array {want_name} has dtype {entry.get('dtype')!r}, but "
                f"{needs} {dtype.str!r}"
            )
        if entry.get("shape") != list(want_shape):
            raise CheckpointError(
                f"checkpoint {name}: array {want_name} has shape {entry.get('shape')!r}, but the "
                f"configuration needs {list(want_shape)}"
            )
        count = int(np.prod(want_shape))
        nbytes = count * dtype.itemsize
        if entry.get("offset") != offset or entry.get("nbytes") != nbytes:
            raise CheckpointError(
                f"checkpoint {name}: array {want_name} is not where the layout puts it "
                f"(offset {entry.get('offset')!r}, {entry.get('nbytes')!r} bytes; expected {offset}, {nbytes})"
            )
        if offset + nbytes > len(section):
            raise CheckpointError(f"checkpoint {name}: array {want_name} runs past the end of the data")
        a = np.frombuffer(section, dtype=dtype, count=count, offset=offset)
        a = a.astype(dtype.newbyteorder("="), copy=True).reshape(want_shape)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"checkpoint {name}: array {want_name} contains NaN or infinite values")
        out[want_name] = a
        offset += nbytes + (-nbytes % _ALIGN)
    if offset != len(section):
        raise CheckpointError(
            f"checkpoint {name} has {len(section) - offset} unexplained bytes after its arrays"
        )
    return out


def _learner(header: dict, version: int, name: str) -> tuple[str, dict]:
    """(kind, options) of the learner a checkpoint holds: ``("crwn", {})`` in version 1."""
    if version < 2:
        return "crwn", {}
    learner = _field(header, "learner", dict, name)
    kind, options = learner.get("strategy"), learner.get("options")
    if not isinstance(kind, str) or kind not in _strategies():
        raise CheckpointError(f"checkpoint {name} holds an unknown learner {kind!r}; this nmnp "
                              f"knows {', '.join(_strategies())}")
    if not isinstance(options, dict) or (kind == "crwn" and options):
        raise CheckpointError(f"checkpoint {name} has invalid options {options!r} for its {kind} learner")
    return kind, options


def _checked_layout(kind: str, config: NetworkConfig, frozen: tuple, options: dict, name: str) -> list:
    """:func:`_layout`, naming options that do not rebuild the learner (a forged ``keep``
    of 2, an unknown keyword) as the file's problem."""
    try:
        return _layout(kind, config, frozen, options)
    except (NmnpError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {name} has invalid options {options!r} for its {kind} learner ({err})"
        ) from None


def _tasks(header: dict, name: str) -> list[tuple[str, bool]]:
    tasks = _field(header, "tasks", list, name)
    out = []
    for i, t in enumerate(tasks):
        if not (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("frozen"), bool)):
            raise CheckpointError(f"checkpoint {name}: task {i} lacks a valid name and frozen flag")
        out.append((t["name"], t["frozen"]))
    return out


def _expected_config(expected) -> NetworkConfig | None:
    """``expected_config`` as a NetworkConfig (``None`` stays ``None``), checked before the
    file is read: the caller's mistake is named as such, not as the file's."""
    if expected is None or isinstance(expected, NetworkConfig):
        return expected
    if isinstance(expected, dict):
        try:
            return NetworkConfig.from_dict(expected)
        except (NmnpError, TypeError) as err:
            raise CheckpointError(f"the expected configuration is invalid ({err})") from None
    raise ConfigError(f"expected_config must be a NetworkConfig, a dict or None, got "
                      f"{type(expected).__name__} (e.g. NetworkConfig.flynet())")


def _as_buffer(data) -> memoryview:
    """``data`` (bytes, bytearray, memoryview or any contiguous buffer) as a byte view."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise ConfigError(f"data must be the bytes of a checkpoint (bytes, bytearray or memoryview), "
                          f"got {type(data).__name__}") from None


def _check_into(into) -> None:
    if into is None:
        return
    try:
        learner_kind(into)
    except CheckpointError:
        raise CheckpointError(f"a checkpoint can only be loaded into a ModulatedNetwork or a "
                              f"comparison strategy, got {type(into).__name__}") from None


def _compare_configs(stored: NetworkConfig, expected: NetworkConfig, name: str) -> None:
    a, b = stored.to_dict(), expected.to_dict()
    diffs = [f"{k} {a[k]!r} (checkpoint) vs {b[k]!r} (expected)" for k in a if a[k] != b[k]]
    if diffs:
        raise CheckpointError(
            f"checkpoint {name} is from another network configuration: {'; '.join(diffs)}"
        )


def from_bytes(data: bytes, name: str = "<bytes>", backend: str = "cpu", expected_config=None,
               into=None) -> Checkpoint:
    """Verify and decode a checkpoint held in memory (see :func:`read`).

    ``data`` is any bytes-like object (bytes, bytearray, memoryview); ``name`` names it in
    errors. ConfigError for ``data`` that is not bytes-like or an ``expected_config`` of the
    wrong kind; otherwise as :func:`read`.
    """
    data = _as_buffer(data)
    expected_config = _expected_config(expected_config)
    _check_into(into)
    name = str(name)
    header, section = _verified_header(data, name)
    version = _PRELUDE.unpack_from(data)[1]
    config = _config_of(header, name)
    fingerprint = _field(header, "fingerprint", str, name)
    tasks = _tasks(header, name)
    kind, options = _learner(header, version, name)
    extra = header.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {name}'s 'extra' entry is not a JSON object")
    if into is not None:
        if into.n_tasks:
            raise CheckpointError("a checkpoint can only be loaded into a learner that has no tasks yet")
        if (learner_kind(into), learner_options(into)) != (kind, options):
            raise CheckpointError(
                f"checkpoint {name} holds {_learner_text(kind, options)}, which cannot be loaded "
                f"into {_learner_text(learner_kind(into), learner_options(into))}"
            )
        expected_config = into.config if expected_config is None else expected_config
    if expected_config is not None:
        _compare_configs(config, expected_config, name)
    # A strategy's layout is read from one built from the configuration (its weights drawn),
    # so the configuration is checked against the expected one first.
    layout = _checked_layout(kind, config, tuple(frozen for _, frozen in tasks), options, name)
    arrays = _arrays(header, section, config, layout, name)
    if into is not None:
        model = into
    elif kind == "crwn":
        model = ModulatedNetwork(config, backend)
    else:
        model = _strategies()[kind](config, backend, **options)
    if model.fingerprint() != fingerprint:
        raise CheckpointError(
            f"checkpoint {name}: the fixed weights regenerated from its configuration do not match "
            f"its fingerprint, so this nmnp draws random weights differently from the one that wrote it"
        )
    _restore_tasks(model, kind, tasks, layout, arrays, name)
    return Checkpoint(model, extra, version, str(header.get("nmnp_version", "unknown")))


def _restore_tasks(model, kind: str, tasks: list, layout: list, arrays: dict, name: str) -> None:
    """Append the stored tasks to ``model`` (which has none) and set its shared state, once
    the learner has accepted every task's state (``restored_state_problem``)."""
    if kind == "crwn":
        for i, (task_name, frozen) in enumerate(tasks):
            model.tasks.append(
                TaskContext(arrays[f"tasks/{i}/gains"], arrays[f"tasks/{i}/strength"], task_name, frozen)
            )
        return
    from .strategies.base import StrategyTask

    records = []
    for i, (task_name, frozen) in enumerate(tasks):
        state = {key: arrays[_array_name(owner, key)] for owner, key, _, _ in layout if owner == i}
        problem = model.restored_state_problem(state, frozen)
        if problem is not None:
            raise CheckpointError(f"checkpoint {name}: task {i} ({task_name!r}) {problem}")
        records.append(StrategyTask(task_name, frozen, state))
    model.tasks.extend(records)
    for key, target in model.shared_state().items():
        target[...] = arrays[_array_name("shared", key)]  # in place: the arrays training updates


def read(path, backend: str = "cpu", expected_config=None, into=None) -> Checkpoint:
    """Load and verify a checkpoint file: the model and the ``extra`` data stored with it.

    Parameters
    ----------
    path : str, bytes or PathLike
    backend : {"numpy", "cpu", "cuda"}
        Backend of the returned model (a checkpoint does not depend on the backend).
    expected_config : NetworkConfig or dict, optional
        Refuse a checkpoint of any other configuration, naming the differences.
    into : ModulatedNetwork or a comparison strategy, optional
        A learner without tasks to restore the tasks into, instead of building a new one:
        of the stored kind (a ModulatedNetwork of any subclass for the network, the same
        strategy with the same options otherwise); its configuration is the expected one and
        its fixed weights must match the fingerprint. ``backend`` is then ignored.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, truncated, tampered with, of a newer format
        version, malformed, from another configuration, or its fixed weights do not
        regenerate to the stored fingerprint.
    ConfigError
        If ``path`` is not a path (``None``, a number, an empty string) or
        ``expected_config`` is neither a NetworkConfig nor a dict: before the file is read
        (as is an ``into`` that is not a learner, a CheckpointError).
    BackendError
        If ``backend`` cannot run here.
    """
    path = as_path(path, "checkpoint path")
    expected_config = _expected_config(expected_config)
    _check_into(into)
    return from_bytes(_read_file(path), str(path), backend, expected_config, into)


def load(path, backend: str = "cpu", expected_config=None):
    """Load a checkpoint file as the learner it holds: a :class:`~nmnp.model.ModulatedNetwork`,
    or the comparison strategy that wrote it (see :func:`read`).

    Examples
    --------
    >>> import nmnp
    >>> net = nmnp.FlyNet(seed=0)
    >>> net.add_task("upright")
    0
    >>> path = net.save("fly.nmnp")  # atomically, in the current folder
    >>> same = nmnp.load("fly.nmnp")
    >>> same.n_tasks, same.tasks[0].name
    (1, 'upright')
    """
    return read(path, backend, expected_config).model


def is_checkpoint(path) -> bool:
    """Whether the file at ``path`` starts with the checkpoint magic (False if it cannot be
    read): what no report, figure or left-over clean-up may replace or delete by mistake."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_extra(path) -> dict | None:
    """The ``extra`` data of a checkpoint, verified (magic, version, length, checksum), without
    regenerating the network: cheap enough to poll or to inspect a run before resuming it."""
    name = str(as_path(path, "checkpoint path"))
    header, _ = _verified_header(_read_file(path), name)
    extra = header.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {name}'s 'extra' entry is not a JSON object")
    return extra


def describe(path) -> dict:
    """A summary of a checkpoint without regenerating the network: version, learner
    (``"crwn"`` or a strategy's name), configuration, task names and file size (for printing,
    or checking what a file holds)."""
    data = _read_file(path)
    path = as_path(path, "checkpoint path")
    header, _ = _verified_header(data, str(path))
    version = _PRELUDE.unpack_from(data)[1]
    learner = header.get("learner") if version >= 2 else {"strategy": "crwn"}
    return {
        "version": version,
        "learner": learner.get("strategy") if isinstance(learner, dict) else None,
        "nmnp_version": header.get("nmnp_version"),
        "config": header.get("config"),
        "tasks": [task_name for task_name, _ in _tasks(header, str(path))],
        "bytes": len(data),
        "path": os.fspath(path),
    }
