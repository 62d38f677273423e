"""Metric sanity on the bundled human data: human vs human is near the ideal, human vs broken text is not."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from eval_helpers import feature_fn

from polyalign.eval import faithfulness, naturalness
from polyalign.eval.featurizers import CharNgramSVD
from polyalign.text import normalize_text


def _responses(path, n: int, seed: int = 0) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            conv = json.loads(line)
            texts += [normalize_text(m["content"]) for m in conv["messages"] if m["role"] == "assistant"]
    texts = [t for t in texts if t]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def _shuffle_chars(text: str, rng: random.Random) -> str:
    chars = list(text)
    rng.shuffle(chars)
    return "".join(chars)


@pytest.fixture(scope="module")
def human_sets(shared_data_dir):
    return {"en": _responses(shared_data_dir / "en_oasst1.jsonl", 400),
            "zh": _responses(shared_data_dir / "zh_oasst1.jsonl", 400)}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_c2st_is_chance_on_two_halves_of_human_data_and_near_one_on_shuffled_text(human_sets, language):
    fn, _ = feature_fn()
    texts = human_sets[language]
    half_a, half_b = texts[:200], texts[200:400]
    fa = fn(half_a, [language] * 200)
    fb = fn(half_b, [language] * 200)
    scaler = naturalness.FeatureScaler.fit(fb)
    same = naturalness.c2st_accuracy(fa, fb, scaler, seed=0)
    rng = random.Random(0)
    shuffled = fn([_shuffle_chars(t, rng) for t in half_a], [language] * 200)
    broken = naturalness.c2st_accuracy(shuffled, fb, scaler, seed=0)
    assert abs(same - 0.5) < 0.08, same
    assert broken > 0.9, broken
    assert naturalness.joint_coverage(fa, fb, scaler, seed=0) == pytest.approx(0.9, abs=0.06)


def test_mauve_with_the_char_ngram_featurizer_works_for_chinese(human_sets):
    pool = human_sets["zh"][:200] + human_sets["en"][:200]
    featurizer = CharNgramSVD(n_components=50).fit(pool)
    zh_a, zh_b = featurizer.transform(human_sets["zh"][200:300]), featurizer.transform(human_sets["zh"][300:400])
    en_b = featurizer.transform(human_sets["en"][300:400])
    assert faithfulness.mauve_score(zh_a, zh_a.copy()) == pytest.approx(1.0, abs=1e-6)
    assert faithfulness.mauve_score(zh_a, zh_b) > 0.8
    assert faithfulness.mauve_score(zh_a, en_b) < 0.1
    # the same pool and seed give the same space
    again = CharNgramSVD(n_components=50).fit(pool).transform(human_sets["zh"][200:210])
    np.testing.assert_allclose(again, zh_a[:10], rtol=1e-5, atol=1e-5)
