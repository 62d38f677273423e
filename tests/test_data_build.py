"""End-to-end data builds: a fast one on a subset of the bundled data, and (slow) the whole bundled data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from polyalign.data.build import (build_dataset, load_bucket_table, load_feature_names, load_features,
                                  load_records, load_report)
from polyalign.data.schema import SPLITS
from polyalign.data.sources import load_data_config
from polyalign.io import read_json, sha256_file

SUBSET_LIMIT = 25


def subset_config(repo_root: Path, shared_data_dir: Path, tmp_path: Path, **changes) -> Path:
    """bundled.yaml with absolute paths and at most SUBSET_LIMIT conversations per source."""
    data = yaml.safe_load((repo_root / "configs" / "data" / "bundled.yaml").read_text(encoding="utf-8"))
    for src in data["sources"]:
        src["path"] = str(shared_data_dir / Path(src["path"]).name)
        src["limit"] = SUBSET_LIMIT
    data["min_bucket_size"] = 5
    data.update(changes)
    path = tmp_path / "subset.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def check_data_dir(out: Path) -> dict:
    """Assertions every data directory must satisfy; returns {split: records}."""
    for name in ("manifest.json", "references.json", "buckets.json", "report.json"):
        assert (out / name).is_file(), name
    records = {s: load_records(out, s) for s in SPLITS}
    names = load_feature_names(out)
    from polyalign.data.features import FEATURE_NAMES

    assert names == list(FEATURE_NAMES)
    for split, recs in records.items():
        ids, matrix = load_features(out, split)
        assert ids == [r.id for r in recs]
        assert matrix.shape == (len(recs), len(names)) and np.isfinite(matrix).all()
    # leakage: no conversation of val/test in train
    train_convs = {r.conversation_id for r in records["train"]}
    for split in ("val", "test"):
        assert not train_convs & {r.conversation_id for r in records[split]}
    all_ids = [r.id for recs in records.values() for r in recs]
    assert len(all_ids) == len(set(all_ids))
    # the bucket table counts exactly the records
    table = load_bucket_table(out)
    for split in SPLITS:
        assert sum(b[split] for b in table["buckets"]) == len(records[split])
        assert Counter(r.bucket_id for r in records[split]) == {b["bucket_id"]: b[split] for b in table["buckets"]
                                                                if b[split]}
    manifest = read_json(out / "manifest.json")
    assert manifest["stage"] == "data" and manifest["seed"] == manifest["config"]["seed"]
    assert "wall_time_s" in manifest and manifest["versions"]["numpy"]
    for src in manifest["config"]["sources"]:
        assert manifest["inputs"][src["name"]] == sha256_file(src["path"])
    return records


def check_references(out: Path, records: dict) -> None:
    """References exist for buckets of both languages and are built from exactly the train records."""
    from polyalign.data.references import References

    refs = References.load(out / "references.json")
    train_counts = Counter(r.bucket_id for r in records["train"])
    assert set(refs.bucket_ids()) == set(train_counts)
    assert {b.split("|")[0] for b in refs.bucket_ids() if not refs[b].below_min} == {"en", "zh"}
    train_ids = {r.id for r in records["train"]}
    for b in refs.bucket_ids():
        assert refs[b].count == train_counts[b] and set(refs[b].ids) <= train_ids


def test_subset_build(repo_root, shared_data_dir, tmp_path):
    cfg = load_data_config(subset_config(repo_root, shared_data_dir, tmp_path))
    out = tmp_path / "data"
    summary = build_dataset(cfg, out, progress=False)
    records = check_data_dir(out)
    everything = [r for recs in records.values() for r in recs]
    assert summary["records"] == len(everything)
    assert {r.language for r in everything} == {"en", "zh"}
    assert {r.track for r in everything} == {"single", "multi"}
    assert len({r.family for r in everything}) >= 4
    assert Counter(r.source for r in everything).keys() == {s.name for s in cfg.sources}
    # records keep their own length bin; bucket ids are built from the key, merged bins joined with '+'
    for r in everything:
        language, track, family, bins = r.bucket_id.split("|")
        assert (language, track, family) == (r.language, r.track, r.family)
        assert r.length_bin in bins.split("+")
    check_references(out, records)
    report = load_report(out)
    assert report["invalid_total"] == 0 and set(report["splits"]) == set(SPLITS)


def test_subset_build_is_deterministic_and_seed_dependent(repo_root, shared_data_dir, tmp_path):
    def build(seed: int, name: str) -> dict[str, str]:
        cfg = load_data_config(subset_config(repo_root, shared_data_dir, tmp_path, seed=seed))
        out = tmp_path / name
        build_dataset(cfg, out, progress=False)
        return {s: sha256_file(out / "records" / f"{s}.jsonl") for s in SPLITS}

    first, again, other = build(1, "a"), build(1, "b"), build(2, "c")
    assert first == again
    assert first != other


def test_cli_build_and_show(repo_root, shared_data_dir, tmp_path):
    cfg = subset_config(repo_root, shared_data_dir, tmp_path)
    exe = Path(sys.executable).parent / "polyalign"
    env = {**os.environ, "COLUMNS": "160"}
    res = subprocess.run([str(exe), "data", "build", str(cfg), "--out", str(tmp_path / "d"), "--seed", "5", "-q"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "zh|multi|task|short" in res.stdout and "Summary" in res.stdout
    assert read_json(tmp_path / "d" / "manifest.json")["seed"] == 5
    show = subprocess.run([str(exe), "data", "show", str(tmp_path / "d")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert show.returncode == 0 and "zh|multi|task|short" in show.stdout
    helptext = subprocess.run([str(exe), "data", "build", "--help"], capture_output=True, text=True, env=env)
    assert "polyalign data build configs/data/bundled.yaml --out runs/data" in helptext.stdout


@pytest.mark.slow
def test_full_bundled_build(repo_root, shared_data_dir, tmp_path):
    """Must show: en and zh, single and multi, >= 4 families, references for both languages, no leakage."""
    cfg = load_data_config(repo_root / "configs" / "data" / "bundled.yaml")
    out = tmp_path / "data"
    summary = build_dataset(cfg, out, progress=False)
    records = check_data_dir(out)
    everything = [r for recs in records.values() for r in recs]
    assert {r.language for r in everything} == {"en", "zh"}
    assert {r.track for r in everything} == {"single", "multi"}
    assert len({r.family for r in everything}) >= 4
    assert summary["records"] > 35_000
    check_references(out, records)
    train_ids = {r.id for r in records["train"]}
    held_out_ids = {r.id for s in ("val", "test") for r in records[s]}
    assert not train_ids & held_out_ids
