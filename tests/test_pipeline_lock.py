"""One run per work folder, tested with real processes: a second holder is refused with the first one's pid (or
waits with wait=True / --wait); the lock of a SIGKILLed run is stale and taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyalign.errors import LockedError
from polyalign.pipeline.lock import LOCK_FILE, WorkdirLock

HOLD = """
import sys, time
from pathlib import Path
from polyalign.pipeline.lock import WorkdirLock
with WorkdirLock(sys.argv[1], wait=sys.argv[2] == "wait", log=lambda m: print(m, flush=True)):
    Path(sys.argv[3]).write_text("held")
    time.sleep(float(sys.argv[4]))
print("released", flush=True)
"""


def _hold(root: Path, flag: Path, seconds: float, wait: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", HOLD, str(root), "wait" if wait else "no", str(flag), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _until(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "the holder never took the lock"
        time.sleep(0.05)


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = _hold(tmp_path, tmp_path / "held", 60)
    try:
        _until(tmp_path / "held", holder)
        with pytest.raises(LockedError, match=rf"in use by another polyalign run \(pid {holder.pid} on ") as exc:
            with WorkdirLock(tmp_path):
                pass
        print(exc.value)
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    holder = _hold(tmp_path, tmp_path / "held", 60)
    _until(tmp_path / "held", holder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / LOCK_FILE).read_text(), "the killed run's pid stays in the file"
    messages: list[str] = []
    with WorkdirLock(tmp_path, log=messages.append):
        assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()
    assert messages == [f"[lock] {tmp_path / LOCK_FILE}: took over a stale lock left by pid {holder.pid} "
                        f"(not running)"], messages
    assert (tmp_path / LOCK_FILE).read_text() == "", "a clean exit empties the lock file"
    print(messages[0])


def test_wait_queues_behind_the_holder(tmp_path):
    holder = _hold(tmp_path, tmp_path / "held", 2.0)
    try:
        _until(tmp_path / "held", holder)
        waiter = _hold(tmp_path, tmp_path / "held2", 0, wait=True)
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, out
        assert f"[lock] waiting for work folder {tmp_path}: in use by pid {holder.pid}" in out
        assert holder.wait(timeout=30) == 0 and "released" in holder.stdout.read()
        print(out.splitlines()[0])
    finally:
        holder.kill()


@pytest.mark.slow
def test_two_polyalign_runs_on_one_workdir(tmp_path, shared_data_dir):
    from test_pipeline_run import small_config

    config = small_config(tmp_path, shared_data_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "polyalign.cli", "run", str(config), "--stages", "data"]
    first = subprocess.Popen(cmd, env={**env, "POLYALIGN_FAULT": "data:begin=hang"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    partial = tmp_path / "runs" / ".data.partial"
    try:
        _until(partial / ".stage_key", first, timeout=300)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another polyalign run (pid {first.pid} on " in second.stderr
        print(second.stderr.strip())
    finally:
        first.kill()
        first.wait()
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"took over a stale lock left by pid {first.pid} (not running)" in third.stderr
    assert (tmp_path / "runs" / "data" / "stage.json").exists()
    print([line for line in third.stderr.splitlines() if "[lock]" in line][0])
