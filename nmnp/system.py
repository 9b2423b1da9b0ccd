"""What machine and software a measurement ran on, and who owns the CPU threads."""

from __future__ import annotations

import numbers
import os
import platform
import sys


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (``platform.processor()``
    where ``/proc/cpuinfo`` is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    """The vector instruction sets this CPU reports (x86 flags from /proc/cpuinfo)."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "asimd")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def describe_machine() -> dict:
    """CPU, cores, threads and library versions, for printing next to any measurement."""
    import numba
    import numpy

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "simd": simd_flags(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": _threading_layer(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        # other work on the machine skews every timing: record how busy it was
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return "not yet chosen"


def set_threads(n: int | None) -> int:
    """Use ``n`` threads for Numba kernels (all cores when None) and one for BLAS.

    Numba's parallel regions and a multi-threaded BLAS would otherwise fight over the same
    cores (each pool's workers spin while the other runs), so nmnp keeps BLAS single-threaded
    whenever Numba owns the threads. Returns the thread count in use.
    """
    import numba

    from .errors import ConfigError

    limit = numba.config.NUMBA_NUM_THREADS
    if n is None:
        n = limit
    # NumPy integers are counts too; True is an int to Python, but never a count
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"threads must be a positive integer, got {n!r}")
    n = int(n)
    if n > limit:
        raise ConfigError(f"threads={n} exceeds the {limit} threads Numba was started with")
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # threadpoolctl is a dependency; tolerate its absence all the same
        pass
    return n
