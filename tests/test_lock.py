"""One writer per checkpoint: a second run on a file another process is writing stops at once,
before any training, and the lock disappears with the process that held it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from nmnp import lock
from nmnp.data.datasets import Dataset, load_dataset
from nmnp.errors import ConfigError
from nmnp.experiment import ExperimentConfig, run_experiment

pytestmark = pytest.mark.skipif(lock.fcntl is None, reason="the tests drive POSIX flock")

# A child process that takes the lock on argv[1], says so, and holds it until stdin closes
# (or until it is killed).
HOLDER = """
import sys
from nmnp import lock
with lock.exclusive(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock on tmp_path/run.nmnp; yields (process, path)."""
    path = tmp_path / "run.nmnp"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_second_holder_is_refused_with_the_path_and_the_lock_file(tmp_path):
    path = tmp_path / "run.nmnp"
    with lock.exclusive(path) as side:
        assert side == tmp_path / "run.nmnp.lock" and side.exists()
        # flock belongs to an open file, so a second open in this process conflicts too
        with pytest.raises(ConfigError, match=r"checkpoint .*run\.nmnp is in use by another nmnp "
                                              r"process \(it holds .*run\.nmnp\.lock\)"):
            with lock.exclusive(path):
                pass
    assert not side.exists()  # released and cleaned up
    with lock.exclusive(path):  # and free to take again
        pass


def test_another_process_holding_the_lock_is_refused_until_it_ends(holder):
    proc, path = holder
    with pytest.raises(ConfigError, match="in use by another nmnp process"):
        with lock.exclusive(path):
            pass
    proc.stdin.close()  # the holder leaves its `with` block
    assert proc.wait(timeout=30) == 0
    assert not lock.lock_path(path).exists()
    with lock.exclusive(path):
        pass


def test_a_killed_holder_leaves_a_stale_file_that_the_next_run_takes(holder):
    proc, path = holder
    proc.send_signal(signal.SIGKILL)  # no `finally` runs: the .lock file stays behind
    proc.wait(timeout=30)
    assert lock.lock_path(path).exists()
    with lock.exclusive(path):  # the kernel released the lock with the process
        pass


def test_a_lock_file_deleted_between_open_and_lock_is_not_trusted(tmp_path, monkeypatch):
    """A releasing holder deletes the .lock file; a run that opened it just before must not
    hold a lock on a file nobody else can see (a third run would lock a new file too)."""
    path = tmp_path / "run.nmnp"
    side = lock.lock_path(path)
    real_try_lock, opened = lock._try_lock, []

    def holder_releases_first(fd):
        opened.append(os.fstat(fd).st_ino)
        if len(opened) == 1:
            os.unlink(side)  # the previous holder's release, just after our open
        return real_try_lock(fd)

    monkeypatch.setattr(lock, "_try_lock", holder_releases_first)
    with lock.exclusive(path):
        assert len(opened) == 2  # it noticed and locked the file the path names now
        assert side.exists() and os.stat(side).st_ino == opened[1]
        with pytest.raises(ConfigError):  # so a third run is refused
            with lock.exclusive(path):
                pass


def test_without_the_name_check_the_race_gives_two_holders(tmp_path, monkeypatch):
    """The check above matters: skip it and a third process gets a lock of its own."""
    path = tmp_path / "run.nmnp"
    side = lock.lock_path(path)
    real_try_lock, calls = lock._try_lock, []

    def holder_releases_first(fd):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(side)
        return real_try_lock(fd)

    monkeypatch.setattr(lock, "_try_lock", holder_releases_first)
    monkeypatch.setattr(lock, "_still_named", lambda fd, p: True)
    with lock.exclusive(path):
        with lock.exclusive(path):  # no ConfigError: two "exclusive" holders
            pass


@pytest.fixture(scope="module")
def tiny_data():
    d = load_dataset()
    return Dataset(d.name, d.x_train[:300], d.y_train[:300], d.x_test[:100], d.y_test[:100],
                   d.source, d.classes)


def test_a_run_on_a_checkpoint_another_process_writes_stops_before_training(holder, tiny_data):
    proc, path = holder
    trained = []
    config = ExperimentConfig(tasks=1, units=50, threads=1)
    with pytest.raises(ConfigError, match="in use by another nmnp process"):
        run_experiment(config, dataset=tiny_data, progress=False, checkpoint=path,
                       on_task_end=lambda *a: trained.append(1))
    assert not trained and not path.exists()


def test_a_resume_of_a_file_another_process_writes_is_refused(tmp_path, tiny_data):
    path = tmp_path / "run.nmnp"
    config = ExperimentConfig(tasks=2, units=50, threads=1)

    def crash_after_first_task(result, learner):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, dataset=tiny_data, progress=False, checkpoint=path,
                       on_task_end=crash_after_first_task)
    assert not lock.lock_path(path).exists()  # an interrupted run releases its lock
    before = path.read_bytes()
    with lock.exclusive(path):  # as if another `nmnp run --resume` were running
        with pytest.raises(ConfigError, match="in use by another nmnp process"):
            run_experiment(config, dataset=tiny_data, progress=False, resume=path)
    assert path.read_bytes() == before
    assert not lock.lock_path(path).exists()
    out = run_experiment(config, dataset=tiny_data, progress=False, resume=path)
    assert out["resumed_from"]["tasks_done"] == 1 and not lock.lock_path(path).exists()
