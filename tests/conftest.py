"""Shared fixtures: the backend parametrisation and the hypothesis profile."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# JIT compilation makes the first example of a test slow: no deadlines. The backend
# fixtures return immutable names, so sharing them across examples is safe.
settings.register_profile(
    "nmnp", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Under Numba's CUDA simulator every cuda kernel runs as Python threads: fewer examples, so
# the simulator pass of .ci/run (which selects only the cuda tests) stays within minutes.
settings.register_profile("cudasim", parent=settings.get_profile("nmnp"), max_examples=10)
_SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cudasim" if _SIMULATED else "nmnp"))


def cuda_skip_reason() -> str | None:
    """Why the cuda backend cannot run here, or None if it can (GPU or simulator)."""
    from nmnp.errors import BackendError
    from nmnp.kernels import get_backend

    try:
        get_backend("cuda")
    except BackendError as err:
        return str(err)
    except ImportError as err:
        return f"cuda backend not importable: {err}"
    return None


_CUDA_REASON = cuda_skip_reason() if os.environ.get("NMNP_SKIP_CUDA") != "1" else "NMNP_SKIP_CUDA=1"

BACKEND_PARAMS = [
    "numpy",
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(_CUDA_REASON is not None, reason=str(_CUDA_REASON))]),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """Every backend name; cuda is skipped with the reason when it cannot run."""
    return request.param


@pytest.fixture(params=[p for p in BACKEND_PARAMS if p != "numpy"])
def fast_backend(request):
    """The fast backends, compared against the numpy reference."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
