"""Evaluation metrics against hand-computed values and independent library computations."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy.stats import ks_2samp, wasserstein_distance

from polyalign.eval import diversity, faithfulness, multiturn, naturalness, tradeoff, utility
from polyalign.eval.tokenize import (
    content_tokens,
    en_tokens,
    squad_normalize,
    utility_tokens,
    zh_char_tokens,
    zh_word_tokens,
)

# ---------------------------------------------------------------- tokenization and utility

def test_squad_normalization_strips_unicode_punctuation_and_articles():
    assert squad_normalize("The Cat, sat (on) a mat！ “Yes”…") == "cat sat on mat yes"
    assert en_tokens("An apple — the best.") == ["apple", "best"]


def test_chinese_tokens_by_character_and_by_word():
    assert zh_char_tokens("我爱北京，天安门！OK 2024") == ["我", "爱", "北", "京", "天", "安", "门", "ok", "2024"]
    words = zh_word_tokens("我爱北京天安门。")
    assert "北京" in words and "。" not in words
    assert utility_tokens("我爱北京", "zh", "word") == zh_word_tokens("我爱北京")


def test_chinese_f1_differs_from_exact_match_on_partial_overlap():
    pred, gold = "北京是中国的首都", "中国的首都是北京市"
    scores = utility.utility_item_scores([pred], [gold], ["zh"])
    assert scores["em"][0] == 0.0
    # 8 predicted characters, 9 gold, all 8 shared as a multiset: P = 1, R = 8/9
    assert scores["f1"][0] == pytest.approx(2 * 1 * (8 / 9) / (1 + 8 / 9))
    assert 0 < scores["f1_zh_word"][0] < 1
    assert scores["f1"][0] != scores["em"][0]
    # whitespace tokenization (the reference's bug) would see one token each: F1 == EM == 0
    assert utility.token_f1(pred.split(), gold.split()) == 0.0


def test_english_f1_and_em_hand_computed():
    scores = utility.utility_item_scores(["the cat sat", "A dog."], ["cat sat down", "a dog"], ["en", "en"])
    assert scores["f1"][0] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert scores["em"].tolist() == [0.0, 1.0]
    assert np.isnan(scores["f1_zh_char"]).all()


def test_f1_edge_cases():
    assert utility.token_f1([], []) == 1.0
    assert utility.token_f1(["a"], []) == 0.0
    assert utility.rouge_l_f1([], ["a"]) == 0.0


def _lcs_dp(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_dynamic_programming():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        assert utility.lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_l_hand_computed():
    # LCS("a b c d", "a c e d") = 3 (a c d): P = R = 3/4
    assert utility.rouge_l_f1("a c e d".split(), "a b c d".split()) == pytest.approx(0.75)


def test_chrf_equals_sacrebleu():
    from sacrebleu.metrics import CHRF

    preds = ["the cat sat on the mat", "北京是中国的首都", "hello"]
    golds = ["a cat sat on a mat", "中国的首都是北京", "hello there"]
    expected = sum(CHRF().sentence_score(p, [g]).score for p, g in zip(preds, golds)) / len(preds)
    assert utility.chrf_score(preds, golds) == pytest.approx(expected)
    assert 0 < utility.chrf_score(preds, golds) < 100


# ---------------------------------------------------------------- diversity

def test_distinct_n_is_corpus_level_and_language_aware():
    assert diversity.distinct_n([["a", "b", "a"], ["a", "b"]], 1) == pytest.approx(2 / 5)
    assert diversity.distinct_n([["a", "b", "a"], ["a", "b"]], 2) == pytest.approx(2 / 3)  # ab, ba | ab
    # Chinese is counted by character, not as one whitespace "token" per response
    assert diversity.distinct_n_texts(["你好你好", "你好"], 1) == pytest.approx(2 / 6)
    assert content_tokens("Hello, World!") == ["hello", "world"]


def test_self_bleu_equals_sacrebleu_sentence_bleu_with_the_same_samples():
    from sacrebleu.metrics import BLEU

    rng_texts = random.Random(1)
    words = "we went to the park and then the shop because it was sunny today".split()
    texts = [" ".join(rng_texts.choice(words) for _ in range(rng_texts.randint(4, 15))) for _ in range(40)]
    got = diversity.self_bleu(texts, "en", seed=7, max_candidates=10, max_references=5)
    rng = np.random.default_rng(7)
    candidates = rng.choice(len(texts), size=10, replace=False)
    bleu = BLEU(tokenize="13a", effective_order=True)
    expected = []
    for i in candidates:
        refs = rng.choice(np.delete(np.arange(len(texts)), i), size=5, replace=False)
        expected.append(bleu.sentence_score(texts[i], [texts[j] for j in refs]).score)
    assert got == pytest.approx(float(np.mean(expected)))
    assert diversity.self_bleu(["同一句话。"] * 5, "zh") == pytest.approx(100.0)


# ---------------------------------------------------------------- naturalness

def test_column_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(2, size=(37, 6))
    r = rng.normal(size=(120, 6)) * 3 + 1
    x[:5, 2] = 0.0  # ties
    r[:, 5] = 4.0  # a constant column
    got = naturalness.column_wasserstein(x, r)
    expected = [wasserstein_distance(x[:, f], r[:, f]) for f in range(6)]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert naturalness.column_wasserstein(x[:, 0], r[:, 0]) == pytest.approx(expected[0])


def test_robust_scale_is_iqr_over_1349_with_std_fallback():
    values = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [100.0, 5.0]])
    scale = naturalness.robust_scale(values)
    assert scale[0] == pytest.approx((4 - 2) / 1.349)
    assert scale[1] == pytest.approx(np.std(values[:, 1]))


def test_feature_gap_is_not_dominated_by_one_degenerate_feature():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(300, 20))
    x = rng.normal(size=(50, 20))
    scaler = naturalness.FeatureScaler.fit(r)
    clean, _ = naturalness.feature_gap(x, r, scaler)
    x_bad = x.copy()
    x_bad[:, 0] = 1e6  # a configuration-constant feature that differs wildly (the reference's failure)
    bad, per_feature = naturalness.feature_gap(x_bad, r, scaler)
    assert per_feature[0] > 1e5
    assert bad < clean + 0.1  # trimmed away
    x_shift = x + 2.0  # a real shift on every feature is seen
    assert naturalness.feature_gap(x_shift, r, scaler)[0] > 1.5


def test_zero_spread_feature_uses_fallback_scale_or_is_left_out():
    r = np.column_stack([np.random.default_rng(2).normal(size=100), np.zeros(100)])
    scaler = naturalness.FeatureScaler.fit(r, fallback_scale=np.array([1.0, 0.5]))
    assert scaler.used.all() and scaler.scale[1] == 0.5
    scaler = naturalness.FeatureScaler.fit(r)
    assert scaler.used.tolist() == [True, False]


def test_coverage_is_about_nominal_for_same_distribution_and_low_for_shifted():
    rng = np.random.default_rng(3)
    r = rng.lognormal(size=(2000, 8))
    x = rng.lognormal(size=(2000, 8))
    scaler = naturalness.FeatureScaler.fit(r)
    assert naturalness.feature_inside_rate(x, r) == pytest.approx(0.9, abs=0.02)
    assert naturalness.joint_coverage(x, r, scaler, seed=0) == pytest.approx(0.9, abs=0.03)
    shifted = x * 10
    assert naturalness.joint_coverage(shifted, r, scaler, seed=0) < 0.1
    assert naturalness.feature_inside_rate(shifted, r) < 0.4


def test_c2st_chance_on_same_distribution_and_perfect_on_separated():
    rng = np.random.default_rng(4)
    r = rng.normal(size=(300, 10))
    scaler = naturalness.FeatureScaler.fit(r)
    same = naturalness.c2st_accuracy(rng.normal(size=(100, 10)), r, scaler, seed=0)
    apart = naturalness.c2st_accuracy(rng.normal(size=(100, 10)) + 3, r, scaler, seed=0)
    assert abs(same - 0.5) < 0.1
    assert apart > 0.97
    assert np.isnan(naturalness.c2st_accuracy(r[:5], r, scaler))


# ---------------------------------------------------------------- faithfulness

def test_mauve_identical_is_one_and_unrelated_is_near_zero():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(200, 16)).astype(np.float32)
    assert faithfulness.mauve_score(p, p.copy(), seed=0) == pytest.approx(1.0, abs=1e-6)
    q = (rng.normal(size=(200, 16)) + 50).astype(np.float32)
    assert faithfulness.mauve_score(p, q, seed=0) < 0.05


def test_mauve_is_deterministic():
    rng = np.random.default_rng(6)
    p, q = rng.normal(size=(150, 8)), rng.normal(size=(150, 8)) + 0.3
    assert faithfulness.mauve_score(p, q, seed=1) == faithfulness.mauve_score(p, q, seed=1)


def test_length_distances_match_scipy():
    x, r = [3, 5, 8, 13, 21], [2, 4, 4, 6, 9, 11, 40]
    got = faithfulness.length_distances(x, r)
    assert got["length_w1"] == pytest.approx(wasserstein_distance(x, r))
    assert got["length_ks"] == pytest.approx(ks_2samp(x, r).statistic)
    q25, q75 = np.percentile(r, [25, 75])
    assert got["length_w1_norm"] == pytest.approx(got["length_w1"] / ((q75 - q25) / 1.349))


def test_bucket_match_admits_every_bin_of_a_merged_bucket():
    assert faithfulness.bucket_bins("en|single|qa|long+xlong") == ("long", "xlong")
    assert faithfulness.bucket_bins("en|single|qa", fallback=["short"]) == ("short",)
    lengths = [10, 150, 300, 500]  # short, long, xlong, xlong
    assert faithfulness.bucket_match_rate(lengths, ("long", "xlong")) == pytest.approx(0.75)
    assert faithfulness.bucket_match_rate(lengths, ("short",), edges=(40, 120, 240)) == pytest.approx(0.25)


# ---------------------------------------------------------------- multi-turn

def test_dialogue_acts_and_transitions():
    assert multiturn.dialogue_act("How are you?") == "question"
    assert multiturn.dialogue_act("你去过北京吗") == "question"
    assert multiturn.dialogue_act("我很好。") == "statement"
    codes = np.array([0, 1, 1, 3])
    np.testing.assert_allclose(multiturn.transition_distribution(codes), [0.25, 0.5, 0, 0.25])


def test_tdm_is_one_for_identical_coupling_and_lower_when_it_differs():
    prompts = ["Do you like tea?", "I went hiking today.", "What's your favourite film?", "我们明天去哪里？"] * 10
    responses = ["Yes, I like tea a lot.", "Nice, where did you go hiking?", "Probably Alien.", "去公园吧。"] * 10
    histories = [[]] * len(prompts)
    space = multiturn.CouplingSpace().fit(prompts, responses)
    stats = multiturn.coupling_stats(prompts, histories, responses, space)
    assert stats["overlap_prompt"][0] == pytest.approx(2 / 6)  # "like", "tea" of {yes, i, like, tea, a, lot}
    same = multiturn.tdm_similarity(stats, stats)
    assert same["tdm"] == pytest.approx(1.0)
    echo = multiturn.coupling_stats(prompts, histories, prompts, space)
    assert multiturn.tdm_similarity(echo, stats)["tdm"] < 0.8


# ---------------------------------------------------------------- trade-off

def test_pareto_frontier_and_hypervolume_against_brute_force():
    rng = np.random.default_rng(7)
    points = rng.uniform(size=(25, 2)).tolist()
    front = tradeoff.pareto_frontier(points)
    for i, p in enumerate(points):
        dominated = any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)
        assert (i in front) == (not dominated)
    grid = np.linspace(0, 1, 801)[:-1] + 1 / 1600
    gu, gv = np.meshgrid(grid, grid)
    covered = np.zeros_like(gu, dtype=bool)
    for u, v in points:
        covered |= (gu <= u) & (gv <= v)
    assert tradeoff.hypervolume(points) == pytest.approx(covered.mean(), abs=5e-3)
    assert tradeoff.hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    assert tradeoff.hypervolume([(0.2, 0.9), (0.6, 0.5), (0.4, 0.4)]) == pytest.approx(0.2 * 0.9 + 0.4 * 0.5)


def test_naturalness_and_aggregate_are_bounded_and_robust_to_one_outlier_bucket():
    assert tradeoff.bucket_naturalness(0.5) == 1.0
    assert tradeoff.bucket_naturalness(1.0) == 0.0
    assert tradeoff.bucket_naturalness(0.25) == 0.5
    good = {name: {f"b{i}": 0.8 for i in range(9)} for name in tradeoff.AGGREGATE_COMPONENTS}
    outlier = {name: dict(values) for name, values in good.items()}
    outlier["c_mauve"]["b0"] = 0.0
    assert tradeoff.aggregate_score(good) == pytest.approx(0.8)
    assert tradeoff.aggregate_score(outlier) == pytest.approx(0.8)


def test_duplicate_rate_counts_every_copy_of_a_repeated_response():
    from polyalign.eval.diversity import duplicate_rate

    assert duplicate_rate(["a b", "a  b", "c", "d", "c"]) == pytest.approx(4 / 5)
    assert duplicate_rate(["x", "y"]) == 0.0
    assert duplicate_rate([]) != duplicate_rate([])  # NaN
