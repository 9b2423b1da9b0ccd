"""The demo's peak memory, measured in a child process (``python -m nmnp.bench --demo-memory``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time


# Runs argv[1:] and prints its exit status and peak (ru_maxrss, from wait4 on its pid).
_LAUNCHER = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: (child.kill(), sys.exit(143)))
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
print(child.returncode, usage.ru_maxrss)
"""


def child_peak_memory(argv: list[str]) -> dict:
    """Run ``argv`` in a child process and measure that child alone.

    Returns
    -------
    dict
        ``peak_rss_bytes`` (the child's peak resident memory), ``seconds`` (wall time),
        ``returncode`` and ``stderr`` (its text).

    Notes
    -----
    Two ways of reading a child's peak count memory it never used:

    * ``getrusage(RUSAGE_CHILDREN)`` gives the largest peak of every child this process ever
      waited for: wrong in a long-lived process (a test session, a notebook) that ran a
      bigger child earlier;
    * on Linux, a child's own ``ru_maxrss`` starts at its parent's peak, because the parent's
      memory is the child's until ``exec`` replaces it (``subprocess`` forks with ``vfork``).

    So a small launcher (a bare Python, about 10 MB) starts ``argv`` and reads its peak with
    ``os.wait4`` on its process id: what it reports is ``argv``'s own peak, give or take the
    launcher's size, whatever the caller's. POSIX only, like ``ru_maxrss`` itself.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *argv],
                                    stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            out, _ = launcher.communicate()
        except BaseException:
            launcher.terminate()  # the launcher kills argv's process on SIGTERM
            launcher.wait()
            raise
        seconds = time.perf_counter() - start
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    try:
        returncode, peak = (int(v) for v in out.split())
    except ValueError:
        raise RuntimeError(f"could not measure {argv[0]}: {stderr.strip()[-500:]}") from None
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024
    return {"peak_rss_bytes": int(peak_bytes), "seconds": seconds,
            "returncode": returncode, "stderr": stderr}


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
