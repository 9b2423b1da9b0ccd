"""nmnp: neuromodulated random-weight networks for continual learning, from scratch.

The weights are random and fixed forever; each task learns only a context (one gain per
hidden unit plus one strength) that modulates activity through them. See the README and
``tutorials/`` for a guided tour.
"""

__version__ = "0.1.0"

from .config import NetworkConfig  # noqa: E402
from .errors import NmnpError  # noqa: E402
from .model import FlyNet, ModulatedNetwork, TaskContext  # noqa: E402
from .checkpoint import load  # noqa: E402

__all__ = ["FlyNet", "ModulatedNetwork", "NetworkConfig", "NmnpError", "TaskContext", "__version__", "load"]
