"""Language-aware tokenization for the evaluation metrics.

* English (utility): SQuAD normalization — lowercase, every Unicode punctuation or symbol character removed
  (full-width ones included), the articles a/an/the dropped, whitespace tokens.
* Chinese by character: the bilingual length rule's tokens (`polyalign.text.length_tokens`: one token per Han
  character, one per run of other letters/digits), lowercased, punctuation and symbols dropped.
* Chinese by word: jieba segmentation, lowercased, tokens without a letter or digit dropped.
* Content tokens (diversity, lexical overlap, TF-IDF): the length-rule tokens without punctuation, lowercased —
  words in English, characters in Chinese, with no language switch needed.
"""

from __future__ import annotations

import functools

import regex
import jieba

from ..text import length_tokens

_PUNCT_RE = regex.compile(r"[\p{P}\p{S}]")
_ARTICLES_RE = regex.compile(r"\b(?:a|an|the)\b")
_HAS_WORD_RE = regex.compile(r"[\p{L}\p{N}]")


def squad_normalize(text: str) -> str:
    """SQuAD answer normalization with Unicode punctuation: lowercase, drop punctuation, articles and extra
    whitespace."""
    text = _PUNCT_RE.sub("", text.lower())
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def en_tokens(text: str) -> list[str]:
    """English utility tokens: whitespace tokens of the SQuAD-normalized text."""
    return squad_normalize(text).split()


def content_tokens(text: str) -> list[str]:
    """Length-rule tokens (Han characters, runs of other letters/digits), lowercased, punctuation dropped."""
    return [t for t in length_tokens(text.lower()) if _HAS_WORD_RE.search(t)]


def zh_char_tokens(text: str) -> list[str]:
    """Chinese utility tokens by character (see `content_tokens`)."""
    return content_tokens(text)


@functools.lru_cache(maxsize=1)
def _jieba():
    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba


def zh_word_tokens(text: str) -> list[str]:
    """Chinese utility tokens by jieba word, lowercased, tokens without a letter or digit dropped."""
    return [t for t in _jieba().lcut(text.lower()) if _HAS_WORD_RE.search(t)]


def utility_tokens(text: str, language: str, zh_mode: str = "char") -> list[str]:
    """The tokens used by EM/F1/ROUGE-L: `en_tokens` for English, `zh_char_tokens` or `zh_word_tokens`
    (zh_mode 'char' | 'word') for Chinese."""
    if language == "zh":
        if zh_mode == "char":
            return zh_char_tokens(text)
        if zh_mode == "word":
            return zh_word_tokens(text)
        raise ValueError(f"zh_mode must be 'char' or 'word', got {zh_mode!r}")
    return en_tokens(text)
