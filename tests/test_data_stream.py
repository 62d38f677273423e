"""The streaming data build (engine "stream") against the in-memory reference build (engine "memory") on a slice
of the bundled data with duplicates, invalid, filtered and fixed-split items added; bad input deep in a large
file with num_proc=2; the Ledoit-Wolf covariance from moments against sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from polyalign.data.build import build_dataset
from polyalign.data.references import ledoit_wolf_from_moments, shrunk_covariance
from polyalign.data.sources import load_data_config
from polyalign.errors import InputError

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "configs" / "data" / "bundled.yaml"
LINES_PER_SOURCE = 40


def _slice_config(tmp: Path, *, extra_lines: dict[str, list[str]] | None = None, skip: bool = False,
                  fixed: str | None = None) -> Path:
    """The bundled config over the first LINES_PER_SOURCE lines of each source (plus extra lines per source)."""
    config = yaml.safe_load(BUNDLED.read_text())
    for source in config["sources"]:
        src = (BUNDLED.parent / source["path"]).resolve()
        with open(src, encoding="utf-8") as fh:
            lines = [next(fh) for _ in range(LINES_PER_SOURCE)]
        lines += [line + "\n" for line in (extra_lines or {}).get(source["name"], [])]
        (tmp / src.name).write_text("".join(lines), encoding="utf-8")
        source["path"] = str(tmp / src.name)
        if source["name"] == fixed:
            source["split"] = "test"
    config["skip_invalid"] = skip
    path = tmp / "data.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _line(path: Path, k: int) -> dict:
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == k:
                return json.loads(line)
    raise IndexError(k)


def _extras() -> dict[str, list[str]]:
    """Exact duplicates under new ids, a duplicate record id, invalid and filtered (other language) items."""
    dolly = (BUNDLED.parent / "../../../shared/data/en_dolly_sample.jsonl").resolve()
    kd = (BUNDLED.parent / "../../../shared/data/zh_kdconv.jsonl").resolve()
    dup = [{**_line(dolly, k), "id": f"copy-{k}"} for k in range(5)]
    same_id = {**_line(dolly, 7), "messages": [{"role": "user", "content": "another question?"},
                                               {"role": "assistant", "content": "another answer."}]}
    bad_role = {"id": "bad-role", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                               {"role": "assistant", "content": "c"}]}
    kd_copy = {**_line(kd, 3), "id": "kd-copy"}
    return {"en_dolly": [json.dumps(o, ensure_ascii=False) for o in (*dup, same_id, bad_role)] + ['{"id": "x"'],
            "zh_crosswoz": [json.dumps(kd_copy, ensure_ascii=False)]}


def _assert_same_build(a: Path, b: Path) -> None:
    for name in ("records/train.jsonl", "records/val.jsonl", "records/test.jsonl", "buckets.json", "report.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for split in ("train", "val", "test"):
        ta, tb = pq.read_table(a / "features" / f"{split}.parquet"), pq.read_table(b / "features" / f"{split}.parquet")
        assert ta.schema.equals(tb.schema) and ta.equals(tb), split
    ra, rb = json.loads((a / "references.json").read_text()), json.loads((b / "references.json").read_text())
    assert list(ra) == list(rb) and list(ra["buckets"]) == list(rb["buckets"]) and ra["buckets"]
    for key in ("format", "feature_names", "quantile_levels"):
        assert ra[key] == rb[key]
    for bid, x in ra["buckets"].items():
        y = rb["buckets"][bid]
        assert (x["count"], x["below_min"], x["ids"]) == (y["count"], y["below_min"], y["ids"]), bid
        for key in ("mean", "std", "quantiles", "scale"):  # exact statistics (stored with 12 digits)
            np.testing.assert_allclose(y[key], x[key], rtol=1e-10, atol=1e-12, err_msg=f"{bid}.{key}")
        cx, cy = np.asarray(x["cov"]), np.asarray(y["cov"])  # moments summed in another order
        unit = np.sqrt(np.outer(np.diag(cx), np.diag(cx))) + 1e-300
        assert np.max(np.abs(cx - cy) / unit) < 1e-9, bid


@pytest.mark.parametrize("skip, chunk, num_proc", [(False, None, 2), (True, None, 2), (True, 97, 2), (False, 97, 1)],
                         ids=["strict", "skip_invalid", "skip_invalid_chunks_of_97", "strict_chunks_of_97_in_process"])
def test_stream_equals_memory(tmp_path: Path, skip: bool, chunk: int | None, num_proc: int, monkeypatch) -> None:
    """chunk: items per datasets.map call (and rows per item-file batch), small so that the items of one
    source and the duplicates span several map calls (each with its own workers when num_proc > 1)."""
    if chunk is not None:
        from polyalign.data import stream

        monkeypatch.setattr(stream, "MAP_CHUNK", chunk)
        monkeypatch.setattr(stream, "RAW_BATCH", chunk // 3)
    extras = _extras() if skip else {"en_dolly": _extras()["en_dolly"][:5], "zh_crosswoz": _extras()["zh_crosswoz"]}
    cfg = load_data_config(_slice_config(tmp_path, extra_lines=extras, skip=skip, fixed="zh_drcd"))
    mem = build_dataset(cfg, tmp_path / "mem", progress=False, engine="memory")
    st = build_dataset(cfg, tmp_path / "st", progress=False, engine="stream", num_proc=num_proc)
    assert mem["duplicates_removed"] >= 6 and (mem["invalid"] >= 3 if skip else mem["invalid"] == 0), mem
    for key in set(mem) - {"out_dir", "wall_time_s", "timings", "engine", "num_proc"}:
        assert st[key] == mem[key], key
    _assert_same_build(tmp_path / "mem", tmp_path / "st")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    if chunk is not None:
        from polyalign.data import stream

        items = sum(1 for _ in stream.read_items(cfg, strict=False))
        assert items > 3 * chunk, items  # several map calls


def test_strict_errors_match_memory(tmp_path: Path) -> None:
    """The first bad item in input order is reported, the same one as the in-memory build (a duplicate id
    before a bad role)."""
    cfg = load_data_config(_slice_config(tmp_path, extra_lines={"en_dolly": _extras()["en_dolly"][5:]}))
    errors = []
    for engine in ("memory", "stream"):
        with pytest.raises(InputError) as info:
            build_dataset(cfg, tmp_path / engine, progress=False, engine=engine, num_proc=2)
        errors.append(str(info.value))
        assert not (tmp_path / engine).exists()
    assert errors[0] == errors[1] and "duplicate record id" in errors[0]


def _big_file(tmp: Path, n: int, bad_at: int, bad: str) -> Path:
    src = (BUNDLED.parent / "../../../shared/data/en_chitchat_byu.jsonl").resolve()
    with open(src, encoding="utf-8") as fh:
        base = [json.loads(next(fh)) for _ in range(50)]
    path = tmp / "big.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write((bad if i + 1 == bad_at else json.dumps({**base[i % 50], "id": f"r{i}"})) + "\n")
    cfg = tmp / "data.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "big", "path": str(path), "format": "messages",
                                                "language": "en", "family": "open_chat"}]}))
    return cfg


@pytest.mark.parametrize("bad, field", [
    ('{"id": "bad", "messages": [{"role": "user", "content": "hi"}', None),
    pytest.param(json.dumps({"id": "bad", "messages": [{"role": "user", "content": "q?"},
                                                       {"role": "assistant", "content": 7}]}),
                 "messages[1].content", marks=pytest.mark.slow),  # every item is normalized: ~20 s on 2 cores
], ids=["malformed_json", "wrong_type"])
def test_bad_line_deep_in_large_file_num_proc_2(tmp_path: Path, bad: str, field: str | None) -> None:
    cfg = load_data_config(_big_file(tmp_path, 3000, 2817, bad))
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        build_dataset(cfg, out, progress=False, engine="stream", num_proc=2)
    err = info.value
    assert err.file == str(tmp_path / "big.jsonl") and err.line == 2817 and err.field == field, str(err)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "data.yaml"]  # no temporary folder left


@pytest.mark.parametrize("n, f, constant", [(200, 6, False), (7, 5, True), (40, 1, False)])
def test_ledoit_wolf_from_moments_matches_sklearn(n: int, f: int, constant: bool) -> None:
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, f)) @ rng.normal(size=(f, f)) + rng.normal(size=f)
    if constant:
        x[:, 0] = 3.0
    z = x - x.mean(axis=0)
    chunks = np.array_split(z, 3)
    zz = sum(c.T @ c for c in chunks)
    z2z2 = sum((c * c).T @ (c * c) for c in chunks)
    expected = LedoitWolf(assume_centered=True).fit(z).covariance_
    np.testing.assert_allclose(ledoit_wolf_from_moments(zz, z2z2, n), expected, rtol=1e-10, atol=1e-12)
    from polyalign.data.references import covariance_from_moments, robust_scale

    scale = robust_scale(x, fallback=1.0)
    std = x.std(axis=0)
    unit = np.where(std > 0, std, 1.0)
    zs = (x - x.mean(axis=0)) / unit
    got = covariance_from_moments(zs.T @ zs, (zs * zs).T @ (zs * zs), n, std, scale)
    np.testing.assert_allclose(got, shrunk_covariance(x, scale), rtol=1e-9, atol=1e-12)


def test_reader_error_is_not_wrapped_by_datasets(tmp_path: Path) -> None:
    """An InputError the reader raises inside Dataset.from_generator reaches the caller as itself."""
    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "s", "path": str(tmp_path / "empty"), "format": "messages",
                                                "language": "en"}]}))
    with pytest.raises(InputError, match="folder holds no .jsonl or .json files") as info:
        build_dataset(load_data_config(cfg), tmp_path / "out", progress=False, engine="stream")
    assert info.value.file == str(tmp_path / "empty") and not (tmp_path / "out").exists()


def test_auto_engine_streams_large_inputs_and_multi_worker_builds(tmp_path, monkeypatch):
    """engine auto: memory for small local inputs, stream above the byte threshold or with num_proc > 1."""
    from polyalign.data import build as build_mod
    from polyalign.data.sources import load_data_config

    src = tmp_path / "a.jsonl"
    src.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    cfg_path = tmp_path / "data.yaml"
    cfg_path.write_text(f"sources:\n  - {{name: a, path: {src}, format: messages, language: en}}\n")
    config = load_data_config(cfg_path)
    assert build_mod.choose_engine(config) == "memory"
    assert build_mod.choose_engine(config, num_proc=2) == "stream"
    assert build_mod.choose_engine(config, "memory", num_proc=2) == "memory"
    monkeypatch.setattr(build_mod, "AUTO_STREAM_BYTES", src.stat().st_size - 1)
    assert build_mod.choose_engine(config) == "stream"
    with pytest.raises(build_mod.ConfigError, match="unknown data build engine"):
        build_mod.choose_engine(config, "fast")
