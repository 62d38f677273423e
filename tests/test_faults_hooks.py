"""The fault hooks themselves: spec parsing, a point that fires only at its stage and count (in a real child
process killed by SIGKILL), the trace, and no effect when unset."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from polyalign import faults

CHILD = """
from polyalign import faults
with faults.in_stage("s"):
    for i in range(3):
        faults.point("p")
        print("after", i, flush=True)
"""


def test_parse_specs():
    assert faults.parse_specs("data:begin, sft:step#3=hang,*:atomic#2") == [
        ("data", "begin", 1, "kill"), ("sft", "step", 3, "hang"), ("*", "atomic", 2, "kill")]
    for bad in ("data", "data:", ":x", "a:b#x", "a:b=explode"):
        with pytest.raises(ValueError, match="POLYALIGN_FAULT"):
            faults.parse_specs(bad)


def _child(env: dict[str, str]) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k not in (faults.FAULT_ENV, faults.TRACE_ENV)}
    full = {**inherited, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=full, timeout=60)


def test_point_kills_at_its_stage_and_count(tmp_path):
    out = _child({faults.FAULT_ENV: "s:p#2", faults.TRACE_ENV: str(tmp_path / "trace")})
    assert out.returncode == -9 and out.stdout.split("\n")[:2] == ["after 0", ""]
    assert (tmp_path / "trace").read_text() == "s\tp\t1\ns\tp\t2\n"
    assert _child({faults.FAULT_ENV: "other:p"}).stdout.count("after") == 3
    assert _child({}).returncode == 0


def test_whole_run_loss_of_a_resumed_training():
    from polyalign.train.run import whole_run_loss

    losses = [4.0, 3.0, 2.0, 1.0]
    # resumed after step 1: the session's mean is over steps 2..4, the checkpoint recorded the sum of step 1
    assert whole_run_loss(sum(losses[1:]) / 3, losses[0], 1, 4) == pytest.approx(sum(losses) / 4)
