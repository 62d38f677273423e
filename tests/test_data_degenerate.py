"""Empty and degenerate input in `polyalign data build`: an empty source file, a source whose every item is
filtered, and a source or bucket that dedup empties each give a warning (CLI and pipeline log) and a count in
report.json; nothing at all left is still an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyalign.data.build import build_dataset, load_report
from polyalign.data.sources import load_data_config
from polyalign.errors import InputError

GOOD = [json.dumps({"id": f"good-{i}", "messages": [
    {"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"},
    {"role": "assistant", "content": f"It is {2 * i}, because adding {i} twice gives {2 * i}."}]})
    for i in range(30)]
COPIES = [line.replace('"good-', '"copy-') for line in GOOD]


def _config(tmp_path: Path, sources: dict[str, tuple[list[str], str, str]], extra: str = "",
            split: str | None = None) -> Path:
    """A data config with one source per entry: name -> (lines, language, family); `split` fixes every source's."""
    text = "sources:\n"
    for name, (lines, language, family) in sources.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        text += (f"  - name: {name}\n    path: {name}.jsonl\n    format: messages\n    language: {language}\n"
                 f"    family: {family}\n    license: CC0-1.0\n" + (f"    split: {split}\n" if split else ""))
    cfg = tmp_path / "data.yaml"
    cfg.write_text(text + "min_bucket_size: 5\n" + extra, encoding="utf-8")
    return cfg


def test_empty_source_warns_and_is_counted(tmp_path):
    cfg = _config(tmp_path, {"good": (GOOD, "en", "assistant"), "empty": ([], "en", "assistant")})
    summary = build_dataset(load_data_config(cfg), tmp_path / "out", progress=False)
    report = load_report(tmp_path / "out")
    assert report["degenerate"]["empty_sources"] == ["empty"]
    assert report["degenerate"]["counts"]["empty_sources"] == 1
    assert any("source 'empty'" in w and "empty, no conversations read" in w for w in summary["warnings"])
    assert report["warnings"] == summary["warnings"]


def test_source_with_every_item_filtered_warns(tmp_path):
    cfg = _config(tmp_path, {"good": (GOOD, "en", "assistant"), "other": (COPIES, "zh", "assistant")},
                  extra="languages: [en]\n")
    summary = build_dataset(load_data_config(cfg), tmp_path / "out", progress=False)
    report = load_report(tmp_path / "out")
    assert report["degenerate"]["filtered_sources"] == ["other"]
    assert report["degenerate"]["empty_sources"] == []
    [warning] = [w for w in summary["warnings"] if "'other'" in w]
    assert "every item was filtered out" in warning and "other_language_records 30" in warning


def test_bucket_emptied_by_dedup_warns(tmp_path):
    # one split, so that dedup keeps the first copy (the `good` source's) of each record
    cfg = _config(tmp_path, {"good": (GOOD, "en", "assistant"), "copies": (COPIES, "en", "task")}, split="train")
    summary = build_dataset(load_data_config(cfg), tmp_path / "out", progress=False)
    report = load_report(tmp_path / "out")
    assert report["dedup"]["removed"] == 30
    assert report["degenerate"]["dedup_emptied_sources"] == ["copies"]
    assert report["degenerate"]["counts"]["dedup_emptied_buckets"] >= 1
    assert all("task" in b for b in report["degenerate"]["dedup_emptied_buckets"])
    assert any("exact duplicates removed by dedup; the bucket is empty" in w for w in summary["warnings"])


def test_clean_input_has_no_warnings(tmp_path):
    cfg = _config(tmp_path, {"good": (GOOD, "en", "assistant")})
    summary = build_dataset(load_data_config(cfg), tmp_path / "out", progress=False)
    assert summary["warnings"] == [] and load_report(tmp_path / "out")["degenerate"]["counts"] == {
        "empty_sources": 0, "filtered_sources": 0, "dedup_emptied_buckets": 0, "dedup_emptied_sources": 0}


def test_nothing_left_is_an_error(tmp_path):
    cfg = _config(tmp_path, {"empty": ([], "en", "assistant"), "blank": (["", "  "], "en", "assistant")})
    with pytest.raises(InputError, match="no valid records in any source"):
        build_dataset(load_data_config(cfg), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_prints_the_warning(tmp_path):
    _config(tmp_path, {"good": (GOOD, "en", "assistant"), "empty": ([], "en", "assistant")})
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "polyalign.cli", "data", "build", "data.yaml", "--out", "out",
                          "--quiet"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "warning: source 'empty'" in res.stderr and "empty, no conversations read" in res.stderr
    print(res.stderr)
