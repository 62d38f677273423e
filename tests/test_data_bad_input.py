"""Bad input, tried as a new user would: each case raises an error naming file, line and field (strict, the
default), or is skipped and counted with skip_invalid; no output directory is left behind when a build fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyalign.data.build import build_dataset, load_records, load_report
from polyalign.data.sources import load_data_config
from polyalign.errors import ConfigError, InputError

GOOD = [json.dumps({"id": f"good-{i}", "messages": [
    {"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"},
    {"role": "assistant", "content": f"It is {2 * i}, because adding {i} twice gives {2 * i}."}]}).encode()
    for i in range(30)]


def _bad_line(obj: dict) -> bytes:
    return json.dumps(obj).encode()


# name -> (bad line bytes, expected "field '...'" or None, reason counted in skip mode, message part)
CASES = {
    "malformed_json": (b'{"id": "bad", "messages": [{"role": "user", "content": "hi"}', None, "malformed JSON",
                       "malformed JSON"),
    "roles_not_alternating": (_bad_line({"id": "bad", "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"}]}), "messages[1].role", "roles not alternating",
        "roles must alternate"),
    "empty_response": (_bad_line({"id": "bad", "messages": [
        {"role": "user", "content": "a question?"}, {"role": "assistant", "content": "   "}]}),
        "messages[1].content", "empty response", "empty response"),
    "invalid_utf8": (b'{"id": "bad", "messages": [{"role": "user", "content": "caf\xe9"}, '
                     b'{"role": "assistant", "content": "ok"}]}', None, "invalid UTF-8", "invalid UTF-8 byte"),
    "missing_field": (_bad_line({"id": "bad", "turns": []}), "messages", "missing field", "missing required field"),
    "missing_turn_content": (_bad_line({"id": "bad", "messages": [{"role": "user"}]}), "messages[0].content",
                             "missing field", "missing required field"),
    "wrong_type": (_bad_line({"id": "bad", "messages": [{"role": "user", "content": "q"},
                                                        {"role": "assistant", "content": 42}]}),
                   "messages[1].content", "wrong type", "must be a string"),
}
BAD_LINE_NO = 6  # the bad line sits after five good ones


def _config(tmp_path: Path, lines: list[bytes], fmt: str = "messages") -> Path:
    data = tmp_path / "input.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"sources:\n  - name: mine\n    path: input.jsonl\n    format: {fmt}\n    language: en\n"
                   f"    family: assistant\n    license: CC0-1.0\nmin_bucket_size: 5\n", encoding="utf-8")
    return cfg


def _lines(bad: bytes) -> list[bytes]:
    return [*GOOD[:BAD_LINE_NO - 1], bad, *GOOD[BAD_LINE_NO - 1:]]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".out"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_strict_names_file_line_field_and_writes_nothing(tmp_path, case):
    bad, field, _, message = CASES[case]
    cfg = load_data_config(_config(tmp_path, _lines(bad)))
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        build_dataset(cfg, out, progress=False)
    text = str(exc.value)
    assert text.startswith(f"{tmp_path / 'input.jsonl'}:{BAD_LINE_NO}:"), text
    if field:
        assert f"field '{field}'" in text, text
    assert message in text
    assert not out.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_skip_invalid_skips_and_counts(tmp_path, case):
    bad, _, reason, _ = CASES[case]
    cfg = load_data_config(_config(tmp_path, _lines(bad)))
    out = tmp_path / "out"
    summary = build_dataset(cfg, out, skip_invalid=True, progress=False)
    report = load_report(out)
    assert report["sources"]["mine"]["invalid"] == {reason: 1}
    assert report["invalid_total"] == 1 and summary["invalid"] == 1
    assert f":{BAD_LINE_NO}:" in report["sources"]["mine"]["examples"][0]
    n = sum(len(load_records(out, s)) for s in ("train", "val", "test"))
    assert n == len(GOOD)


def test_many_bad_lines_counted_per_reason(tmp_path):
    lines = [*GOOD, CASES["malformed_json"][0], CASES["malformed_json"][0], CASES["empty_response"][0]]
    cfg = load_data_config(_config(tmp_path, lines))
    build_dataset(cfg, tmp_path / "out", skip_invalid=True, progress=False)
    assert load_report(tmp_path / "out")["sources"]["mine"]["invalid"] == {"empty response": 1,
                                                                           "malformed JSON": 2}


def test_failed_rebuild_keeps_previous_output(tmp_path):
    cfg_path = _config(tmp_path, GOOD)
    out = tmp_path / "out"
    build_dataset(load_data_config(cfg_path), out, progress=False)
    before = (out / "records" / "train.jsonl").read_bytes()
    _config(tmp_path, _lines(CASES["empty_response"][0]))
    with pytest.raises(InputError):
        build_dataset(load_data_config(cfg_path), out, progress=False)
    assert (out / "records" / "train.jsonl").read_bytes() == before and not _leftovers(tmp_path)


def test_unknown_format_is_a_config_error_before_work(tmp_path):
    cfg = _config(tmp_path, GOOD, fmt="jsonlines")
    for overrides in (None, {"skip_invalid": True}):
        with pytest.raises(ConfigError, match=r"data\.yaml:4: field 'sources\.0\.format': unknown format "
                                              r"'jsonlines'; known formats: messages, sharegpt"):
            load_data_config(cfg, overrides)


def test_bad_config_key_is_a_config_error(tmp_path):
    cfg = _config(tmp_path, GOOD)
    cfg.write_text(cfg.read_text() + "min_bucket_sise: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="field 'min_bucket_sise': unknown key"):
        load_data_config(cfg)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    exe = Path(sys.executable).parent / "polyalign"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_cli_strict_error_is_one_line_exit_2_and_skip_flag(tmp_path):
    _config(tmp_path, _lines(CASES["roles_not_alternating"][0]))
    res = _cli("data", "build", "data.yaml", "--out", "out", "--quiet", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "input.jsonl:6: field 'messages[1].role': roles must alternate" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
    res = _cli("data", "build", "data.yaml", "--out", "out", "--quiet", "--skip-invalid", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "invalid 1" in res.stdout and (tmp_path / "out" / "manifest.json").exists()
    missing = _cli("data", "build", "nope.yaml", "--out", "out2", cwd=tmp_path)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
