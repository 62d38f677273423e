"""Artifact integrity: stage.json records the files each stage wrote; a rerun finds a corrupted, hand-edited,
deleted or added file, names it and rebuilds that stage (or refuses with rebuild=False); a dependency rebuilt with
other contents reruns what used it, one rebuilt identically does not."""

from __future__ import annotations

import json
import os

import pytest

from polyalign.errors import IntegrityError
from polyalign.pipeline.graph import Pipeline, Stage


def _writer(calls, text, sub=""):
    def run(ctx):
        calls.append(ctx.name)
        inputs = "".join((d / sub / "out.txt").read_text() for d in ctx.deps.values())
        (ctx.work_dir / sub).mkdir(parents=True, exist_ok=True)
        (ctx.work_dir / sub / "out.txt").write_text(inputs + text)
    return run


def _pipeline(tmp_path, calls, log=None):
    stages = [Stage("a", _writer(calls, "A", "model")), Stage("b", _writer(calls, "B", "model"), deps=("a",))]
    return Pipeline(stages, tmp_path, log=log or (lambda m: None))


def test_stage_json_records_every_file_with_its_hash(tmp_path):
    _pipeline(tmp_path, []).run()
    record = json.loads((tmp_path / "a" / "stage.json").read_text())
    assert set(record["files"]) == {"model/out.txt"}
    assert record["files"]["model/out.txt"]["size"] == 1
    assert set(record["dep_digests"]) == set()
    assert set(json.loads((tmp_path / "b" / "stage.json").read_text())["dep_digests"]) == {"a"}


@pytest.mark.parametrize("edit", ["same_size", "longer", "deleted", "added", "touched_only", "record"])
def test_modified_artifact_is_named_and_rebuilt(tmp_path, edit):
    calls, messages = [], []
    _pipeline(tmp_path, calls).run()
    target = tmp_path / "a" / "model" / "out.txt"
    if edit == "same_size":
        target.write_text("Z")
    elif edit == "longer":
        target.write_text("A, edited by hand")
    elif edit == "deleted":
        target.unlink()
    elif edit == "record":
        target = tmp_path / "a" / "stage.json"
        target.write_text(target.read_text()[:50])
    elif edit == "added":
        (tmp_path / "a" / "model" / "extra.bin").write_bytes(b"x")
    else:
        os.utime(target, ns=(1, 1))  # a new mtime, same bytes: hashed, found equal, not rebuilt
    calls.clear()
    results = _pipeline(tmp_path, calls, messages.append).run()
    status = {r.name: r.status for r in results}
    if edit == "touched_only":
        assert status == {"a": "cached", "b": "cached"} and calls == []
        return
    assert status == {"a": "ran", "b": "cached"}, "a deterministic rebuild leaves its dependents cached"
    [line] = [m for m in messages if m.startswith("[rebuild] a:")]
    named = {"added": "model/extra.bin", "record": "stage.json"}.get(edit, "model/out.txt")
    assert str(tmp_path / "a" / named) in line
    assert {"same_size": "sha256", "longer": "size", "deleted": "missing", "added": "added",
            "record": "unreadable"}[edit] in line
    assert (tmp_path / "a" / "model" / "out.txt").read_text() == "A"
    print(line)


def test_no_rebuild_refuses_and_names_the_file(tmp_path):
    calls = []
    _pipeline(tmp_path, calls).run()
    (tmp_path / "b" / "model" / "out.txt").write_text("AX")
    with pytest.raises(IntegrityError, match=r"stage 'b'.*b/model/out\.txt: changed after the stage wrote it") as exc:
        _pipeline(tmp_path, calls).run(rebuild=False)
    assert (tmp_path / "b" / "model" / "out.txt").read_text() == "AX", "refusing leaves the folder as it is"
    assert _pipeline(tmp_path, calls).status()["b"] == "modified"
    print(exc.value)


def test_full_check_catches_an_edit_that_kept_size_and_mtime(tmp_path):
    calls = []
    _pipeline(tmp_path, calls).run()
    target = tmp_path / "a" / "model" / "out.txt"
    st = target.stat()
    target.write_text("Q")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert {r.name: r.status for r in _pipeline(tmp_path, calls).run()}["a"] == "cached", "the fast check trusts it"
    assert {r.name: r.status for r in _pipeline(tmp_path, calls).run(full_check=True)}["a"] == "ran"


def test_dependency_rebuilt_with_other_contents_reruns_dependents(tmp_path):
    calls = []
    _pipeline(tmp_path, calls).run()
    texts = iter(["A2"])
    stages = [Stage("a", _writer(calls, next(texts), "model")), Stage("b", _writer(calls, "B", "model"), deps=("a",))]
    (tmp_path / "a" / "model" / "out.txt").write_text("corrupt")
    messages = []
    results = Pipeline(stages, tmp_path, log=messages.append).run()
    assert [r.status for r in results] == ["ran", "ran"]
    assert any("stage 'a' was rebuilt with different contents" in m for m in messages)
    assert (tmp_path / "b" / "model" / "out.txt").read_text() == "A2B"
