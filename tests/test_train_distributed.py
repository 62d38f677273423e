"""A 2-process gloo run of Bucket-Aware SFT reproduces the 1-process run (loss, grad norm, DRO weights and
parameters), with the same global batch per optimizer step: 1 process x micro-batch 2 x GA 4 against
2 processes x micro-batch 2 x GA 2; and the same 2-process run with padding-free batches reproduces the padded
1-process run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_factory import make_tiny_model_dir

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "ddp_sft_worker.py"


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _one_and_two_processes(tmp_path: Path, name: str, port: int, one_args: list[str],
                           two_args: list[str]) -> tuple[dict, dict]:
    """The worker's JSON from one process (`one_args`) and from a 2-process gloo launch (`two_args`)."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate CLI not found")
    model_dir = make_tiny_model_dir(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    one, two = tmp_path / "one.json", tmp_path / f"{name}.json"
    _run([sys.executable, str(WORKER), str(model_dir), str(one), *one_args], env)
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
          "no", "--dynamo_backend", "no", "--main_process_port", str(port), str(WORKER), str(model_dir), str(two),
          *two_args], env)
    return json.loads(one.read_text()), json.loads(two.read_text())


@pytest.mark.slow
def test_two_process_gloo_run_reproduces_one_process(tmp_path: Path) -> None:
    a, b = _one_and_two_processes(tmp_path, "two", 29517, ["2", "4", "3"], ["2", "2", "3"])
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert len(a["loss"]) == len(b["loss"]) == 3
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-3)
    np.testing.assert_allclose(b["dro_weights"], a["dro_weights"], rtol=1e-4)
    np.testing.assert_allclose(b["params"], a["params"], rtol=1e-3, atol=1e-5)
    assert len(set(np.round(a["dro_weights"], 6))) > 1  # DRO really moved the weights


@pytest.mark.slow
def test_two_process_padding_free_run_reproduces_the_padded_one_process_run(tmp_path: Path) -> None:
    a, b = _one_and_two_processes(tmp_path, "two_pf", 29518, ["2", "4", "3", "0"], ["2", "2", "3", "1"])
    assert (a["world_size"], a["padding_free"], b["world_size"], b["padding_free"]) == (1, False, 2, True)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-3)
    np.testing.assert_allclose(b["dro_weights"], a["dro_weights"], rtol=1e-4)
    np.testing.assert_allclose(b["params"], a["params"], rtol=1e-3, atol=1e-5)
