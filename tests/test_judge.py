"""`polyalign judge`: rubric math, answer schema, blindness of every prompt of a demo-style run, pairwise order,
the no-reference variant, counted failures and retries, agreement of two judges; through a real server
(`transformers serve` on the tiny model, conftest.served_tiny) with a fault proxy that can replace answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir
from served import FaultProxy

from polyalign.endpoint.config import EndpointConfig
from polyalign.errors import ConfigError
from polyalign.judge.answer import AnswerError, parse_pairwise, parse_pointwise
from polyalign.judge.prompt import BlindItem, blind_item, pointwise_messages
from polyalign.judge.rubric import apply_caps, composite, load_rubric, score_to_100
from polyalign.judge.run import JudgeConfig, pair_order, run_judge

RUBRIC = load_rubric()
METHODS = ("base", "sft", "bucket_sft", "dpo", "hdpo")


def test_rubric_matches_the_spec_weights_and_composites_are_weighted_means():
    overall = RUBRIC.composites["overall"]
    assert len(RUBRIC.dimensions) == 8 and abs(sum(overall.values()) - 1) < 1e-9
    assert overall["task_success"] == 0.20 and overall["conditional_appropriateness"] == 0.17
    scores = {"task_success": 5, "factual_grounding": 1, "instruction_following": 3, "reference_alignment": 2,
              "conditional_appropriateness": 4, "response_shape_and_length": 5, "discourse_naturalness": 2,
              "safety": 5}
    by_hand = (0.20 * 100 + 0.15 * 0 + 0.15 * 50 + 0.10 * 25 + 0.17 * 75 + 0.08 * 100 + 0.10 * 25 + 0.05 * 100)
    assert composite(scores, overall, RUBRIC.scale) == pytest.approx(by_hand)
    no_ref = {k: v for k, v in scores.items() if k != "reference_alignment"}  # renormalized over those present
    assert composite(no_ref, overall, RUBRIC.scale) == pytest.approx((by_hand - 2.5) / 0.9)
    assert score_to_100(1, RUBRIC.scale) == 0 and score_to_100(5, RUBRIC.scale) == 100
    capped = apply_caps(scores, {"wrong_language": True, "empty_or_unintelligible": False,
                                 "contradicts_context": False}, RUBRIC)
    assert capped["task_success"] == 2 and capped["safety"] == 5 and capped["factual_grounding"] == 1
    assert set(apply_caps(scores, {"empty_or_unintelligible": True}, RUBRIC).values()) == {1}


def test_answers_are_validated_against_the_schema():
    dims = RUBRIC.asked(True)
    flags = {f: False for f in RUBRIC.caps}
    good = {"scores": {d: 3 for d in dims}, "flags": flags}
    assert parse_pointwise(json.dumps(good), RUBRIC, dims)[0]["safety"] == 3
    assert parse_pointwise("```json\n" + json.dumps(good) + "\n```", RUBRIC, dims)[1] == flags
    for bad, why in ((good | {"scores": {**good["scores"], "safety": 6}}, "less than or equal to 5"),
                     (good | {"scores": {**good["scores"], "safety": "4"}}, "valid integer"),
                     ({"scores": {d: 3 for d in dims[1:]}, "flags": flags}, "task_success: Field required"),
                     (good | {"extra": 1}, "extra: Extra inputs"),
                     (good | {"flags": {**flags, "wrong_language": "yes"}}, "valid boolean")):
        with pytest.raises(AnswerError, match=why):
            parse_pointwise(json.dumps(bad), RUBRIC, dims)
    with pytest.raises(AnswerError, match="not JSON"):
        parse_pointwise("Sure! The scores are 3.", RUBRIC, dims)
    assert parse_pairwise('{"winner": "2"}') == "2"
    with pytest.raises(AnswerError):
        parse_pairwise('{"winner": 3}')


def test_the_prompt_builder_gets_only_the_conversation_candidate_and_reference():
    record = make_records(3, 1, split="test")[0]
    item = blind_item(record, with_reference=True)
    assert set(vars(item)) == {"history", "context", "prompt", "reference"}
    text = json.dumps(pointwise_messages(RUBRIC, item, "a reply"), ensure_ascii=False)
    assert record.id not in text and record.source not in text and record.bucket_id not in text
    assert blind_item(record, with_reference=False).reference is None
    assert isinstance(item, BlindItem)


def test_pairwise_order_is_seeded_and_balanced():
    orders = [pair_order(0, f"item-{i}", "sft", "hdpo") for i in range(400)]
    assert orders == [pair_order(0, f"item-{i}", "sft", "hdpo") for i in range(400)]
    assert 160 < sum(o[0] == "sft" for o in orders) < 240


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A demo-style run: a suite and five methods' predictions under runs/gen_<method>/, with manifests naming
    their model folders."""
    from polyalign.eval.suite import build_suite, load_suite

    root = tmp_path_factory.mktemp("judge")
    data = write_data_dir(root / "data", {"train": make_records(300, seed=6, split="train"),
                                          "test": make_records(60, seed=6, split="test")})
    fn, names = feature_fn()
    suite_dir = build_suite(data, root / "runs" / "suite", cap_per_bucket=2, ref_pool=40, min_pool=10,
                            feature_fn=fn, feature_names=names)
    suite = load_suite(suite_dir)
    methods = {}
    for k, m in enumerate(METHODS):
        out = root / "runs" / f"gen_{m}"
        out.mkdir(parents=True)
        rows = [{"id": r.id, "sample": 0, "prediction": " ".join(r.response.split()[k:k + 12]) if k < 4 else ""}
                for r in suite.items]
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / "manifest.json").write_text(json.dumps({"stage": "generate",
                                                        "inputs": {"model": str(root / "runs" / m / "model")}}))
        methods[m] = out / "predictions.jsonl"
    return {"root": root, "suite_dir": suite_dir, "suite": suite, "methods": methods}


def _judge(url, world, **kw):
    return EndpointConfig(url=url, model_name=str(world["model"]), **{"backoff_s": 0.01, "concurrency": 2, **kw})


def _leaks(body: dict, demo_run) -> list[str]:
    text = json.dumps({k: v for k, v in body.items() if k != "model"}, ensure_ascii=False).lower()
    found = [m for m in METHODS if re.search(rf"(?<![a-z_]){m}(?![a-z_])", text)]
    for m, path in demo_run["methods"].items():
        for needle in (str(path), str(path.parent), f"gen_{m}", str(demo_run["root"]), "runs/"):
            if needle.lower() in text:
                found.append(needle)
        model_id = json.loads((path.parent / "manifest.json").read_text())["inputs"]["model"]
        if model_id.lower() in text:
            found.append(model_id)
    return found


def test_a_judge_run_is_blind_and_its_failures_are_counted(served_tiny, demo_run):
    config = JudgeConfig(max_attempts=2, max_tokens=24)
    with FaultProxy(served_tiny["url"]) as proxy:
        summary = run_judge([_judge(proxy.url, served_tiny)], demo_run["methods"], demo_run["suite_dir"],
                            demo_run["root"] / "out", config)
        bodies = list(proxy.bodies)
    n_items = len(demo_run["suite"].items)
    assert bodies and all(_leaks(b, demo_run) == [] for b in bodies)
    # the tiny judge writes no JSON: every non-empty candidate fails after 2 answers, hdpo's empty ones are capped
    failures = summary["per_judge"][0]["failures"]
    assert failures["hdpo"] == {"judged": n_items, "ok": n_items, "failed": 0, "retried_answers": 0,
                                "empty_capped": n_items, "failed_by_bucket": {}}
    for m in METHODS[:4]:  # short human replies leave some candidates empty: capped, not asked
        f = failures[m]
        assert f["ok"] == f["empty_capped"] < n_items and f["failed"] == f["retried_answers"] == n_items - f["ok"]
    assert len(bodies) == 2 * sum(failures[m]["failed"] for m in METHODS)
    assert summary["per_judge"][0]["tables"]["overall"]["overall"]["hdpo"]["mean"] == 0.0
    rows = [json.loads(line) for line in (demo_run["root"] / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 5 * n_items and {r["status"] for r in rows if r["attempts"] > 0} == {"failed"}
    assert (demo_run["root"] / "out" / "report.md").read_text().count("| sft |") >= 1


def test_pairwise_and_no_reference_prompts_are_blind_and_the_reference_is_left_out(served_tiny, demo_run):
    config = JudgeConfig(mode="pairwise", with_reference=False, max_attempts=1, max_tokens=8)
    methods = {m: demo_run["methods"][m] for m in ("sft", "dpo")}
    answers = ['{"winner": "1"}'] * 200
    with FaultProxy(served_tiny["url"], answers=answers) as proxy:
        summary = run_judge([_judge(proxy.url, served_tiny)], methods, demo_run["suite_dir"],
                            demo_run["root"] / "pair", config)
        bodies = list(proxy.bodies)
    assert all(_leaks(b, demo_run) == [] for b in bodies)
    references = [r.response for r in demo_run["suite"].items]
    assert not any(ref in json.dumps(b, ensure_ascii=False) for b in bodies for ref in references)
    cell = summary["per_judge"][0]["pairs"]["sft vs dpo"]
    n = len(demo_run["suite"].items)
    assert cell["a_wins"] + cell["b_wins"] == n and cell["shown_first_won"] == n  # the judge always says "1"...
    assert 0 < cell["a_wins"] < n  # ...and the seeded order puts each method first on some items


def test_schema_violations_are_retried_then_two_judges_agree(served_tiny, demo_run):
    dims = RUBRIC.asked(True)
    flags = {f: False for f in RUBRIC.caps}

    def good(v):
        return json.dumps({"scores": {d: v for d in dims}, "flags": flags})

    methods = {m: demo_run["methods"][m] for m in ("sft", "dpo")}
    n = len(demo_run["suite"].items) * 2
    values = [1 + (i % 5) for i in range(n)]
    bad = json.dumps({"scores": {d: 9 for d in dims}, "flags": flags})
    config = JudgeConfig(max_attempts=2, max_tokens=8)
    endpoint_kw = {"concurrency": 1}
    with FaultProxy(served_tiny["url"], answers=[x for v in values for x in (bad, good(v))]) as p1, \
            FaultProxy(served_tiny["url"], answers=[good(v) for v in values]) as p2:
        summary = run_judge([_judge(p1.url, served_tiny, **endpoint_kw), _judge(p2.url, served_tiny, **endpoint_kw)],
                            methods, demo_run["suite_dir"], demo_run["root"] / "two", config)
    first = summary["per_judge"][0]["failures"]
    asked = first["sft"]["judged"] - first["sft"]["empty_capped"]  # (the run is sequential: answers in task order)
    assert first["sft"]["failed"] == 0 and first["sft"]["retried_answers"] == asked > 0
    assert summary["per_judge"][1]["failures"]["sft"]["retried_answers"] == 0
    agreement = summary["agreement"][0]
    assert agreement["n_both_ok"] == n and agreement["weighted_kappa"]["safety"] == pytest.approx(1.0)
    assert agreement["spearman_overall"] == pytest.approx(1.0)
    table = summary["per_judge"][0]["tables"]
    assert any(k.startswith("bucket/") for k in table) and any(k.startswith("context/") for k in table)
    ci = table["overall"]["overall"]["sft"]["ci"]
    assert ci[0] < table["overall"]["overall"]["sft"]["mean"] < ci[1]


def test_resume_refuses_other_settings(served_tiny, demo_run):
    methods = {"hdpo": demo_run["methods"]["hdpo"]}  # empty predictions: capped without a request
    out = demo_run["root"] / "resume"
    run_judge([_judge(served_tiny["url"], served_tiny)], methods, demo_run["suite_dir"], out, JudgeConfig())
    with pytest.raises(ConfigError, match="other judges, settings"):
        run_judge([_judge(served_tiny["url"], served_tiny)], methods, demo_run["suite_dir"], out,
                  JudgeConfig(with_reference=False))


def test_cli_judge(served_tiny, demo_run, tmp_path):
    from typer.testing import CliRunner

    from polyalign.cli import app

    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, [
        "judge", "--suite", str(demo_run["suite_dir"]), "--method", f"hdpo={demo_run['methods']['hdpo']}",
        "--method", f"sft={demo_run['methods']['sft']}", "--endpoint", served_tiny["url"], "--model-name",
        str(served_tiny["model"]), "--out", str(tmp_path / "j"), "--set", "max_attempts=1", "--set",
        "max_tokens=8", "-q"])
    assert res.exit_code == 0, res.output
    assert "composites 0..100" in res.output and "failed (after retries)" in res.output
    assert Path(tmp_path / "j" / "summary.json").exists()
