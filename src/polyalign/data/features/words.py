"""Word-level feature statistics. The per-response Python work is the length-rule regex and jieba (Chinese);
everything else is numpy over all responses' words at once, with words interned to integer ids."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jieba
import numpy as np

from ...text import LENGTH_TOKEN_RE
from ..lexicons import LEXICONS
from .corpus import Corpus

_ZH_LEXICON_RES: dict[str, re.Pattern[str]] = {
    lexicon.name: re.compile("|".join(map(re.escape, lexicon.zh_substrings))) for lexicon in LEXICONS}


@lru_cache(maxsize=1)
def _jieba() -> tuple[object, re.Pattern[str]]:
    """jieba's tokenizer, initialized once and quietly, and its pattern of the blocks it segments."""
    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba.dt, jieba.re_han_default


def _keep_word(word: str) -> bool:
    return word.isalnum() or (len(word) > 1 and not word.isspace())


def jieba_words(lowered: str, cache: dict[str, list[str]]) -> list[str]:
    """The words of `jieba.lcut(lowered, HMM=False)` without punctuation and whitespace.

    jieba.cut splits a text into blocks of its pattern (Han characters, ASCII letters/digits and +#&._%-),
    segments those with its dictionary, and yields everything else one character (or one whitespace run) at a
    time. We do the same, with segmented blocks cached in `cache` (Chinese chat repeats many short clauses);
    a test checks the result against jieba.lcut.
    """
    tokenizer, block_re = _jieba()
    words: list[str] = []
    for i, block in enumerate(block_re.split(lowered)):
        if not block:
            continue
        if i % 2:  # a block that jieba segments (split() puts the captured blocks at odd positions)
            cut = cache.get(block)
            if cut is None:
                cut = cache[block] = [w for w in tokenizer.lcut(block, HMM=False) if _keep_word(w)]
            words += cut
        else:  # one character at a time: only letters and digits are words
            words += [ch for ch in block if ch.isalnum()]
    return words


class _Sequences:
    """Every response's items (words or tokens) as integer ids (`ids`, unique per distinct item, not dense)
    and the response index of each item (`doc`, non-decreasing)."""

    def __init__(self, ids: np.ndarray, doc: np.ndarray, n_docs: int, vocab: dict[str, int]):
        self.ids, self.doc, self.n_docs, self.vocab = ids, doc, n_docs, vocab
        self.size = len(ids)
        self.span = int(ids.max()) + 1 if self.size else 1
        self.same_doc_next = doc[1:] == doc[:-1]  # item i and i+1 belong to one response

    def per_doc(self, doc_of_each: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(doc_of_each, weights=weights, minlength=self.n_docs).astype(np.float64)

    def lengths(self) -> np.ndarray:
        return self.per_doc(self.doc)

    def type_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(response, count) of every distinct item of every response."""
        keys, counts = np.unique(self.doc * self.span + self.ids, return_counts=True)
        return keys // self.span, counts

    def bigram_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(response, count) of every distinct bigram of every response."""
        pair_keys = (self.ids[:-1] * self.span + self.ids[1:])[self.same_doc_next]
        _, pair_ids = np.unique(pair_keys, return_inverse=True)
        span = len(pair_keys) + 1
        keys, counts = np.unique(self.doc[:-1][self.same_doc_next] * span + pair_ids, return_counts=True)
        return keys // span, counts

    def phrase_positions(self, phrase: Sequence[str]) -> np.ndarray:
        """Start indices of the occurrences of a word sequence inside one response."""
        k = len(phrase)
        if any(w not in self.vocab for w in phrase) or self.size < k:
            return np.zeros(0, dtype=np.int64)
        last = self.size - k + 1
        hit = self.ids[:last] == self.vocab[phrase[0]]
        for j in range(1, k):
            hit &= self.ids[j:last + j] == self.vocab[phrase[j]]
        hit &= self.doc[:last] == self.doc[k - 1:]
        return np.flatnonzero(hit)


def word_level(texts: list[str], languages: list[str], corpus: Corpus) -> dict[str, np.ndarray]:
    """Length-rule token counts and every word-level statistic, per response."""
    split = _split_words(texts, languages)
    words, tokens, length = _sequences(split, languages)
    out = {"tokens": np.asarray(split.n_tokens, dtype=np.float64), **_word_stats(words, tokens, length)}
    for lexicon in LEXICONS:
        lexicon_ids = [words.vocab[w] for w in lexicon.en_words if w in words.vocab]
        hits = [words.doc[np.isin(words.ids, lexicon_ids)]]
        hits += [words.doc[words.phrase_positions(p.split())] for p in lexicon.en_phrases]
        hits.append(corpus.doc[corpus.pattern_ends(_ZH_LEXICON_RES[lexicon.name])])
        out[lexicon.name] = words.per_doc(np.concatenate(hits))
    return out


@dataclass
class _Split:
    """Every response's lower-cased length-rule tokens (concatenated) and, for Chinese ones, its jieba words."""

    tokens: list[str]
    n_tokens: list[int]
    zh_words: list[str]
    n_zh_words: list[int]
    zh_docs: list[int]


def _split_words(texts: list[str], languages: list[str]) -> _Split:
    """Tokens of every response (the length-rule regex) and words of the Chinese ones (jieba, cached)."""
    split = _Split([], [], [], [], [])
    jieba_cache: dict[str, list[str]] = {}
    for i, (text, language) in enumerate(zip(texts, languages)):
        tokens = LENGTH_TOKEN_RE.findall(text)
        if tokens:  # lower-case every token in one C call ("\n" never occurs inside a token)
            split.tokens += "\n".join(tokens).lower().replace("’", "'").split("\n")
        split.n_tokens.append(len(tokens))
        if language == "zh":
            words = jieba_words(text.lower().replace("’", "'"), jieba_cache)
            split.zh_words += words
            split.n_zh_words.append(len(words))
            split.zh_docs.append(i)
    return split


def _sequences(split: _Split, languages: list[str]) -> tuple[_Sequences, _Sequences, np.ndarray]:
    """(words, tokens, character length of every vocabulary item) with one vocabulary for tokens and jieba
    words: an id is the position of the item's first occurrence. English words are the word tokens; Chinese
    words come from jieba."""
    n = len(languages)
    vocab: dict[str, int] = {}
    counter = itertools.count()
    token_ids = np.fromiter(map(vocab.setdefault, split.tokens, counter), np.int64, len(split.tokens))
    zh_ids = np.fromiter(map(vocab.setdefault, split.zh_words, counter), np.int64, len(split.zh_words))
    size = next(counter)
    is_word = np.zeros(size, dtype=bool)
    length = np.zeros(size)
    for item, item_id in vocab.items():
        is_word[item_id] = len(item) > 1 or item.isalnum()
        length[item_id] = len(item)
    token_doc = np.repeat(np.arange(n), split.n_tokens)
    is_english = np.array([lang != "zh" for lang in languages], dtype=bool)
    english = is_english[token_doc] & is_word[token_ids]
    word_doc = np.concatenate([token_doc[english],
                               np.repeat(np.asarray(split.zh_docs, dtype=np.int64), split.n_zh_words)])
    word_ids = np.concatenate([token_ids[english], zh_ids])
    order = np.argsort(word_doc, kind="stable")
    return _Sequences(word_ids[order], word_doc[order], n, vocab), _Sequences(token_ids, token_doc, n, vocab), length


def _word_stats(words: _Sequences, tokens: _Sequences, length: np.ndarray) -> dict[str, np.ndarray]:
    """Word counts and lengths, type and hapax counts, entropy terms, repetition, distinct tokens and bigrams."""
    doc_of_type, type_count = words.type_counts()
    # Sum c*log2(c) in an order that does not depend on the other responses of the batch (ids do), so that a
    # row is bit-identical whatever it is computed with.
    by_count = np.lexsort((type_count, doc_of_type))
    doc_of_bigram, bigram_count = words.bigram_counts()
    max_count = np.zeros(words.n_docs)
    np.maximum.at(max_count, doc_of_type, type_count)
    repeated = bigram_count > 1
    return {
        "words": words.lengths(),
        "word_chars": words.per_doc(words.doc, length[words.ids]),
        "types": words.per_doc(doc_of_type),
        "hapax": words.per_doc(doc_of_type[type_count == 1]),
        "xlogx": words.per_doc(doc_of_type[by_count], (type_count * np.log2(type_count))[by_count]),
        "max_count": max_count,
        "repeated_bigrams": words.per_doc(doc_of_bigram[repeated], bigram_count[repeated]),
        "adjacent": words.per_doc(words.doc[1:][words.same_doc_next & (words.ids[1:] == words.ids[:-1])]),
        "distinct_tokens": tokens.per_doc(tokens.type_counts()[0]),
        "distinct_bigrams": tokens.per_doc(tokens.bigram_counts()[0]),
    }
