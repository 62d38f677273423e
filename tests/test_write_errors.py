"""A full disk or a folder we may not write: a WriteError (a PolyAlignError) naming the path, the stage's partial
folder removed, the cached stages untouched. Injected failures (a writer raising ENOSPC) for a model, predictions
and a report; a read-only folder (a read-only bind mount, as root ignores file modes) and a real full tmpfs when
this machine lets the test mount one."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from polyalign.errors import PolyAlignError, WriteError
from polyalign.io import append_jsonl, atomic_path, write_json
from polyalign.pipeline.graph import Pipeline, Stage


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _model_stage(ctx):
    """A training stage's write: a model folder written atomically, its weights through a native writer."""
    with atomic_path(ctx.work_dir / "model") as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"half a model")
        _enospc()


def _predictions_stage(ctx):
    append_jsonl(ctx.work_dir / "predictions.jsonl", [{"id": "1"}])
    append_jsonl(ctx.work_dir / "predictions.jsonl", ({"id": str(i)} if i < 2 else _enospc() for i in range(3)))


def _report_stage(ctx):
    write_json(ctx.work_dir / "metrics.json", {"f1": 0.5})
    with atomic_path(ctx.work_dir / "report.html") as tmp, open(tmp, "w") as fh:
        fh.write("<html>")
        _enospc()


@pytest.mark.parametrize("body,named", [(_model_stage, ".x.partial/model"),
                                        (_predictions_stage, ".x.partial/predictions.jsonl"), (_report_stage, ".x.partial/report.html")])
def test_enospc_names_path_removes_partial_keeps_cache(tmp_path, body, named):
    ok = Stage("data", lambda ctx: (ctx.work_dir / "records.jsonl").write_text("{}\n"))
    Pipeline([ok], tmp_path, log=lambda m: None).run()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old.txt").write_text("the previous, cached output of x")
    before = _tree(tmp_path)
    failing = Stage("x", body, deps=("data",), config={"v": 2})
    with pytest.raises(WriteError) as exc:
        Pipeline([ok, failing], tmp_path, log=lambda m: None).run()
    message = str(exc.value)
    assert isinstance(exc.value, PolyAlignError)
    assert "no space left on device" in message and named in message
    assert "partial output" in message and "removed" in message and "cached stages are unchanged" in message
    assert not (tmp_path / ".x.partial").exists()
    assert _tree(tmp_path) == {**before, ".polyalign.lock": b""}
    assert not [p for p in tmp_path.rglob("*.tmp")]
    print(message)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounted(tmp_path):
    """mount(args) mounts (skips the test when this machine does not allow it) and unmounts at the end."""
    done: list[Path] = []

    def mount(*args: str) -> None:
        if os.geteuid() != 0 or not _mount(*args):
            pytest.skip("cannot mount here (needs root and CAP_SYS_ADMIN)")
        done.append(Path(args[-1]))

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", str(target)], capture_output=True)


def test_read_only_workdir(tmp_path, mounted):
    work = tmp_path / "work"
    work.mkdir()
    stage = Stage("data", lambda ctx: (ctx.work_dir / "records.jsonl").write_text("{}\n"))
    Pipeline([stage], work, log=lambda m: None).run()
    before = _tree(work)
    mounted("--bind", "-o", "ro", str(work), str(work))
    forced = Stage("data", lambda ctx: (ctx.work_dir / "records.jsonl").write_text("{}\n"), config={"v": 2})
    with pytest.raises(WriteError, match=r"\.polyalign\.lock: cannot write: read-only file system") as exc:
        Pipeline([forced], work, log=lambda m: None).run()
    assert _tree(work) == before
    print(exc.value)


def test_read_only_stage_folder(tmp_path, mounted):
    work = tmp_path / "work"
    (work / "ro").mkdir(parents=True)
    mounted("-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(work / "ro"))

    def body(ctx):
        write_json(work / "ro" / "report.json", {"a": 1})
    with pytest.raises(WriteError, match=r"ro/report\.json: cannot write: read-only file system") as exc:
        Pipeline([Stage("x", body)], work, log=lambda m: None).run()
    assert not (work / ".x.partial").exists() and not (work / "x").exists()
    print(exc.value)


def test_real_full_tmpfs_during_a_pipeline_stage(tmp_path, mounted):
    work = tmp_path / "small"
    work.mkdir()
    mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(work))
    Pipeline([Stage("data", lambda ctx: (ctx.work_dir / "a.txt").write_text("a"))], work, log=lambda m: None).run()
    before = _tree(work)

    def big(ctx):
        with atomic_path(ctx.work_dir / "model") as tmp:
            tmp.mkdir()
            with open(tmp / "weights.bin", "wb") as fh:
                for _ in range(64):
                    fh.write(os.urandom(16384))
    with pytest.raises(WriteError, match=r"model: cannot write: no space left on device") as exc:
        Pipeline([Stage("data", lambda ctx: (ctx.work_dir / "a.txt").write_text("a")),
                  Stage("train", big, deps=("data",))], work, log=lambda m: None).run()
    assert not (work / ".train.partial").exists() and _tree(work) == {**before, ".polyalign.lock": b""}
    assert json.loads((work / "data" / "stage.json").read_text())["cache_key"]
    print(exc.value)
