"""The stage graph: order, caching by input hash, invalidation, resume of an interrupted resumable stage."""

from __future__ import annotations

import json

import pytest

from polyalign.errors import ConfigError
from polyalign.pipeline.graph import Pipeline, Stage, select, topological_order


def _writer(calls, text):
    def run(ctx):
        calls.append((ctx.name, ctx.resuming))
        inputs = "".join((d / "out.txt").read_text() for d in ctx.deps.values())
        (ctx.work_dir / "out.txt").write_text(inputs + text)
        return {"len": len(inputs + text)}
    return run


def _stages(calls, b_config=1):
    return [
        Stage("a", _writer(calls, "A")),
        Stage("b", _writer(calls, "B"), deps=("a",), config={"x": b_config}),
        Stage("c", _writer(calls, "C"), deps=("b",)),
        Stage("d", _writer(calls, "D"), deps=("a",)),
    ]


def test_order_and_selection():
    calls = []
    stages = _stages(calls)
    names = [s.name for s in topological_order(list(reversed(stages)))]
    assert names.index("a") < names.index("b") < names.index("c")
    assert [s.name for s in select(stages, ["c"])] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="unknown stage"):
        select(stages, ["nope"])
    with pytest.raises(ConfigError, match="unknown stage 'zz'"):
        topological_order([Stage("x", _writer(calls, "x"), deps=("zz",))])
    with pytest.raises(ConfigError, match="cycle"):
        topological_order([Stage("x", _writer(calls, "x"), deps=("y",)), Stage("y", _writer(calls, "y"), deps=("x",))])


def test_rerun_skips_and_config_change_invalidates_downstream(tmp_path):
    calls = []
    results = Pipeline(_stages(calls), tmp_path, log=lambda m: None).run()
    assert [r.status for r in results] == ["ran"] * 4
    assert (tmp_path / "c" / "out.txt").read_text() == "ABC"
    manifest = json.loads((tmp_path / "c" / "stage.json").read_text())
    assert manifest["summary"] == {"len": 3} and manifest["cache_key"]

    calls.clear()
    results = Pipeline(_stages(calls), tmp_path, log=lambda m: None).run()
    assert [r.status for r in results] == ["cached"] * 4 and calls == []

    results = Pipeline(_stages(calls, b_config=2), tmp_path, log=lambda m: None).run()
    assert {r.name: r.status for r in results} == {"a": "cached", "b": "ran", "c": "ran", "d": "cached"}
    assert [c[0] for c in calls] == ["b", "c"]


def test_input_file_change_invalidates(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("one")
    calls = []
    stages = [Stage("a", _writer(calls, "A"), inputs=(src,))]
    Pipeline(stages, tmp_path / "runs", log=lambda m: None).run()
    assert Pipeline(stages, tmp_path / "runs", log=lambda m: None).status() == {"a": "cached"}
    src.write_text("two")
    assert Pipeline(stages, tmp_path / "runs", log=lambda m: None).status() == {"a": "stale"}


def test_interrupted_resumable_stage_resumes_and_others_restart(tmp_path):
    state = {"fail": True}
    seen = []

    def train(ctx):
        seen.append(ctx.resuming)
        ckpt = ctx.work_dir / "checkpoint-1"
        if ctx.resuming:
            assert ckpt.exists()
        ckpt.mkdir(exist_ok=True)
        if state["fail"]:
            raise KeyboardInterrupt("killed")
        (ctx.work_dir / "out.txt").write_text("T")

    def plain(ctx):
        seen.append(("plain", ctx.resuming, (ctx.work_dir / "junk").exists()))
        (ctx.work_dir / "junk").write_text("x")
        if state["fail"]:
            raise RuntimeError("boom")
        (ctx.work_dir / "out.txt").write_text("P")

    stages = [Stage("train", train, resumable=True), Stage("plain", plain)]
    for name in ("train", "plain"):
        with pytest.raises((KeyboardInterrupt, RuntimeError)):
            Pipeline(stages, tmp_path, log=lambda m: None).run([name])
    assert (tmp_path / ".train.partial" / "checkpoint-1").exists()
    assert not (tmp_path / "train").exists()
    state["fail"] = False
    results = Pipeline(stages, tmp_path, log=lambda m: None).run()
    assert {r.name: r.status for r in results} == {"train": "resumed", "plain": "ran"}
    assert seen == [False, ("plain", False, False), True, ("plain", False, False)]
    assert (tmp_path / "train" / "out.txt").read_text() == "T"
    assert not (tmp_path / ".train.partial").exists()
