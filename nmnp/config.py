"""The configuration that fully determines a network's fixed random weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .errors import ConfigError

_DTYPES = ("float32", "float64")
#: Most random draws the fixed weights may take (n_units x max(n_inputs, n_outputs), about
#: 2 x 10^9). A network beyond it (a slip such as 10**12 units, or a damaged checkpoint
#: header) is refused at once instead of running out of memory or building for minutes.
MAX_RANDOM_DRAWS = 1 << 31


def _dtype_name(value) -> str:
    """The name in ``_DTYPES`` of ``value``: the name itself, a :class:`numpy.dtype`
    (native byte order) or a NumPy scalar type such as ``np.float32``; ConfigError for
    anything else (another precision, a big-endian dtype, None, Python's ``float``...)."""
    if isinstance(value, str):
        if value in _DTYPES:
            return value
    elif isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        dtype = np.dtype(value)
        if dtype.name in _DTYPES and dtype.isnative:
            return dtype.name
    raise ConfigError(f"dtype must be one of {_DTYPES} (a name, a NumPy dtype or np.float32 / "
                      f"np.float64), got {value!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """Shapes, seed and precision of a neuromodulated random-weight network.

    The fixed weights (encoder indices and readout) are a pure function of this object, so a
    network is regenerated exactly from it.

    Parameters
    ----------
    n_inputs : int
        Input dimension (784 for a 28 x 28 image).
    n_units : int
        Encoder units ("Kenyon cells").
    inputs_per_unit : int
        k, the number of distinct inputs each encoder unit sums (1 <= k <= n_inputs).
    n_outputs : int
        Output classes.
    seed : int
        Seed of every random draw (non-negative).
    dtype : {"float32", "float64"}, or the NumPy dtype or type of one of them
        Precision of weights and activity; float64 is for gradient checks. Stored as its
        name (``NetworkConfig(dtype=np.float32).dtype == "float32"``), so that equal
        configurations hash alike and :meth:`to_dict` is plain JSON.
    """

    n_inputs: int = 784
    n_units: int = 7840
    inputs_per_unit: int = 7
    n_outputs: int = 10
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        # frozen: the normalised name replaces what was given, as dataclasses do it
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dtype":
                continue
            elif not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ConfigError(f"{f.name} must be an integer, got {value!r}")
        for name in ("n_inputs", "n_units", "inputs_per_unit", "n_outputs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.inputs_per_unit > self.n_inputs:
            raise ConfigError(
                f"inputs_per_unit (k={self.inputs_per_unit}) cannot exceed "
                f"n_inputs ({self.n_inputs}): each unit reads k distinct inputs"
            )
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be a non-negative 63-bit integer, got {self.seed}")
        draws = int(self.n_units) * max(int(self.n_inputs), int(self.n_outputs))
        if draws > MAX_RANDOM_DRAWS:
            raise ConfigError(
                f"a network of {self.n_units} units x {max(self.n_inputs, self.n_outputs)} "
                f"inputs or outputs is too large to regenerate: {draws:,} random draws, more than "
                f"the {MAX_RANDOM_DRAWS:,} allowed"
            )

    @classmethod
    def flynet(cls, seed: int = 0, dtype: str = "float32") -> "NetworkConfig":
        """The reference architecture: 784 -> 7840 units (k = 7) -> 10 outputs."""
        return cls(784, 7840, 7, 10, seed, dtype)

    def to_dict(self) -> dict:
        """The configuration as JSON-ready values (what checkpoints store); see :meth:`from_dict`."""
        return {k: (int(v) if k != "dtype" else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        """The configuration :meth:`to_dict` wrote; ConfigError for anything else."""
        if not isinstance(d, dict):
            raise ConfigError(f"a network configuration must be a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown network configuration keys: {sorted(unknown)}")
        return cls(**d)
