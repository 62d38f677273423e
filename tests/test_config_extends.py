"""Config files that extend another (data, stage and pipeline files alike), the data build's `languages` filter,
and pipeline overrides that reach into a section kept in its own file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_data_build import check_data_dir, subset_config

from polyalign.config import load_config, read_yaml_extends
from polyalign.data.build import build_dataset, load_records, load_report
from polyalign.data.sources import load_data_config
from polyalign.errors import ConfigError
from polyalign.pipeline.config import load_pipeline_config
from polyalign.pipeline.stages import Wiring, data_stage_key
from polyalign.train.sft import SFTRunConfig


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_file_is_laid_over_the_file_it_extends(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"a": 1, "nested": {"x": 1, "y": 2}, "keep": "yes"})
    _write(tmp_path / "mid.yaml", {"extends": "base.yaml", "nested": {"y": 3}})
    _write(tmp_path / "top.yaml", {"extends": "mid.yaml", "a": 9})
    assert read_yaml_extends(tmp_path / "top.yaml") == {"a": 9, "nested": {"x": 1, "y": 3}, "keep": "yes"}
    _write(tmp_path / "loop.yaml", {"extends": "loop2.yaml"})
    _write(tmp_path / "loop2.yaml", {"extends": "loop.yaml"})
    with pytest.raises(ConfigError, match="a cycle"):
        read_yaml_extends(tmp_path / "loop.yaml")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "far.yaml", {"extends": "../base.yaml"})
    with pytest.raises(ConfigError, match="must be in the same folder"):
        read_yaml_extends(tmp_path / "sub" / "far.yaml")
    _write(tmp_path / "gone.yaml", {"extends": "missing.yaml"})
    with pytest.raises(ConfigError, match="missing.yaml"):
        read_yaml_extends(tmp_path / "gone.yaml")


def test_the_real_model_trainer_files_extend_the_demo_ones(repo_root: Path) -> None:
    train = repo_root / "configs" / "train"
    parent = load_config(train / "bucket_sft.yaml", SFTRunConfig)
    child = load_config(train / "bucket_sft_smollm2.yaml", SFTRunConfig)
    assert child.lora.enabled and not parent.lora.enabled
    assert child.balance == parent.balance  # Bucket-SFT's own settings come from bucket_sft.yaml unchanged
    assert child.training["max_steps"] == 40 and child.training["lr_scheduler_type"] == parent.training[
        "lr_scheduler_type"]
    sft = load_config(train / "sft_smollm2.yaml", SFTRunConfig)
    same = ("max_length", "max_train_samples", "max_eval_samples", "lora")
    assert all(getattr(sft, k) == getattr(child, k) for k in same) and sft.training == child.training


def test_languages_keeps_one_language_with_the_same_split_and_buckets(repo_root, shared_data_dir, tmp_path):
    full, en = tmp_path / "full", tmp_path / "en"
    build_dataset(load_data_config(subset_config(repo_root, shared_data_dir, tmp_path)), full, progress=False)
    (tmp_path / "en_config").mkdir()
    config = subset_config(repo_root, shared_data_dir, tmp_path / "en_config", languages=["en"])
    build_dataset(load_data_config(config), en, progress=False)
    check_data_dir(en)
    for split in ("train", "val", "test"):
        kept = {(r.id, r.bucket_id) for r in load_records(en, split)}
        expected = {(r.id, r.bucket_id) for r in load_records(full, split) if r.language == "en"}
        assert kept == expected and kept
    report = load_report(en)
    n_zh = sum(1 for s in ("train", "val", "test") for r in load_records(full, s) if r.language == "zh")
    dropped = sum(st["filtered"].get("other_language_records", 0) for st in report["sources"].values())
    assert dropped >= n_zh > 0  # every zh record was filtered (dedup would have removed some of them anyway)


def test_the_data_stage_key_is_unchanged_while_languages_is_unset(repo_root: Path) -> None:
    config = load_data_config(repo_root / "configs" / "data" / "bundled.yaml")
    key = data_stage_key(config)
    assert "languages" not in key and key == {k: v for k, v in config.model_dump(mode="json").items()
                                              if k != "languages"}
    english = load_data_config(repo_root / "configs" / "data" / "bundled_en.yaml")
    assert data_stage_key(english)["languages"] == ["en"]
    assert [s.name for s in english.sources] == [s.name for s in config.sources]


def test_pipeline_overrides_reach_into_sections_kept_in_files(repo_root: Path) -> None:
    path = repo_root / "configs" / "pipeline" / "smollm2.yaml"
    plain = Wiring(load_pipeline_config(path), path)
    changed = Wiring(load_pipeline_config(path, {"sft": {"training": {"max_steps": 7}, "lora": {"enabled": False}},
                                                 "data": {"languages": ["en", "zh"]}}), path)
    assert changed.sections["sft"]["training"]["max_steps"] == 7 and not changed.sections["sft"]["lora"]["enabled"]
    rest = {k: v for k, v in plain.sections["sft"].items() if k not in ("training", "lora")}
    assert {k: changed.sections["sft"][k] for k in rest} == rest  # everything else still from the file
    assert changed.sections["bucket_sft"] == plain.sections["bucket_sft"]
    assert changed.data_config.languages == ["en", "zh"] and plain.data_config.languages == ["en"]
    assert [s.path for s in changed.data_config.sources] == [s.path for s in plain.data_config.sources]
