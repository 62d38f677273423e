"""Choosing settings on the validation split (docs/hdpo.md, "Choosing the setting on the validation split"): the
selection rule against a direct computation; `suite: {split: val}` builds val_* stages beside the test ones,
from the val records, on the same models and without touching a test-split stage; a per-method `on_policy:`
override reaches that method's trainer config (wired to its round's critic) and no other; a finished work folder
is read without running anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from polyalign.errors import ConfigError
from polyalign.eval.selection import SelectionRule, choose_setting
from polyalign.io import read_json
from polyalign.pipeline.config import load_pipeline_config
from polyalign.pipeline.run import finished_pipeline, run_pipeline
from polyalign.pipeline.stages import Wiring, build_stages
from test_pipeline_run import small_config

PIPELINES = Path(__file__).resolve().parents[1] / "configs" / "pipeline"


def _values(c2st, chrf, f1):
    return {"c2st_acc": c2st, "chrf": chrf, "f1": f1}


def test_selection_rule_matches_a_direct_computation():
    values = {"ref": _values([0.80, 0.82], [10.0, 12.0], [0.10, 0.12]),   # means: c2st .81, chrF 11, F1 .11
              "a": _values([0.70, 0.74], [9.5, 10.5], [0.10, 0.10]),      # |.72-.5| = .22, chrF -1, F1 -.01: ok
              "b": _values([0.42, 0.46], [10.0, 11.0], [0.11, 0.11]),     # |.44-.5| = .06 (below 0.5 counts)
              "c": _values([0.55, 0.55], [8.0, 9.0], [0.20, 0.20]),       # .05, the best, but chrF -2.5: out
              "d": _values([0.60, 0.62], [11.0, 11.0], [0.08, 0.08])}     # .11, F1 -.03: out
    got = choose_setting(values, ["a", "b", "c", "d"], "ref")
    rows = {r["method"]: r for r in got.rows}
    assert got.chosen == "b"
    for name, c2st in (("a", 0.72), ("b", 0.44), ("c", 0.55), ("d", 0.61)):
        assert rows[name]["badness"] == pytest.approx(abs(c2st - 0.5))
    assert rows["c"]["chrf vs reference"] == pytest.approx(-2.5)
    assert rows["d"]["f1 vs reference"] == pytest.approx(-0.03)
    assert [rows[n]["eligible"] for n in "abcd"] == [True, True, False, False]
    # a looser guard admits c, which then wins; a guard nobody passes chooses nothing
    assert choose_setting(values, ["a", "b", "c", "d"], "ref",
                          SelectionRule(guards=(("chrf", 3.0), ("f1", 0.02)))).chosen == "c"
    assert choose_setting(values, ["c", "d"], "ref").chosen is None
    with pytest.raises(KeyError, match="zzz"):
        choose_setting(values, ["zzz"], "ref")


def test_val_split_stages_sit_beside_the_test_ones(tmp_path, shared_data_dir):
    config = small_config(tmp_path, shared_data_dir)
    run_pipeline(config, targets=["compare"], log=lambda _: None)
    root = tmp_path / "runs"
    test_files = {p: p.stat().st_mtime_ns for p in root.glob("*/stage.json")}
    w, results = run_pipeline(config, targets=["val_compare"], overrides={"suite": {"split": "val"}},
                              log=lambda _: None)
    ran = {r.name for r in results if r.status != "cached"}
    assert ran == {"val_suite", "val_gen_base", "val_eval_base", "val_gen_sft", "val_eval_sft", "val_compare"}
    assert {p: p.stat().st_mtime_ns for p in test_files} == test_files, "a test-split stage was touched"
    ids = {split: {json.loads(line)["id"] for line in (root / "data" / "records" / f"{split}.jsonl").open()}
           for split in ("val", "test")}
    items = {json.loads(line)["id"] for line in (root / "val_suite" / "items.jsonl").open()}
    assert items and items <= ids["val"] and not items & ids["test"]
    assert read_json(root / "val_eval_sft" / "metrics.json")["metadata"]["split"] == "val"
    assert read_json(root / "eval_sft" / "metrics.json")["metadata"]["split"] == "test"
    assert "(val split)" in (root / "val_compare" / "report.md").read_text()
    assert "(test split)" in (root / "compare" / "report.md").read_text()
    assert read_json(root / "val_compare" / "comparison.json")["split"] == "val"
    # both splits up to date together: rerunning either does nothing
    _, again = run_pipeline(config, targets=["compare"], log=lambda _: None)
    assert all(r.status == "cached" for r in again)
    # read without running (benchmarks/experiment.py --read-only): every stage's folder, or an error naming
    # the stages that are behind
    _, dirs = finished_pipeline(config, {"suite": {"split": "val"}}, targets=["val_compare"])
    assert {d.name for d in dirs} == {r.name for r in results}
    (root / "val_eval_sft" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"val_eval_sft \(modified\)"):
        finished_pipeline(config, {"suite": {"split": "val"}}, targets=["val_compare"])
    shutil.rmtree(root / "val_eval_sft")
    with pytest.raises(ConfigError, match=r"val_eval_sft \(not built\)"):
        finished_pipeline(config, {"suite": {"split": "val"}}, targets=["val_compare"])
    # only the selected stages and what they need are checked: base's evaluation is still readable
    _, dirs = finished_pipeline(config, {"suite": {"split": "val"}}, lambda w: [w.eval_stage("eval_base")])
    assert {"val_eval_base", "val_gen_base", "val_suite", "base"} <= {d.name for d in dirs}
    assert not {"val_eval_sft", "val_compare"} & {d.name for d in dirs}


def test_on_policy_override_reaches_only_its_method(shared_data_dir):
    path = PIPELINES / "choose.yaml"
    sources = [{"name": "en_oasst1", "path": str(shared_data_dir / "en_oasst1.jsonl"), "format": "messages",
                "language": "en", "family": "assistant", "limit": 20}]
    w = Wiring(load_pipeline_config(path, {"data": {"sources": sources, "min_bucket_size": 2}}), path)
    op, r1 = w.preference_config("hdpo_op", round=1), w.preference_config("hdpo", round=1)
    assert op.on_policy.enabled and op.on_policy.every_n_steps == 1
    assert op.on_policy.critic == str(w.dir("critic"))  # round 1's critic: the shared one
    assert not r1.on_policy.enabled
    # apart from the term (and the folder it writes), hdpo_op is hdpo's round 1
    drop = {"output_dir", "on_policy"}
    assert op.model_dump(exclude=drop) == r1.model_dump(exclude=drop)
    stages = {s.name: s for s in build_stages(w)}
    assert "critic" in stages["hdpo_op"].deps
    assert "critic" not in stages["hdpo_r1"].deps


def test_a_twin_training_stage_is_copied_not_retrained(tmp_path, shared_data_dir):
    """Round 1 of a method in rounds repeats a one-round method exactly (smollm2_rounds.yaml's hdpo_rounds_r1 and
    smollm2.yaml's hdpo: bitwise-equal weights when both were trained). A stage with the same settings,
    dependency keys and inputs as an intact finished one copies it; a changed setting, or a twin whose files were
    modified, trains."""
    import yaml
    from transformers import TrainerCallback

    trainings: list[int] = []

    class CountTrainings(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            trainings.append(state.max_steps)

    config = small_config(tmp_path, shared_data_dir)
    raw = yaml.safe_load(config.read_text())
    same = {"init": "sft", "pairs": "sft", "trainer": "dpo"}
    raw["preference"] = {"dpo": same, "dpo_twin": same, "dpo_other": {**same, "loss": {"beta": 0.2}}}
    raw["methods"] = ["sft", "dpo", "dpo_twin", "dpo_other"]  # listed, so that their stages exist
    config.write_text(yaml.safe_dump(raw))
    run_pipeline(config, targets=["dpo"], log=lambda _: None)
    messages: list[str] = []
    _, results = run_pipeline(config, targets=["dpo_twin", "dpo_other"], log=messages.append,
                              trainer_callbacks=lambda: [CountTrainings()])
    status = {r.name: r.status for r in results}
    assert status["dpo_twin"] == "reused" and status["dpo_other"] == "ran"
    assert len(trainings) == 1, "only dpo_other trains"
    assert any("same settings, dependencies and inputs as 'dpo'" in m for m in messages)
    root = tmp_path / "runs"
    record = read_json(root / "dpo_twin" / "stage.json")
    assert record["reused_from"] == "dpo" and read_json(root / "dpo_other" / "stage.json")["reused_from"] is None
    for name in ("model.safetensors", "config.json"):
        assert (root / "dpo_twin" / "model" / name).read_bytes() == (root / "dpo" / "model" / name).read_bytes()
    _, again = run_pipeline(config, targets=["dpo_twin"], log=lambda _: None)
    assert {r.status for r in again} == {"cached"}, "a reused stage is cached like any other"
    # a forced stage runs, twin or not
    _, forced = run_pipeline(config, targets=["dpo_twin"], force=["dpo_twin"], log=lambda _: None,
                             trainer_callbacks=lambda: [CountTrainings()])
    assert {r.name: r.status for r in forced}["dpo_twin"] == "ran" and len(trainings) == 2
    # a modified twin is no twin: with dpo's files changed, dpo_other's settings back to dpo's train anew
    with open(root / "dpo" / "model" / "config.json", "a") as fh:
        fh.write("\n")
    raw["preference"]["dpo_other"] = same
    config.write_text(yaml.safe_dump(raw))
    _, retrained = run_pipeline(config, targets=["dpo_other"], log=lambda _: None,
                                trainer_callbacks=lambda: [CountTrainings()])
    assert {r.name: r.status for r in retrained}["dpo_other"] == "reused", "dpo_twin is an intact twin"
    key = read_json(root / "dpo_other" / "stage.json")["cache_key"]
    shutil.rmtree(root / "dpo_twin")
    shutil.rmtree(root / "dpo_other")
    # and a copy cut short (its partial folder says so) is not resumed as a training run once the twin is gone
    partial = root / ".dpo_other.partial"
    partial.mkdir()
    (partial / ".stage_key").write_text(f"copy of dpo_twin: {key}")
    (partial / "half_copied.bin").write_bytes(b"x")
    messages.clear()
    _, retrained = run_pipeline(config, targets=["dpo_other"], log=messages.append,
                                trainer_callbacks=lambda: [CountTrainings()])
    assert {r.name: r.status for r in retrained}["dpo_other"] == "ran" and len(trainings) == 3
    assert any(m.startswith("[run] dpo_other") for m in messages)
    assert not (root / "dpo_other" / "half_copied.bin").exists()
