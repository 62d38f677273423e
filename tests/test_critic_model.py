"""The learned critic: it separates human from model-like text, a human-vs-human critic is refused, constant
scores are refused, bundles round-trip exactly, scoring is deterministic, and the record split never leaks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hdpo_fixtures import bundled_records, human_as_predictions, prediction_rows, stats_by_bucket
from polyalign.critic.featurize import FeatureStandardizer, HiddenStateEncoder, linguistic_feature_names, \
    linguistic_features
from polyalign.critic.fit import CriticConfig, assemble_critic_data, class_balanced_weights, evaluate_scores, \
    fit_critic_data, length_matched_auc, split_by_group, write_bundle
from polyalign.critic.model import critic_weakness, ensure_not_constant, load_critic, logit_to_distance
from polyalign.errors import PolyAlignError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def records(shared_data_dir):
    return bundled_records(shared_data_dir, per_file=150)


@pytest.fixture(scope="module")
def human_x(records):
    return linguistic_features([r["response"] for r in records], [r["language"] for r in records])


@pytest.fixture(scope="module")
def stats(records, human_x):
    return stats_by_bucket(human_x, [r["bucket_id"] for r in records])


def config(**kw):
    return CriticConfig(data="unused", out="unused", **kw)


@pytest.fixture(scope="module")
def fitted(records, human_x, stats):
    data = assemble_critic_data(records, human_x, prediction_rows(records), linguistic_features)
    critic, metrics = fit_critic_data(data, stats, config(), linguistic_feature_names())
    return critic, metrics, data


def test_learned_critic_separates_human_from_model_like_text(fitted):
    critic, metrics, data = fitted
    assert metrics["heldout_auc"] > 0.8
    assert metrics["within_bucket_auc"] > 0.8
    for lang in ("en", "zh"):
        assert metrics["auc_by_language"][lang]["auc"] > 0.75
    assert metrics["passes_collapse_check"] and metrics["weakness"] is None
    # distances: >= 0, humans lower than model text on held-out rows
    assert metrics["human_scores"]["q50"] < metrics["model_scores"]["q50"]
    assert metrics["score_std"] > 0.1
    assert set(metrics["closed_form_auc"]) == {"band", "mahalanobis", "knn"}
    assert metrics["n_heldout_human"] > 0 and metrics["n_heldout_model"] > 0


def test_critic_on_two_halves_of_human_data_is_at_chance_and_refused(records, stats, tmp_path):
    rng = random.Random(1)
    shuffled = records[:]
    rng.shuffle(shuffled)
    half_a, half_b = shuffled[:len(records) // 2], shuffled[len(records) // 2:]
    xa = linguistic_features([r["response"] for r in half_a], [r["language"] for r in half_a])
    data = assemble_critic_data(half_a, xa, human_as_predictions(half_a, half_b), linguistic_features)
    critic, metrics = fit_critic_data(data, stats, config(), linguistic_feature_names())
    assert 0.35 < metrics["heldout_auc"] < 0.65
    assert not metrics["passes_collapse_check"]
    bundle = write_bundle(tmp_path / "null", critic, metrics, {"stage": "test"})
    with pytest.raises(PolyAlignError, match="AUC"):
        load_critic(bundle)
    assert load_critic(bundle, allow_weak=True).method == "learned"
    assert load_critic(bundle, min_auc=0.3).method == "learned"


def test_constant_scores_are_refused(fitted, tmp_path):
    critic, metrics, data = fitted
    last = critic.net.mlp[-1]
    constant = load_critic(write_bundle(tmp_path / "ok", critic, metrics, {}))
    with torch.no_grad():
        constant.net.mlp[-1].weight.zero_()
        constant.net.mlp[-1].bias.fill_(0.3)
    assert float(last.weight.detach().abs().sum()) > 0  # the original is untouched
    held = data.subset(split_by_group(data.record_ids, 0.2, 0.1, 0)[2])
    scores = constant.score_features(held.x, held.bucket_ids.tolist(), unknown="pooled")
    assert np.ptp(scores) == 0
    with pytest.raises(PolyAlignError, match="collapsed"):
        ensure_not_constant(scores, held.texts)
    ensure_not_constant(scores, held.texts, allow_weak=True)
    m = evaluate_scores(scores, held.labels, held.languages, held.tracks, held.bucket_ids)
    assert "constant" in critic_weakness(m)
    bundle = write_bundle(tmp_path / "constant", constant, m, {})
    with pytest.raises(PolyAlignError, match="constant"):
        load_critic(bundle)


def test_round_trip_and_deterministic_scoring(fitted, records, tmp_path):
    critic, metrics, _ = fitted
    bundle = write_bundle(tmp_path / "critic", critic, metrics, {"stage": "test"})
    assert {p.name for p in bundle.iterdir()} >= {"critic.pt", "critic.json", "metrics.json", "manifest.json"}
    loaded = load_critic(bundle)
    texts = [r["response"] for r in records[:200]] + ["ok ok ok ok ok", "好的好的好的"]
    langs = [r["language"] for r in records[:200]] + ["en", "zh"]
    buckets = [r["bucket_id"] for r in records[:200]] + [records[0]["bucket_id"], records[-1]["bucket_id"]]
    a = critic.score(texts, langs, buckets)
    b = loaded.score(texts, langs, buckets)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, loaded.score(texts, langs, buckets))
    assert np.all(a >= 0)
    # batch size does not change the scores beyond float noise
    loaded.batch_size = 7
    np.testing.assert_allclose(loaded.score(texts, langs, buckets), a, rtol=1e-5, atol=1e-6)


def test_fit_is_deterministic_for_a_seed(records, human_x, stats):
    sub = records[::3]
    x = human_x[::3]
    preds = prediction_rows(sub, seed=2)
    runs = []
    for _ in range(2):
        data = assemble_critic_data(sub, x, preds, linguistic_features)
        critic, metrics = fit_critic_data(data, stats, config(max_epochs=5), linguistic_feature_names())
        runs.append(critic.score_features(data.x, data.bucket_ids.tolist(), unknown="pooled"))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_unknown_buckets_error_or_pooled(fitted):
    critic = fitted[0]
    with pytest.raises(PolyAlignError, match="unknown to the critic"):
        critic.score(["hello there"], ["en"], ["xx|nope"])
    d = critic.score(["hello there"], ["en"], ["xx|nope"], unknown="pooled")
    assert np.isfinite(d).all() and d[0] >= 0


def test_split_by_group_never_straddles():
    ids = np.array([f"r{i % 50}" for i in range(400)], dtype=object)
    fit, stop, held = split_by_group(ids, 0.2, 0.1, seed=3)
    assert np.all(fit.astype(int) + stop + held == 1)
    for part in (fit, stop, held):
        assert not set(ids[part]) & set(ids[~part])
    assert len(set(ids[held])) == 10 and len(set(ids[stop])) == 4
    again = split_by_group(ids, 0.2, 0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((fit, stop, held), again))
    assert not np.array_equal(held, split_by_group(ids, 0.2, 0.1, seed=4)[2])


def test_class_balanced_weights_by_hand():
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1, 0])
    buckets = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c"], dtype=object)
    w = class_balanced_weights(labels, buckets)
    # bucket a: 3 human, 1 model, n=4 -> 4/6 each human, 4/2 the model; b: 1 human, 3 model; c: one class -> 0
    np.testing.assert_allclose(w, [4 / 6, 4 / 6, 4 / 6, 2, 2, 4 / 6, 4 / 6, 4 / 6, 0])
    for b in ("a", "b"):
        m = buckets == b
        assert w[m & (labels == 0)].sum() == pytest.approx(w[m & (labels == 1)].sum())


def test_distance_is_softplus_of_logit():
    logits = np.array([-50.0, -2.0, 0.0, 3.0, 60.0])
    np.testing.assert_allclose(logit_to_distance(logits), -np.log(1 / (1 + np.exp(logits))), rtol=1e-12, atol=1e-15)


def test_standardizer_clips_and_falls_back_to_pooled():
    s = FeatureStandardizer({"a": np.array([1.0, 0.0])}, {"a": np.array([2.0, 1e-12])}, np.zeros(2), np.ones(2),
                            clip=3.0)
    z = s.transform(np.array([[5.0, 1.0], [5.0, 1.0]]), ["a", "zz"])
    np.testing.assert_allclose(z, [[2.0, 3.0], [3.0, 1.0]])
    assert FeatureStandardizer.from_json(s.to_json()).transform(np.array([[5.0, 1.0]]), ["a"]).tolist() == \
        z[:1].tolist()


def test_closed_form_critic_bundle_round_trip(records, human_x, stats, tmp_path):
    data = assemble_critic_data(records, human_x, prediction_rows(records), linguistic_features)
    for method in ("band", "mahalanobis", "knn"):
        critic, metrics = fit_critic_data(data, stats, config(method=method, knn_k=5), linguistic_feature_names())
        assert metrics["heldout_auc"] is not None and metrics["n_heldout"] > 0
        loaded = load_critic(write_bundle(tmp_path / method, critic, metrics, {}), allow_weak=True)
        texts = [r["response"] for r in records[:50]]
        args = (texts, [r["language"] for r in records[:50]], [r["bucket_id"] for r in records[:50]])
        np.testing.assert_allclose(loaded.score(*args), critic.score(*args), rtol=1e-6)


def test_hidden_state_encoder_and_critic(records, human_x, stats, tmp_path):
    from polyalign.models.tiny import TinyModelConfig, build_tiny_model, save_model_dir, train_tokenizer

    texts = [r["response"] for r in records]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    model_dir = save_model_dir(build_tiny_model(tokenizer, TinyModelConfig(vocab_size=400, hidden=32, layers=1,
                                                                           heads=2, max_positions=128)),
                               tokenizer, tmp_path / "tiny")
    cache = tmp_path / "cache"
    enc = HiddenStateEncoder(str(model_dir), batch_size=8, max_length=64, cache_dir=cache)
    h = enc.encode(texts[:20])
    assert h.shape == (20, 32) and np.isfinite(h).all()
    # cached per text: a fresh encoder reads the cache without loading the model
    enc2 = HiddenStateEncoder(str(model_dir), batch_size=8, max_length=64, cache_dir=cache)
    np.testing.assert_array_equal(enc2.encode(texts[:20][::-1]), h[::-1])
    assert enc2._model is None
    # padding does not leak into the mean (a text alone = the same text in a padded batch)
    alone = HiddenStateEncoder(str(model_dir), max_length=64).encode([texts[3]])
    np.testing.assert_allclose(alone[0], h[3], rtol=1e-4, atol=1e-5)

    sub, x = records[::4], human_x[::4]
    data = assemble_critic_data(sub, x, prediction_rows(sub), linguistic_features)
    critic, metrics = fit_critic_data(data, stats, config(max_epochs=5, hidden_states_model=str(model_dir),
                                                          hidden_states_max_length=64), linguistic_feature_names())
    assert critic.net.hparams["n_inputs"] == x.shape[1] + 32
    loaded = load_critic(write_bundle(tmp_path / "hs", critic, metrics, {}), allow_weak=True)
    args = ([r["response"] for r in sub[:10]], [r["language"] for r in sub[:10]], [r["bucket_id"] for r in sub[:10]])
    np.testing.assert_allclose(loaded.score(*args), critic.score(*args), rtol=1e-5)


def test_shipped_configs_load(repo_root):
    from polyalign.config import load_config
    from polyalign.errors import ConfigError
    from polyalign.pairs import PairsConfig

    cfg = load_config(repo_root / "configs" / "critic" / "critic.yaml", CriticConfig)
    assert cfg.method == "learned" and cfg.min_auc == 0.75 and cfg.aux_band_weight == 0
    pairs = load_config(repo_root / "configs" / "pairs" / "pairs.yaml", PairsConfig)
    assert pairs.weights.enabled and pairs.types == ["human_over_model", "human_ranked"]
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(repo_root / "configs" / "critic" / "critic.yaml", CriticConfig, {"hiden": 3})
    with pytest.raises(ConfigError, match="w_min"):
        load_config(repo_root / "configs" / "pairs" / "pairs.yaml", PairsConfig,
                    {"weights": {"w_min": 4.0}})


def test_aux_band_regression_trains(records, human_x, stats):
    sub, x = records[::3], human_x[::3]
    data = assemble_critic_data(sub, x, prediction_rows(sub), linguistic_features)
    critic, metrics = fit_critic_data(data, stats, config(aux_band_weight=0.5, max_epochs=5),
                                      linguistic_feature_names())
    assert critic.net.hparams["aux_outputs"] == 1 and metrics["heldout_auc"] > 0.7


def test_the_critic_reports_what_it_knows_beyond_length(fitted, records, stats):
    _, metrics, _ = fitted
    # model-like text differs from humans in how it writes, so a critic without the length features still tells
    assert metrics["heldout_auc_without_length"] > 0.75
    assert {"heldout_auc_length_only", "distance_length_mismatch_spearman"} <= set(metrics)
    # "model" responses that are other humans' answers of the same bucket, drawn from its longer half: human
    # style, longer; the length-only AUC is high and the length-blind critic much weaker than the full one
    rng = random.Random(2)
    donors = {}
    for r in records:
        donors.setdefault(r["bucket_id"], []).append(r["response"])
    long_half = {b: sorted(texts, key=len)[len(texts) // 2:] for b, texts in donors.items() if len(texts) >= 6}
    rows = [{"id": r["id"], "sample": 0, "bucket_id": r["bucket_id"], "language": r["language"],
             "prediction": rng.choice(long_half[r["bucket_id"]])} for r in records if r["bucket_id"] in long_half]
    data = assemble_critic_data(records, linguistic_features([r["response"] for r in records],
                                                             [r["language"] for r in records]),
                                rows, linguistic_features)
    _, m = fit_critic_data(data, stats, config(), linguistic_feature_names())
    assert m["heldout_auc_length_only"] > 0.6 and m["heldout_auc"] > 0.6  # it tells them apart ...
    assert m["heldout_auc_length_matched"] < 0.6  # ... by length only: at equal length both are human
    assert metrics["heldout_auc_length_matched"] > 0.75  # model-like text: told apart at equal length too


def test_length_matched_auc_against_a_direct_computation():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    lengths = np.array([1, 1, 2, 2, 10, 10, 11, 11], dtype=float)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])  # ranks mostly by length: pooled AUC 0.625
    groups = np.array(["b"] * 8, dtype=object)
    # two strata of length (edges at the median): in each, human/model pairs ranked right 3 of 4 times
    got = length_matched_auc(labels, scores, lengths, groups, n_strata=2)
    assert got == pytest.approx(0.75)
    assert length_matched_auc(np.zeros(4, int), scores[:4], lengths[:4], groups[:4]) is None


def test_the_heldout_split_keeps_each_conversation_on_one_side(records, human_x):
    # several records per conversation: the split is by conversation, not by record
    multi = [{**r, "id": f"{r['id']}#{k}", "conversation_id": r["id"]} for r in records[:200] for k in range(3)]
    x = np.repeat(human_x[:200], 3, axis=0)
    data = assemble_critic_data(multi, x, prediction_rows(multi), linguistic_features)
    fit, stop, held = split_by_group(data.groups, 0.2, 0.1, 0)
    conversation = data.group_ids
    for part in (fit, stop, held):
        assert not set(conversation[part]) & set(conversation[~part])
    assert len(set(data.record_ids[held])) > len(set(conversation[held]))  # records of one conversation together
