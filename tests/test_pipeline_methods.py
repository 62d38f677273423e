"""Declarative preference methods: the stage graph of the ablation ladder (configs/pipeline/ladder.yaml), one
pairs stage per policy, rungs that differ in one loss term, plain DPO decided by the loss, and SFT vs
Bucket-SFT differing only in `balance:`. No training here (the wiring and the graph only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from polyalign.errors import ConfigError
from polyalign.pipeline import stages as stages_module
from polyalign.pipeline.config import load_pipeline_config
from polyalign.pipeline.graph import StageContext
from polyalign.pipeline.run import run_pipeline
from polyalign.pipeline.stages import Wiring, build_stages
from polyalign.train.hdpo import as_plain_dpo, is_plain_dpo

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "configs" / "pipeline"
LADDER = ["dpo_bsft", "dpo_w_bsft", "dpo_wr_bsft", "hdpo"]  # each rung adds one term to the one before
RUNG_TERMS = ["use_weights", "reg_lambda", "anchor_gamma"]
LADDER_METHODS = ["base", "sft", "bucket_sft", "dpo", "dpo_bsft", "dpo_w_bsft", "dpo_wr_bsft", "hdpo", "hdpo_sft"]


@pytest.fixture(scope="module")
def data_override(shared_data_dir: Path) -> dict[str, Any]:
    """Two bundled sources instead of the demo's data config (the wiring reads the data config's paths)."""
    sources = [{"name": "en_oasst1", "path": str(shared_data_dir / "en_oasst1.jsonl"), "format": "messages",
                "language": "en", "family": "assistant", "limit": 20},
               {"name": "zh_crosswoz", "path": str(shared_data_dir / "zh_crosswoz.jsonl"), "format": "messages",
                "language": "zh", "family": "task", "limit": 20}]
    return {"data": {"sources": sources, "min_bucket_size": 2}}


def wiring(name: str, data_override: dict[str, Any], **overrides: Any) -> Wiring:
    path = PIPELINES / name
    w = Wiring(load_pipeline_config(path, {**data_override, **overrides}), path)
    w.preflight()
    return w


@pytest.fixture(scope="module")
def ladder(data_override) -> Wiring:
    return wiring("ladder.yaml", data_override)


@pytest.fixture(scope="module")
def ladder_stages(ladder):
    return {s.name: s for s in build_stages(ladder)}


def _dump(config: Any, exclude: set[str]) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude=exclude)


def test_ladder_graph_has_one_pairs_stage_per_policy(ladder, ladder_stages):
    assert ladder.config.methods == LADDER_METHODS
    assert sorted(n for n in ladder_stages if n.startswith("pairs_")) == ["pairs_bucket_sft", "pairs_sft"]
    assert ladder_stages["pairs_sft"].deps == ("data", "critic", "samples_sft")
    assert ladder_stages["pairs_bucket_sft"].deps == ("data", "critic", "samples_bucket_sft")
    expected = {"dpo": ("sft", "pairs_sft"), "hdpo_sft": ("sft", "pairs_sft"),
                **{m: ("bucket_sft", "pairs_bucket_sft") for m in LADDER}}
    assert {m: ladder_stages[m].deps for m in expected} == expected
    assert ladder_stages["compare"].deps == tuple(f"eval_{m}" for m in LADDER_METHODS)
    for method, (init, _) in expected.items():
        config = ladder.preference_config(method)
        assert config.model == ladder.model_path(init)
        assert config.pairs == str(ladder.dir(expected[method][1]) / "pairs.jsonl")


def test_ladder_rungs_differ_in_exactly_one_loss_term(ladder):
    configs = [ladder.preference_config(m) for m in LADDER]
    for config in configs:
        assert not config.on_policy.enabled
    for (lower, upper), term in zip(zip(configs, configs[1:]), RUNG_TERMS):
        a, b = lower.loss.model_dump(), upper.loss.model_dump()
        assert [k for k in a if a[k] != b[k]] == [term]
        assert b[term] and not a[term], f"{term} is switched on going up the ladder"
        # everything else (init, pairs, steps, batch, lr, max pairs) is the same; on_policy is off in both
        assert _dump(lower, {"output_dir", "loss", "on_policy"}) == _dump(upper, {"output_dir", "loss", "on_policy"})
    assert configs[-1] == ladder.preference_config("hdpo"), "the top rung is the demo's HDPO"


def test_dpo_and_hdpo_are_trained_from_both_inits(ladder):
    for sft_init, bsft_init in (("dpo", "dpo_bsft"), ("hdpo_sft", "hdpo")):
        a, b = ladder.preference_config(sft_init), ladder.preference_config(bsft_init)
        assert _dump(a, {"output_dir", "model", "pairs"}) == _dump(b, {"output_dir", "model", "pairs"})
        assert (a.model, b.model) == (ladder.model_path("sft"), ladder.model_path("bucket_sft"))
    # DPO and HDPO see the same pairs, steps and batches: only the loss terms differ (on_policy off in both)
    dpo, hdpo = ladder.preference_config("dpo"), ladder.preference_config("hdpo_sft")
    assert _dump(dpo, {"output_dir", "loss", "on_policy"}) == _dump(hdpo, {"output_dir", "loss", "on_policy"})
    assert not dpo.on_policy.enabled and not hdpo.on_policy.enabled


def test_plain_dpo_is_decided_by_the_loss(ladder, ladder_stages, monkeypatch, tmp_path):
    for method in ladder.config.preference_methods():
        config = ladder.preference_config(method)
        plain = method in ("dpo", "dpo_bsft")
        assert is_plain_dpo(config) is plain and config.method == ("dpo" if plain else "hdpo")
        assert ("plain DPO" in ladder_stages[method].description) is plain
        if plain:  # exactly the plain DPO that `polyalign train dpo` (as_plain_dpo) trains
            assert as_plain_dpo(config) == (config, [])

    import polyalign.train.hdpo as hdpo_module

    calls = []
    monkeypatch.setattr(hdpo_module, "run_hdpo", lambda config, **kwargs: calls.append((config, kwargs)))
    for method in ("dpo_bsft", "dpo_w_bsft"):
        ctx = StageContext(name=method, work_dir=tmp_path / method, deps={}, config=None, resuming=False,
                           log=lambda m: None)
        stages_module._preference(ladder, method)(ctx)
    assert [is_plain_dpo(c) for c, _ in calls] == [True, False]
    assert [c.method for c, _ in calls] == ["dpo", "hdpo"]  # what the model manifest (and stage.json) records
    assert all("plain_dpo" not in kwargs for _, kwargs in calls), "no name-based plain-DPO switch"


def test_plain_dpo_trainer_refuses_hdpo_terms(data_override):
    with pytest.raises(ConfigError, match=r"preference\.dpo_bsft: trainer 'dpo' is plain DPO.*use_weights"):
        wiring("ladder.yaml", data_override, preference={"dpo_bsft": {"loss": {"use_weights": True}}})
    with pytest.raises(ConfigError, match=r"preference\.dpo_w_bsft\.loss\.no_such_term"):
        wiring("ladder.yaml", data_override, preference={"dpo_w_bsft": {"loss": {"no_such_term": 1}}})


def test_sft_and_bucket_sft_differ_only_in_balance(ladder):
    sft, bucket = ladder.sft_config("sft"), ladder.sft_config("bucket_sft")
    assert _dump(sft, {"output_dir", "balance"}) == _dump(bucket, {"output_dir", "balance"})
    assert not sft.balance.enabled and bucket.balance.enabled
    raw = {name: yaml.safe_load((REPO / "configs" / "train" / f"{name}.yaml").read_text())
           for name in ("sft", "bucket_sft")}
    for key in ("max_train_samples", "max_eval_samples", "max_length"):
        assert raw["sft"][key] == raw["bucket_sft"][key]
    assert raw["sft"]["training"] == raw["bucket_sft"]["training"]  # steps, batch, lr, schedule


def test_demo_keeps_its_five_methods_and_builds_only_what_they_need(data_override):
    demo = wiring("demo.yaml", data_override)
    names = [s.name for s in build_stages(demo)]
    assert demo.config.methods == ["base", "sft", "bucket_sft", "dpo", "hdpo"]
    assert [n for n in names if n in demo.config.preference or n.startswith("pairs_")] == \
        ["pairs_sft", "pairs_bucket_sft", "dpo", "hdpo"]
    few = wiring("ladder.yaml", data_override, methods=["base", "sft"])
    assert [s.name for s in build_stages(few)] == ["data", "base", "suite", "sft", "gen_base", "eval_base",
                                                     "gen_sft", "eval_sft", "compare"]
    one = [s.name for s in build_stages(wiring("ladder.yaml", data_override, methods=["dpo_w_bsft"]))]
    assert {"sft", "bucket_sft", "samples_sft", "samples_bucket_sft", "critic", "pairs_bucket_sft"} <= set(one)
    assert "pairs_sft" not in one and "dpo" not in one and "gen_sft" not in one


def test_ladder_extends_demo():
    demo = load_pipeline_config(PIPELINES / "demo.yaml").model_dump()
    ladder = load_pipeline_config(PIPELINES / "ladder.yaml").model_dump()
    for key in ("name", "workdir", "preference", "methods", "contrasts"):
        demo.pop(key), ladder.pop(key)
    assert ladder == demo, "the ladder runs with the demo's settings"


def test_bad_method_declarations_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown method.*nope.*preference"):
        load_pipeline_config(PIPELINES / "demo.yaml", {"methods": ["base", "nope"]})
    with pytest.raises(ConfigError, match="gen_x.*taken by a stage"):
        load_pipeline_config(PIPELINES / "demo.yaml",
                             {"preference": {"gen_x": {"init": "sft", "pairs": "sft", "trainer": "dpo"}}})
    with pytest.raises(ConfigError, match="share a label"):
        load_pipeline_config(PIPELINES / "demo.yaml", {"preference": {"hdpo": {"label": "DPO"}}})
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_pipeline_config(loop)
    away = tmp_path / "away.yaml"
    away.write_text(f"extends: {PIPELINES / 'demo.yaml'}\n")
    with pytest.raises(ConfigError, match="same folder"):
        load_pipeline_config(away)


def test_stage_of_an_unlisted_method_names_the_methods_list(data_override):
    with pytest.raises(ConfigError, match=r"hdpo_sft not in `methods:`"):
        run_pipeline(PIPELINES / "ladder.yaml", targets=["eval_hdpo_sft"],
                     overrides={**data_override, "methods": ["base", "hdpo"]}, log=lambda m: None)
