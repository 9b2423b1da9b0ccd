"""The demo's peak memory, measured in a child process (``python -m nmnp.bench --demo-memory``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def child_peak_memory(argv: list[str]) -> dict:
    """Run ``argv`` in a child process and measure that child alone.

    Returns
    -------
    dict
        ``peak_rss_bytes`` (the child's peak resident memory), ``seconds`` (wall time),
        ``returncode`` and ``stderr`` (its text).

    Notes
    -----
    The peak comes from ``os.wait4`` on the child's own process id. ``getrusage(RUSAGE_CHILDREN)``
    would give the largest peak of every child this process ever waited for, which is wrong
    in a long-lived process (a test session, a notebook) that ran a bigger child earlier.
    POSIX only, like ``ru_maxrss`` itself.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - start
        # wait4 reaped the child: tell Popen, or it would wait for it a second time
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return {"peak_rss_bytes": int(peak), "seconds": seconds,
            "returncode": proc.returncode, "stderr": stderr}


def measure_demo_memory() -> dict:
    """Run ``python -m nmnp.demo`` in a child process; its peak resident memory and time.

    Returns
    -------
    dict
        ``peak_rss_bytes`` and ``seconds``; see :func:`child_peak_memory`.

    Raises
    ------
    RuntimeError
        If the demo fails: a failed run has no peak worth reporting.
    """
    with tempfile.TemporaryDirectory() as folder:
        child = child_peak_memory([sys.executable, "-m", "nmnp.demo", "--out", f"{folder}/demo.png"])
    if child["returncode"] != 0:
        raise RuntimeError(f"the demo failed: {child['stderr'].strip()[-500:]}")
    return {"peak_rss_bytes": child["peak_rss_bytes"], "seconds": child["seconds"]}
