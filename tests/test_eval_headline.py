"""The headline ruler: context views, prompt specificity, shared-quantization MAUVE, per-item C2ST and coverage,
bootstrap CIs, paired tests with Holm's correction, n/a reasons and the same-prompt ceiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir
from scipy.sparse import csr_matrix

from polyalign.errors import ConfigError
from polyalign.eval import conditional, naturalness
from polyalign.eval.headline import HEADLINE_METRICS
from polyalign.eval.registry import get_metric
from polyalign.eval.runner import evaluate
from polyalign.eval.significance import holm, normal_test, paired_difference, seed_pooled_difference
from polyalign.eval.suite import build_suite, load_suite
from polyalign.eval.views import validate_context_key


# -- views --------------------------------------------------------------------------------------------------


def test_context_key_accepts_context_fields_and_refuses_response_properties_and_unknown_fields():
    assert validate_context_key("language|track|family") == ("language", "track", "family")
    assert validate_context_key(["language", "source"]) == ("language", "source")
    for bad, message in (("language|length_bin", "property of the response"), ("length", "property of the response"),
                         ("language|colour", "no record field"), ("prompt", "not a grouping field"),
                         ("language|language", "repeated"), ("", "at least one")):
        with pytest.raises(ConfigError, match=message):
            validate_context_key(bad)


# -- pure metrics against independent computations ------------------------------------------------------------


def test_prompt_auc_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    responses, inputs = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
    inputs[3] = inputs[4]  # a tie between two inputs
    got = conditional.prompt_auc_items(csr_matrix(responses), csr_matrix(inputs))
    for i in range(9):
        own = responses[i] @ inputs[i]
        others = [responses[i] @ inputs[j] for j in range(9) if j != i]
        expected = (sum(own > o for o in others) + 0.5 * sum(own == o for o in others)) / 8
        assert got[i] == pytest.approx(expected)


def test_prompt_auc_is_one_for_prompt_specific_answers_and_half_for_prompt_blind_ones():
    space = conditional.PromptSpace().fit(["apples and pears", "trains and buses", "violins and cellos"] * 3,
                                          ["I like pears", "the bus was late", "cellos sound deep"] * 3)
    inputs = space.embed(["apples and pears", "trains and buses", "violins and cellos"])
    specific = space.embed(["pears are sweet", "buses and trains run", "a cello and a violin"])
    assert conditional.prompt_auc_items(specific, inputs).tolist() == [1.0, 1.0, 1.0]
    same_text = space.embed(["pears are sweet"] * 3)
    aucs = conditional.prompt_auc_items(same_text, inputs)
    assert aucs.mean() == pytest.approx(0.5)  # one fixed answer: its own prompt wins exactly as often as it loses


def test_length_bin_tv_is_half_the_l1_distance_of_the_bin_shares():
    edges = (40, 120, 240)
    x = conditional.bin_index([10, 50, 50, 300], edges)
    r = conditional.bin_index([10, 10, 130, 130], edges)
    assert x.tolist() == [0, 1, 1, 3] and r.tolist() == [0, 0, 2, 2]
    # shares x: [.25, .5, 0, .25], r: [.5, 0, .5, 0]
    assert conditional.length_bin_tv(x, r, 4) == pytest.approx(0.5 * (0.25 + 0.5 + 0.5 + 0.25))
    assert conditional.bin_index([39, 40, 119, 120, 240], edges).tolist() == [0, 1, 1, 2, 3]


def test_mauve_from_histograms_equals_mauve_texts_own_curve_and_area():
    from mauve.compute_mauve import get_divergence_curve_for_multinomials
    from sklearn.metrics import auc

    rng = np.random.default_rng(1)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(12))
        weights = np.linspace(1e-6, 1 - 1e-6, 25)
        x, y = get_divergence_curve_for_multinomials(p, q, weights, 5.0).T
        i1, i2 = np.argsort(x), np.argsort(y)
        expected = 0.5 * (auc(x[i1], y[i1]) + auc(y[i2], x[i2]))
        assert conditional.mauve_from_histograms(p, q) == pytest.approx(expected, rel=1e-9)
    assert conditional.mauve_from_histograms(p, p) == pytest.approx(1.0, abs=1e-6)


def test_shared_quantization_mauve_tells_a_shifted_sample_from_a_fresh_one():
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(600, 4))
    quantizer = conditional.SharedQuantizer(10, seed=0).fit(pool)
    cells = quantizer.assign(pool)
    fresh = quantizer.assign(rng.normal(size=(50, 4)))
    shifted = quantizer.assign(rng.normal(size=(50, 4)) + np.array([2.0, 0, 0, 0]))
    assert conditional.mauve_from_cells(cells, fresh, quantizer.size) > conditional.mauve_from_cells(
        cells, shifted, quantizer.size) + 0.2


def test_per_item_c2st_and_joint_coverage_agree_with_the_aggregate_functions():
    rng = np.random.default_rng(3)
    r = rng.normal(size=(120, 6))
    x = rng.normal(size=(40, 6)) + 1.5
    scaler = naturalness.FeatureScaler.fit(r)
    acc, x_correct, pool_rate = naturalness.c2st_predictions(x, r, scaler, seed=0)
    assert acc == naturalness.c2st_accuracy(x, r, scaler, seed=0)
    assert acc == pytest.approx(0.5 * (np.nanmean(x_correct) + pool_rate))
    assert acc > 0.8 and x_correct.shape == (40,) and np.all((x_correct >= 0) & (x_correct <= 1))
    inside = naturalness.joint_inside(x, r, scaler, seed=0)
    assert set(np.unique(inside)) <= {0.0, 0.5, 1.0}
    assert inside.mean() == naturalness.joint_coverage(x, r, scaler, seed=0)


# -- significance -------------------------------------------------------------------------------------------


def test_holm_matches_a_hand_computation_and_ignores_missing_p_values():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3·0.01 = 0.03, max(0.03, 2·0.03) = 0.06, max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([None, 0.02, 0.5]) == [None, pytest.approx(0.04), pytest.approx(0.5)]


def test_normal_test_p_value_and_ci():
    out = normal_test(1.959963984540054, 1.0)
    assert out["p"] == pytest.approx(0.05) and out["ci"] == pytest.approx([0.0, 3.919927969080108])
    assert normal_test(float("nan"), 1.0)["p"] is None


def test_paired_difference_uses_each_metrics_direction_and_the_draw_by_draw_difference():
    rng = np.random.default_rng(4)
    noise = rng.normal(size=200) * 0.02
    # c2st (target 0.5): A at 0.6 is better than B at 0.8, the shared noise cancels draw by draw
    t = paired_difference(get_metric("c2st_acc"), 0.6, 0.8, list(0.6 + noise), list(0.8 + noise))
    assert t["diff"] == pytest.approx(-0.2) and t["se"] == pytest.approx(0.0, abs=1e-12) and t["p"] == 0.0
    # higher is better: A − B in badness is −(a − b)
    t = paired_difference(get_metric("f1"), 0.5, 0.4, list(0.5 + noise), list(0.4 + rng.normal(size=200) * 0.02))
    assert t["diff"] == pytest.approx(-0.1) and 0 < t["se"] < 0.05 and t["p"] < 1e-3
    # target human needs the human value
    t = paired_difference(get_metric("prompt_auc"), 0.6, 0.7, [0.6] * 5, [0.7] * 5, 0.8, [0.8] * 5)
    assert t["diff"] == pytest.approx(0.1)


def test_seed_pooled_difference_adds_the_seed_variance():
    spec = get_metric("feature_gap")
    draws = [list(np.linspace(-0.01, 0.01, 50))] * 3
    same = seed_pooled_difference(spec, [0.5, 0.5, 0.5], [0.3, 0.3, 0.3], draws, [[0.0] * 50] * 3)
    spread = seed_pooled_difference(spec, [0.4, 0.5, 0.6], [0.3, 0.3, 0.3], draws, [[0.0] * 50] * 3)
    assert same["diff"] == spread["diff"] == pytest.approx(0.2)
    assert spread["se"] == pytest.approx(np.sqrt(same["se"] ** 2 + np.var([0.1, 0.2, 0.3], ddof=1) / 3))
    assert spread["seed_diffs"] == pytest.approx([0.1, 0.2, 0.3])


# -- end to end on a small suite ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("headline")
    test = make_records(260, seed=11, split="test")
    for r in test[:40]:  # another human reply to the same prompt for some items
        r.alternatives = [{"content": r.response + " Indeed.", "rank": 1}]
    data = write_data_dir(root / "data", {"train": make_records(700, seed=12, split="train"), "val": [],
                                          "test": test})
    fn, names = feature_fn()
    suite_dir = build_suite(data, root / "suite", cap_per_bucket=40, ref_pool=80, min_pool=20, feature_fn=fn,
                            feature_names=names)
    suite = load_suite(suite_dir)
    preds = root / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r.id, "prediction": r.response[: max(1, len(r.response) // 3)],
                                         "finish": "length"}) + "\n" for r in suite.items), encoding="utf-8")
    result = evaluate(preds, suite_dir, root / "run", feature_fn=fn, feature_names=names, figures=False)
    return {"root": root, "suite": suite, "suite_dir": suite_dir, "result": result, "fn": fn, "names": names}


def test_every_headline_number_has_a_ci_around_it_or_an_na_reason(small):
    context = small["result"]["headline"]["context"]
    for side in ("model", "ceiling"):
        block = context[side]
        for metric in HEADLINE_METRICS:
            overall = block["summary"][metric]["overall"]
            if side == "ceiling" and metric in ("f1", "chrf"):
                assert overall["value"] is None and overall["n_groups"] == 0
                continue
            assert overall["value"] is not None, (side, metric)
            lo, hi = overall["ci"]
            assert lo <= overall["value"] <= hi and hi > lo, (side, metric)
            assert len(block["replicates"][metric]["overall"]) == block["draws"]
        for group, info in block["groups"].items():
            for metric in HEADLINE_METRICS:
                assert (metric in info["values"]) != (metric in info["na"]), (group, metric)
                assert metric not in info["values"] or np.isfinite(info["values"][metric])


def test_a_group_too_small_for_a_metric_is_na_with_its_reason_and_left_out_of_the_average(small):
    suite = small["suite"]
    view = suite.view("context")
    smallest = min((g for g in view.groups if view.info[g]["language"] == "zh"), key=lambda g: len(view.items[g]))
    keep = set(view.items[smallest][:3])
    preds = small["root"] / "few.jsonl"
    preds.write_text("".join(json.dumps({"id": r.id, "prediction": r.response}) + "\n"
                             for i, r in enumerate(suite.items) if i in keep or suite.items[i].language == "en"),
                     encoding="utf-8")
    result = evaluate(preds, small["suite_dir"], small["root"] / "few", feature_fn=small["fn"],
                      feature_names=small["names"], figures=False, allow_missing=True)
    block = result["headline"]["context"]["model"]
    info = block["groups"][smallest]
    assert info["n"] == 3
    assert "fewer than the 10 this metric needs" in info["na"]["c2st_acc"]
    assert "c2st_acc" not in info["values"]
    overall = block["summary"]["c2st_acc"]["overall"]
    scored = [g for g, i in block["groups"].items() if "c2st_acc" in i["values"]]
    assert overall["n_groups"] == len(scored) and overall["n_na"] == len(view.groups) - len(scored)
    assert overall["value"] == pytest.approx(np.mean([block["groups"][g]["values"]["c2st_acc"] for g in scored]))
    report = (small["root"] / "few" / "report.md").read_text(encoding="utf-8")
    assert "n/a" in report


def test_same_prompt_humans_are_scored_on_their_items_next_to_the_gold(small):
    context = small["result"]["headline"]["context"]
    same = context["same_prompt"]
    n_alt = sum(1 for r in small["suite"].items if r.alternatives)
    assert sum(g["n"] for g in same["groups"].values()) == n_alt
    assert sum(g["n"] for g in context["model_same_prompt_items"]["groups"].values()) == n_alt
    # the alternative is the gold plus " Indeed.": its F1 against the gold is high but below 1
    f1 = same["summary"]["f1"]["overall"]["value"]
    assert 0.7 < f1 < 1.0
    report = (small["root"] / "run" / "report.md").read_text(encoding="utf-8")
    assert "same-prompt humans" in report and "held-out humans (same items)" in report


def test_a_suite_without_alternatives_reports_the_same_prompt_ceiling_as_absent(tmp_path):
    test = make_records(200, seed=22, split="test")
    for r in test:
        r.alternatives = []
    data = write_data_dir(tmp_path / "data", {"train": make_records(500, seed=21, split="train"), "val": [],
                                              "test": test})
    fn, names = feature_fn()
    suite_dir = build_suite(data, tmp_path / "suite", cap_per_bucket=30, ref_pool=60, min_pool=20, feature_fn=fn,
                            feature_names=names)
    items = load_suite(suite_dir).items
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r.id, "prediction": r.response[::-1]}) + "\n" for r in items),
                     encoding="utf-8")
    result = evaluate(preds, suite_dir, tmp_path / "run", feature_fn=fn, feature_names=names, figures=False)
    assert "same_prompt" not in result["headline"]["context"]
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "Same-prompt human ceiling: absent" in report


def test_the_bootstrap_draws_are_the_same_for_every_method_so_a_method_against_itself_differs_by_zero(small):
    from polyalign.eval.contrasts import contrast_tests

    runs = {"a": small["result"], "b": small["result"]}
    rows = contrast_tests(runs, [("a", "b")], "context")["overall"]
    assert rows and all(r["diff"] == 0 and not r["significant"] for r in rows)
    other = json.loads((small["root"] / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert other["headline"]["context"]["model"]["replicates"] == small["result"]["headline"]["context"]["model"][
        "replicates"]


def test_decoding_reach_names_the_bins_no_cut_response_reached(small):
    reach = small["result"]["reach"]
    assert reach["known"] and reach["truncated"] == reach["n"]
    longest = reach["longest_cut"]
    edges = small["suite"].length_edges
    assert [b["from"] for b in reach["out_of_reach"]] == [e for e in edges if e > longest]


def test_a_pipeline_whose_context_key_names_a_response_property_is_refused_at_load(repo_root):
    from polyalign.pipeline.config import load_pipeline_config

    config = repo_root / "configs" / "pipeline" / "demo.yaml"
    assert load_pipeline_config(config).suite.context_key == ["language", "track", "family"]
    with pytest.raises(ConfigError, match=r"suite\.context_key.*'length_bin' is a property of the response"):
        load_pipeline_config(config, {"suite": {"context_key": ["language", "length_bin"]}})
    with pytest.raises(ConfigError, match="no record field 'topic'"):
        load_pipeline_config(config, {"suite": {"context_key": ["topic"]}})
