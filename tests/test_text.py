"""The bilingual length rule, length bins, whitespace normalization and language detection."""

from __future__ import annotations

import re

import pytest

from polyalign.text import count_length_tokens, detect_language, length_bin, length_tokens, normalize_text

# The reference implementation's regex (spec section 1.2), to show what it drops.
REFERENCE_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\w\s]")


@pytest.mark.parametrize("text, tokens", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    ("I don't know.", ["I", "don't", "know", "."]),
    ("It’s 2024", ["It’s", "2024"]),
    ("3.14", ["3", ".", "14"]),
    ("see https://x.org", ["see", "https", ":", "/", "/", "x", ".", "org"]),
])
def test_english(text, tokens):
    assert length_tokens(text) == tokens


@pytest.mark.parametrize("text, n", [
    ("你好，世界！", 6),  # 4 ideographs + 2 full-width punctuation marks
    ("我喜欢北京。", 6),
    ("２０２４年", 2),  # a run of full-width digits, then one ideograph
])
def test_chinese(text, n):
    assert count_length_tokens(text) == n


def test_mixed_chinese_english():
    assert length_tokens("我用Python写代码, ok?") == ["我", "用", "Python", "写", "代", "码", ",", "ok", "?"]
    assert length_tokens("GPT-4是模型") == ["GPT", "-", "4", "是", "模", "型"]


@pytest.mark.parametrize("text, tokens", [
    ("naïve café", ["naïve", "café"]),
    ("nai\u0308ve", ["nai\u0308ve"]),  # decomposed diaeresis stays inside the word
    ("Straße", ["Straße"]),
    ("Москва — столица", ["Москва", "—", "столица"]),
    ("カタカナ", ["カタカナ"]),
    ("日本語のテキスト", ["日", "本", "語", "のテキスト"]),  # kanji are ideographs, a kana run is one token
    ("안녕하세요 세계", ["안녕하세요", "세계"]),
    ("snake_case", ["snake", "_", "case"]),
    ("l'été", ["l'été"]),
])
def test_other_scripts(text, tokens):
    assert length_tokens(text) == tokens


def test_reference_regex_drops_what_ours_counts():
    for text in ("naïve café", "Straße", "Москва", "カタカナ", "snake_case"):
        ours = count_length_tokens(text)
        theirs = len(REFERENCE_RE.findall(text))
        assert ours >= 1
        assert theirs != ours, text


@pytest.mark.parametrize("text, n", [
    ("❤️", 1),  # heart + variation selector: one symbol
    ("👨\u200d👩\u200d👧", 3),  # the zero-width joiners are not counted
    ("a\u200bb", 2),  # zero-width space separates but does not count
    ("\ufeffhi", 1),  # BOM
    ("", 0),
    ("   \n\t ", 0),
])
def test_invisible_characters(text, n):
    assert count_length_tokens(text) == n


@pytest.mark.parametrize("n, label", [(0, "short"), (40, "short"), (41, "medium"), (120, "medium"),
                                      (121, "long"), (240, "long"), (241, "xlong"), (10_000, "xlong")])
def test_length_bin_default_edges(n, label):
    assert length_bin(n) == label


def test_length_bin_custom_edges_and_bad_labels():
    assert length_bin(5, [10], ["a", "b"]) == "a"
    assert length_bin(11, [10], ["a", "b"]) == "b"
    with pytest.raises(ValueError):
        length_bin(1, [10, 20], ["a", "b"])


def test_normalize_text():
    assert normalize_text("  a \t b  \r\n\r\n\r\n\n c\u3000d\u00a0e  ") == "a b\n\nc d e"
    assert normalize_text("line one\nline two") == "line one\nline two"
    assert normalize_text("\n\n  \n") == ""


@pytest.mark.parametrize("text, lang", [
    ("How are you today?", "en"),
    ("你今天怎么样？", "zh"),
    ("这个 Python 函数返回什么？", "zh"),  # one English word among Chinese characters
    ("I love 北京 very much", "en"),
    ("Привет, как дела?", "en"),  # not Chinese: other scripts count as 'en' (no third language here)
    ("12345 !!!", None),
    ("", None),
])
def test_detect_language(text, lang):
    assert detect_language(text) == lang
