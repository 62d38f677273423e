"""Bilingual linguistic features: hand-computed values per language, the length rule, no NaN, no constant
feature on the bundled data, and the feature card kept in sync with the code."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import numpy as np
import pytest

from polyalign.data.features import FEATURE_CARD, FEATURE_NAMES, extract_features, feature_matrix, render_feature_card
from polyalign.data.features.characters import token_starts
from polyalign.data.features.corpus import Corpus
from polyalign.data.features.words import jieba_words
from polyalign.data.lexicons import LEXICONS
from polyalign.errors import InputError
from polyalign.text import count_length_tokens, length_tokens


def feats(text: str, language: str) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, extract_features(text, language)))


def check(values: dict[str, float], expected: dict[str, float]) -> None:
    for name, want in expected.items():
        assert values[name] == pytest.approx(want, abs=1e-12), name


@pytest.fixture(scope="module")
def bundled_sample(shared_data_dir):
    """The first 60 assistant turns of every bundled file (720 responses, both languages, every source)."""
    texts, languages = [], []
    for path in sorted(shared_data_dir.glob("*.jsonl")):
        taken = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                for message in record["messages"]:
                    if message["role"] == "assistant" and taken < 60:
                        texts.append(message["content"])
                        languages.append(record["lang"])
                        taken += 1
                if taken >= 60:
                    break
    return texts, languages


def test_names_and_card():
    assert FEATURE_NAMES == tuple(FEATURE_CARD)
    assert 40 <= len(FEATURE_NAMES) <= 60
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(len(definition) > 20 for definition in FEATURE_CARD.values())


def test_feature_card_doc_is_generated(repo_root):
    doc = (repo_root / "docs" / "features.md").read_text(encoding="utf-8")
    assert doc == render_feature_card(), "docs/features.md is stale: write render_feature_card() to it"
    for name in FEATURE_NAMES:
        assert f"`{name}`" in doc


def test_english_hand_computed():
    text = "Well, I think it's fine... Really? Yes!\n\nSee https://example.com or mail a@b.com."
    v = feats(text, "en")
    # tokens: Well , I think it's fine . . . | Really ? | Yes ! | See https : / / example . com or mail a @ b . com .
    words = 16  # well i think it's fine really yes see https example com or mail a b com
    check(v, {
        "length_tokens": 29, "chars": 69, "words": words, "sentences": 4,
        "sentence_length_mean": 29 / 4, "sentence_length_max": 16,
        "sentence_length_std": math.sqrt(((9 - 7.25) ** 2 + 2 * (2 - 7.25) ** 2 + (16 - 7.25) ** 2) / 4),
        "paragraphs": 2, "newlines": 2, "urls_emails": 2,
        "question_sentence_ratio": 1 / 4, "exclamation_sentence_ratio": 1 / 4,
        "comma_ascii": 1 / words, "period_ascii": 1 / words, "ellipsis_ascii": 1 / words,
        "question_ascii": 1 / words, "exclamation_ascii": 1 / words,
        "colon_semicolon_ascii": 0, "quote_ascii": 0, "dash_ascii": 0,  # https: and it's are not punctuation
        "punct_rate": 13 / words, "char_runs": 1,
        "latin_share": 55 / 69, "uppercase_ratio": 5 / 55, "han_share": 0, "digit_share": 0,
        "ttr": 15 / 16, "root_ttr": 15 / 4, "herdan_c": math.log(15) / math.log(16), "hapax_ratio": 14 / 15,
        "word_entropy": 4 - 2 / 16, "max_word_freq_ratio": 2 / 16, "repeated_bigram_ratio": 0,
        "distinct_1": 22 / 29, "distinct_2": 26 / 28,
        "first_person_rate": 1 / words, "second_person_rate": 0, "discourse_marker_rate": 1 / words,
        "hedge_rate": 1 / words,  # "i think"
    })


def test_chinese_hand_computed():
    text = "你好，我觉得这个不错！真的吗？我们走吧……"
    v = feats(text, "zh")
    # jieba: 你好/，/我/觉得/这个/不错/！/真的/吗/？/我们/走/吧/……  -> 10 words, 16 characters in them
    words = 10
    check(v, {
        "length_tokens": 21, "chars": 21, "words": words, "word_length_mean": 1.6,
        "sentences": 3, "sentence_length_mean": 7, "sentence_length_max": 11,
        "sentence_length_std": math.sqrt((16 + 9 + 1) / 3),
        "han_share": 16 / 21, "latin_share": 0,
        "comma_wide": 1 / words, "exclamation_wide": 1 / words, "question_wide": 1 / words,
        "ellipsis_wide": 1 / words,  # …… is one ellipsis
        "comma_ascii": 0, "period_wide": 0, "punct_rate": 5 / words,
        "question_sentence_ratio": 1 / 3, "exclamation_sentence_ratio": 1 / 3,
        "first_person_rate": 2 / words,  # 我(觉得), 我们
        "second_person_rate": 1 / words, "hedge_rate": 1 / words,  # 你(好); 我觉得
        "ttr": 1.0, "distinct_1": 19 / 21, "paragraphs": 1, "newlines": 0,
    })


def test_mixed_text_both_labels():
    text = "我用Python写代码, ok? 好的。"
    zh, en = feats(text, "zh"), feats(text, "en")
    for v in (zh, en):
        check(v, {"length_tokens": 12, "chars": 18, "han_share": 7 / 18, "latin_share": 8 / 18,
                  "uppercase_ratio": 1 / 8, "sentences": 2, "question_sentence_ratio": 1 / 2})
    assert en["words"] == 9  # 我 用 python 写 代 码 ok 好 的: a Han character is a word in English text
    assert zh["words"] < en["words"]  # jieba joins 代码 and 好的


@pytest.mark.parametrize("text", ["", "   ", "\n\n", " \t\n "])
def test_empty_and_whitespace(text):
    v = feats(text, "en")
    assert v["newlines"] == text.count("\n")
    assert all(value == 0 for name, value in v.items() if name != "newlines")
    assert feats(text, "zh") == v


def test_markdown_heavy():
    text = ("# Title\n\nSome `code` here:\n\n```python\nprint('hi')\n```\n\n- one\n- two\n* three\n1. first\n"
            "2) second\n\n## End")
    check(feats(text, "en"), {
        "headings": 2, "code_fence_lines": 2, "inline_code_spans": 1, "bullet_items": 3, "numbered_items": 2,
        "paragraphs": 5, "newlines": 14, "dash_ascii": 0,  # bullets are not dashes
        # 15 words: title some code here python print hi one two three 1 first 2 second end
        "words": 15, "quote_ascii": 2 / 15, "bracket_ascii": 3 / 15,  # ( ) and the ) of "2)" "colon_semicolon_ascii": 1 / 15,
    })


def test_chinese_list_markers():
    assert feats("1、第一步\n（2）第二\n一、总结\n①注意\n2024年是", "zh")["numbered_items"] == 4


def test_urls_and_inline_punctuation():
    v = feats("Visit www.example.org/docs or http://x.cn/a?b=1 now.", "en")
    check(v, {"urls_emails": 2, "sentences": 1, "question_sentence_ratio": 0,
              "period_ascii": 1 / v["words"]})  # only the final stop: dots inside words are not periods


def test_dashes_and_hyphens():
    v = feats("well-known — fine - ok -- yes", "en")
    words = 5  # well known fine ok yes ("well-known" is two letter runs)
    assert v["words"] == words
    check(v, {"dash_ascii": 2 / words, "dash_wide": 1 / words})


def test_repetition_and_diversity():
    v = feats("the the cat sat on the the mat", "en")
    check(v, {"words": 8, "adjacent_repeat_rate": 2 / 8, "repeated_bigram_ratio": 2 / 7,
              "max_word_freq_ratio": 4 / 8, "ttr": 5 / 8, "hapax_ratio": 4 / 5, "word_entropy": 2.0})
    assert feats("哈哈哈哈 soooo good!!! 1000", "en")["char_runs"] == 3  # digits are not runs


def test_pronouns_english_contractions():
    v = feats("I'm sure you're right, and we’ll see.", "en")
    assert v["first_person_rate"] == pytest.approx(2 / v["words"])  # i'm, we'll (curly apostrophe)
    assert v["second_person_rate"] == pytest.approx(1 / v["words"])


TRICKY = [
    "don't l’été 'quoted' rock'n'roll a'b'c ''x'' end'", "naïve nai\u0308ve \u0301lead mark", "❤️ 👍🏽 👨‍👩‍👧",
    "zero\u200bwidth\u200d and \ufeffBOM", "nul\x00inside", "lone \ud800 surrogate", "tab\tand\r\nCRLF",
    "２０２４年 ＡＢＣ", "Москва — столица", "カタカナ 日本語のテキスト 안녕", "3.14 1,000 10:30 e.g. U.S.A.",
    "…… —— ～～ ！！！", "'", "’", "a'", "'a", "\u0301", "a\u0301'b", "中'a", "a'中",
]


def test_length_tokens_equal_count_length_tokens_on_tricky_text():
    matrix = feature_matrix(TRICKY, ["en"] * len(TRICKY))
    assert np.isfinite(matrix).all()
    assert matrix[:, FEATURE_NAMES.index("length_tokens")].tolist() == [count_length_tokens(t) for t in TRICKY]


def _vectorized_counts(texts):
    corpus = Corpus(texts)
    token_start, _ = token_starts(corpus, None)
    return corpus.per_doc(np.flatnonzero(token_start)).tolist()


def test_vectorized_token_rule_matches_regex(bundled_sample):
    """The numpy token boundaries agree with the length-rule regex by themselves (the per-response fallback
    to the regex is for safety only), on real text and on random strings mixing every character class."""
    rng = random.Random(0)
    alphabet = list("ab Z9'’-.,\n\t中文。，！") + ["\u0301", "\u200b", "\ufe0f", "😀", "\x00", "ß", "Ж", "٣", "_"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    texts = TRICKY + fuzz + bundled_sample[0]
    assert _vectorized_counts(texts) == [count_length_tokens(t) for t in texts]


def test_sentences_partition_tokens(bundled_sample):
    texts, languages = bundled_sample
    m = feature_matrix(texts, languages)
    col = {name: m[:, i] for i, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(col["sentence_length_mean"] * col["sentences"], col["length_tokens"])
    assert (col["sentence_length_max"] <= col["length_tokens"]).all()
    assert ((col["sentences"] > 0) == (col["length_tokens"] > 0)).all()


def test_bundled_sample_no_constant_feature_no_nan(bundled_sample):
    texts, languages = bundled_sample
    assert {"en", "zh"} <= set(languages)
    m = feature_matrix(texts, languages)
    assert m.shape == (len(texts), len(FEATURE_NAMES)) and m.dtype == np.float64
    assert np.isfinite(m).all()
    constant = [name for name, column in zip(FEATURE_NAMES, m.T) if np.ptp(column) == 0]
    assert constant == []
    assert m[:, FEATURE_NAMES.index("length_tokens")].tolist() == [count_length_tokens(t) for t in texts]


def test_matrix_equals_stacked_rows(bundled_sample):
    texts, languages = bundled_sample
    idx = list(range(0, len(texts), 9))
    texts = [texts[i] for i in idx] + TRICKY + [texts[0], ""]  # duplicates and empty text too
    languages = [languages[i] for i in idx] + ["zh"] * len(TRICKY) + [languages[0], "en"]
    stacked = np.array([extract_features(t, lang) for t, lang in zip(texts, languages)])
    np.testing.assert_array_equal(feature_matrix(texts, languages), stacked)


def test_deterministic_and_order_free(bundled_sample):
    texts, languages = bundled_sample
    first = feature_matrix(texts, languages)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = feature_matrix([texts[i] for i in order], [languages[i] for i in order])
    np.testing.assert_array_equal(shuffled, first[order])


def test_empty_input_and_bad_input():
    assert feature_matrix([], []).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(InputError, match="unknown language 'fr'"):
        feature_matrix(["bonjour"], ["fr"])
    with pytest.raises(InputError, match="not a string"):
        feature_matrix([None], ["en"])
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        feature_matrix(["a", "b"], ["en"])


# An independent, per-response implementation of the word-level features (Counter and str.count), to check
# the vectorized one against.

def _keep(word: str) -> bool:
    return word.isalnum() or (len(word) > 1 and not word.isspace())


def reference_word_features(text: str, language: str) -> dict[str, float]:
    import jieba

    lowered = text.lower().replace("’", "'")
    tokens = [t.lower().replace("’", "'") for t in length_tokens(text)]
    if language == "zh":
        words = [w for w in jieba.lcut(lowered, HMM=False) if _keep(w)]
    else:
        words = [t for t in tokens if len(t) > 1 or t.isalnum()]
    n = len(words)
    counts = Counter(words)
    bigrams = Counter(zip(words, words[1:]))
    spaced = " " + "  ".join(words) + " "
    out = {
        "words": n,
        "word_length_mean": sum(map(len, words)) / n if n else 0.0,
        "ttr": len(counts) / n if n else 0.0,
        "hapax_ratio": sum(c == 1 for c in counts.values()) / len(counts) if n else 0.0,
        "word_entropy": -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0,
        "max_word_freq_ratio": max(counts.values()) / n if n else 0.0,
        "repeated_bigram_ratio": sum(c for c in bigrams.values() if c > 1) / (n - 1) if n > 1 else 0.0,
        "adjacent_repeat_rate": sum(a == b for a, b in zip(words, words[1:])) / max(n, 1),
        "distinct_1": len(set(tokens)) / len(tokens) if tokens else 0.0,
        "distinct_2": len(set(zip(tokens, tokens[1:]))) / (len(tokens) - 1) if len(tokens) > 1 else 0.0,
    }
    rate_names = {"first_person": "first_person_rate", "second_person": "second_person_rate",
                  "discourse_markers": "discourse_marker_rate", "hedges": "hedge_rate"}
    for lexicon in LEXICONS:
        hits = sum(counts[w] for w in lexicon.en_words)
        hits += sum(spaced.count(" " + "  ".join(p.split()) + " ") for p in lexicon.en_phrases)
        i = 0
        while i < len(text):  # non-overlapping substrings, left to right
            match = next((sub for sub in lexicon.zh_substrings if text.startswith(sub, i)), None)
            hits += match is not None
            i += len(match) if match else 1
        out[rate_names[lexicon.name]] = hits / max(n, 1)
    return out


def test_word_features_match_reference_implementation(bundled_sample):
    texts, languages = bundled_sample
    texts = texts + TRICKY + TRICKY + ["I think, you know, I think so. I mean... by the way", "我们觉得可能不可能", "当然后来"]
    languages = languages + ["en"] * len(TRICKY) + ["zh"] * len(TRICKY) + ["en", "zh", "zh"]
    matrix = feature_matrix(texts, languages)
    for row, text, language in zip(matrix, texts, languages):
        got = dict(zip(FEATURE_NAMES, row))
        for name, want in reference_word_features(text, language).items():
            assert got[name] == pytest.approx(want, rel=1e-12, abs=1e-12), (name, text[:80])


def test_jieba_words_match_jieba_lcut(bundled_sample):
    import jieba

    texts = [t for t, lang in zip(*bundled_sample) if lang == "zh"] + TRICKY
    cache: dict[str, list[str]] = {}
    for text in texts:
        lowered = text.lower()
        assert jieba_words(lowered, cache) == [w for w in jieba.lcut(lowered, HMM=False) if _keep(w)], text


def test_chunked_matrix_equals_one_pass(bundled_sample, monkeypatch):
    import polyalign.data.features as features

    texts, languages = bundled_sample
    whole = feature_matrix(texts, languages)
    monkeypatch.setattr(features, "CHUNK_CHARS", 500)  # many small vectorized passes
    np.testing.assert_array_equal(feature_matrix(texts, languages), whole)
