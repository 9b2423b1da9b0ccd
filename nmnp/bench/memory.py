"""The demo's peak memory, measured in a child process (``python -m nmnp.bench --demo-memory``)."""

from __future__ import annotations

import sys
import time


def measure_demo_memory() -> dict:
    """Run ``python -m nmnp.demo`` in a child process; its peak resident memory and time."""
    import resource
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nmnp.demo", "--out", f"{folder}/demo.png"],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed: {proc.stderr.strip()[-500:]}")
    # ru_maxrss of the waited-for children, in KiB on Linux (bytes on macOS)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024
    return {"peak_rss_bytes": int(peak_bytes), "seconds": seconds}
