"""Fault-injection harness (slow): the small pipeline (tests/test_pipeline_run.small_config, methods base, sft and
hdpo: every stage kind) is SIGKILLed at every fault point each stage reaches (polyalign.faults), then run again.

For each (stage, point): the stage's folder is removed, `polyalign run --stages STAGE` runs with
POLYALIGN_FAULT=STAGE:POINT and must die by SIGKILL; every finished stage folder must then match the hashes in its
stage.json (nothing half-written is visible under a finished name); a plain rerun must finish and the stage's
folder must equal the one of an uninterrupted run (bytes, except the volatile keys of JSON metadata, and floats
within 1e-6). A forced rebuild killed between moving the old folder aside and the new one in ('swap') is checked
the same way. The table is printed and written to $POLYALIGN_FAULT_TABLE when set.

Runs are forked from tests/fault_runner.py (libraries imported once), so a run costs its stage's work only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from polyalign.pipeline.graph import STAGE_RECORD, UNHASHED
from polyalign.pipeline.integrity import check_files
from test_pipeline_run import small_config

POINT_ORDER = ("begin", "atomic", "append", "step", "saved", "body", "rename", "renamed")
VOLATILE = {"created", "wall_time_s", "timings", "timings_s", "generation_seconds", "tokens_per_second",
            "train_runtime_s", "mtime_ns", "argv", "resumed", "resumed_from", "n_generated_now", "n_skipped_done",
            "inputs", "train_runtime", "train_samples_per_second", "train_steps_per_second"}
TEXT_VOLATILE = re.compile(r"wall time [0-9.]+ s")


class Runner:
    """The fork server: one `polyalign ...` per call, in a forked child; returns its status (-9: SIGKILL)."""

    def __init__(self, logs: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fault_runner.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self.proc.stdout.readline())["ready"]
        self.logs = logs
        self.n = 0

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        self.n += 1
        log = self.logs / f"run{self.n:03d}.log"
        self.proc.stdin.write(json.dumps({"args": list(args), "env": env or {}, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["rc"], log.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _norm(obj):
    if isinstance(obj, dict):
        return {k: _norm(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_norm(v) for v in obj]
    return obj


def _close(a, b, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{where}: keys {sorted(set(a) ^ set(b))}")
        for k in set(a) & set(b):
            _close(a[k], b[k], f"{where}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", out)
    elif isinstance(a, float) and isinstance(b, (int, float)):
        if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
            out.append(f"{where}: {a} != {b}")
    elif a != b:
        out.append(f"{where}: {str(a)[:60]!r} != {str(b)[:60]!r}")


def compare_folders(got: Path, ref: Path) -> list[str]:
    """Differences between a stage folder and the uninterrupted run's (empty when equal)."""
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                and not p.relative_to(root).as_posix().startswith("cache/")}
    a, b = files(got), files(ref)
    diffs = [f"only in one: {sorted(a ^ b)}"] if a != b else []
    for rel in sorted(a & b):
        x, y = (got / rel).read_bytes(), (ref / rel).read_bytes()
        if x == y:
            continue
        if rel.endswith(".json"):
            found: list[str] = []
            jx, jy = _norm(json.loads(x)), _norm(json.loads(y))
            if rel == STAGE_RECORD:  # file hashes: every file but the manifests must be byte-identical
                for table in (jx, jy):
                    table["files"] = {k: v["sha256"] for k, v in table.get("files", {}).items()
                                      if not k.endswith("manifest.json")}
            _close(jx, jy, rel, found)
            diffs.extend(found)
        elif rel.endswith((".md", ".html")):
            if TEXT_VOLATILE.sub("", x.decode()) != TEXT_VOLATILE.sub("", y.decode()):
                diffs.append(f"{rel}: text differs")
        else:
            diffs.append(f"{rel}: bytes differ")
    return diffs


def finished_intact(runs: Path) -> list[str]:
    """Problems of any finished stage folder (one with a stage.json) against its recorded hashes (full hashing)."""
    problems = []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = folder / STAGE_RECORD
        if not record.exists():
            problems.append(f"{folder}: a stage folder without {STAGE_RECORD}")
            continue
        problems += check_files(folder, json.loads(record.read_text())["files"], full=True, exclude=UNHASHED)
    return problems


def kill_points(trace: Path) -> dict[str, list[str]]:
    """Per stage (in run order), the points to kill at: each point it reached (the first and last atomic write),
    then the swap of a forced rebuild."""
    counts: Counter[tuple[str, str]] = Counter()
    order: list[str] = []
    for line in trace.read_text().splitlines():
        stage, point, n = line.split("\t")
        counts[(stage, point)] = max(counts[(stage, point)], int(n))
        if stage not in order and stage != "-":
            order.append(stage)
    plan = {}
    for stage in order:
        points = []
        for point in POINT_ORDER:
            n = counts.get((stage, point), 0)
            if n:
                points.append(f"{point}#1")
                if point == "atomic" and n > 1:
                    points.append(f"atomic#{n}")
        # a forced rebuild moves the old folder aside first: the graph's swap comes after the stage's own ones
        points.append(f"swap#{counts.get((stage, 'swap'), 0) + 1}")
        plan[stage] = points
    return plan


@pytest.mark.slow
def test_sigkill_at_every_point_of_every_stage_resumes_to_the_same_result(tmp_path, shared_data_dir):
    started = time.time()
    config = small_config(tmp_path, shared_data_dir)
    raw = yaml.safe_load(config.read_text())
    raw["methods"] = ["base", "sft", "hdpo"]
    config.write_text(yaml.safe_dump(raw))
    runs, ref = tmp_path / "runs", tmp_path / "ref"
    logs = tmp_path / "logs"
    logs.mkdir()
    run = Runner(logs)
    try:
        trace = tmp_path / "trace.tsv"
        rc, text = run("run", str(config), env={"POLYALIGN_FAULT_TRACE": str(trace)})
        assert rc == 0, text[-3000:]
        runs.rename(ref)
        plan = kill_points(trace)
        assert len(plan) == 17, list(plan)  # every stage of base, sft and hdpo
        rows = []
        for stage, points in plan.items():
            for point in points:
                forced = point.startswith("swap")
                if not forced:
                    shutil.rmtree(runs / stage, ignore_errors=True)
                rc, text = run("run", str(config), "--stages", stage, *(["--force", stage] if forced else []),
                               env={"POLYALIGN_FAULT": f"{stage}:{point}"})
                killed = rc == -9
                problems = finished_intact(runs)
                rc2, text2 = run("run", str(config), "--stages", stage)
                diffs = compare_folders(runs / stage, ref / stage) if rc2 == 0 else [f"rerun failed: {text2[-800:]}"]
                how = re.search(rf"\[(skip|run|resume)\] {re.escape(stage)}\b", text2)
                rows.append({"stage": stage, "point": point, "killed": killed, "intact": not problems,
                             "rerun": how.group(1) if how else "?", "equal": not diffs,
                             "detail": (problems + diffs)[:3] or ([text[-500:]] if not killed else [])})
        rc, text = run("run", str(config))
        assert rc == 0, text[-3000:]
        all_cached = "[run]" not in text and "[resume]" not in text and "[rebuild]" not in text
        whole = [d for stage in plan for d in compare_folders(runs / stage, ref / stage)]
    finally:
        run.close()
    seconds = time.time() - started
    lines = [f"{'stage':<20} {'kill point':<11} {'killed':<7} {'intact':<7} {'rerun':<7} equal"]
    for r in rows:
        lines.append(f"{r['stage']:<20} {r['point']:<11} {'yes' if r['killed'] else 'NO':<7} "
                     f"{'yes' if r['intact'] else 'NO':<7} {r['rerun']:<7} {'pass' if r['equal'] else 'FAIL'}")
    lines.append(f"{len(rows)} kills, {sum(r['killed'] and r['intact'] and r['equal'] for r in rows)} resumed and "
                 f"equal; final full run all cached: {all_cached}; {run.n} runs in {seconds:.0f} s")
    table = "\n".join(lines)
    print(table)
    if os.environ.get("POLYALIGN_FAULT_TABLE"):
        Path(os.environ["POLYALIGN_FAULT_TABLE"]).write_text(table + "\n")
    bad = [r for r in rows if not (r["killed"] and r["intact"] and r["equal"])]
    assert not bad, "\n".join(f"{r['stage']} {r['point']}: {r['detail']}" for r in bad)
    assert all_cached, text[-3000:]
    assert not whole, whole[:10]
