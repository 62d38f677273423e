"""Bilingual (EN/ZH) linguistic features of a response: shape, punctuation, lexical diversity, repetition,
script mix and a few lexical categories. Documented one by one in `FEATURE_CARD` (docs/features.md).

`feature_matrix` is the fast path (the data build, the critic and the evaluation call it on every response);
`extract_features` is one row of it. How it is fast: the responses are joined into one string with a
separator and turned into a numpy array of code points; every character-level feature is then a vectorized
count per response (a lookup table of character classes, shifted arrays for neighbours, `bincount` by
response), and pattern features (list items, URLs, sentence ends) are one regex pass over the joined string,
with match positions mapped back to their response. Per response, only the length-rule regex and (for
Chinese) jieba run in Python; the word statistics (type counts, bigrams, lexicons) are numpy over all words
at once, with words interned to integer ids.

Modules: card.py (the definitions, `FEATURE_CARD`, docs/features.md), corpus.py (the joined corpus and its
character classes), characters.py (token starts, sentences, layout, punctuation, patterns, character runs),
words.py (jieba, word and token statistics, lexicons); this module checks the inputs and assembles the matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InputError
from .card import FEATURE_CARD, FEATURE_CARD_PREFACE, FEATURE_NAMES, render_feature_card
from .characters import (INLINE_CODE_RE, LINE_PATTERNS, URL_RE, char_runs, emails, layout, punctuation,
                         sentence_stats, token_starts)
from .corpus import C_DIGIT, C_HAN, C_LATIN_OTHER, C_LATIN_UPPER, C_NEWLINE, C_OTHER_LETTER, C_SPACE, Corpus, ratio
from .words import word_level

LANGUAGES = ("en", "zh")

__all__ = ["CHUNK_CHARS", "FEATURE_CARD", "FEATURE_CARD_PREFACE", "FEATURE_NAMES", "LANGUAGES", "extract_features",
           "feature_matrix", "render_feature_card"]


def _check_inputs(texts: Sequence[str], languages: Sequence[str]) -> None:
    """Equal lengths, string texts and known languages (an InputError naming the response otherwise)."""
    if len(texts) != len(languages):
        raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
    for i, (text, lang) in enumerate(zip(texts, languages)):
        if not isinstance(text, str):
            raise InputError(f"response #{i} is {type(text).__name__}, not a string", field="response")
        if lang not in LANGUAGES:
            raise InputError(f"response #{i}: unknown language {lang!r} (expected one of "
                             f"{', '.join(LANGUAGES)})", field="language")


CHUNK_CHARS = 1 << 21  # ~2M characters per vectorized pass (a few hundred MB of temporary arrays at most)


def feature_matrix(texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
    """Features of each (text, language) pair: float64 array of shape (len(texts), len(FEATURE_NAMES))."""
    _check_inputs(texts, languages)
    if len(texts) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float64)
    index: dict[tuple[str, str], int] = {}  # identical responses ("Thanks!") are computed once
    rows = [index.setdefault((t, lang), len(index)) for t, lang in zip(texts, languages)]
    unique = list(index)
    # Chunks of about CHUNK_CHARS characters bound the memory of the vectorized passes; rows do not depend
    # on the chunking (a test checks that a row is the same alone or in a batch).
    parts, begin, chars = [], 0, 0
    for end, (text, _) in enumerate(unique, start=1):
        chars += len(text)
        if chars >= CHUNK_CHARS or end == len(unique):
            chunk = unique[begin:end]
            parts.append(_unique_feature_matrix([t for t, _ in chunk], [lang for _, lang in chunk]))
            begin, chars = end, 0
    matrix = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return matrix[np.asarray(rows)] if len(unique) < len(texts) else matrix


def extract_features(text: str, language: str) -> list[float]:
    """Features of one response, in FEATURE_NAMES order (for many responses, call feature_matrix once: each
    call has a fixed cost of about half a millisecond)."""
    return feature_matrix([text], [language])[0].tolist()


def _unique_feature_matrix(texts: list[str], languages: list[str]) -> np.ndarray:
    """The feature rows of distinct (text, language) pairs: one vectorized pass per feature group."""
    corpus = Corpus(texts)
    w = word_level(texts, languages, corpus)
    token_start, is_join = token_starts(corpus, w["tokens"])
    paragraphs, is_line_first = layout(corpus)
    sentence = sentence_stats(corpus, token_start)
    punct = punctuation(corpus, is_join, is_line_first)
    per_word = np.maximum(w["words"], 1.0)
    chars = corpus.lengths - corpus.count(C_SPACE, C_NEWLINE)
    columns: dict[str, np.ndarray] = {
        **_length_and_layout(corpus, w, sentence, paragraphs, chars),
        **_script_mix(corpus, chars),
        **_punctuation_rates(punct, per_word),
        **_sentence_types(sentence),
        **_diversity_and_repetition(corpus, w, per_word),
        **_lexical_categories(w, per_word),
    }
    if list(columns) != list(FEATURE_NAMES):
        raise AssertionError(f"feature columns differ from FEATURE_NAMES: {set(columns) ^ set(FEATURE_NAMES)}")
    out = np.column_stack(list(columns.values()))
    out[~np.isfinite(out)] = 0.0  # by construction there is none; a guard for the contract
    return out


def _length_and_layout(corpus: Corpus, w: dict[str, np.ndarray], sentence: dict[str, np.ndarray],
                       paragraphs: np.ndarray, chars: np.ndarray) -> dict[str, np.ndarray]:
    """Length and layout counts: tokens, characters, words, sentences, paragraphs, lists, code, URLs."""
    words = w["words"]
    return {
        "length_tokens": w["tokens"],
        "chars": chars,
        "words": words,
        "word_length_mean": ratio(w["word_chars"], words),
        "sentences": sentence["sentences"],
        "sentence_length_mean": sentence["sentence_length_mean"],
        "sentence_length_std": sentence["sentence_length_std"],
        "sentence_length_max": sentence["sentence_length_max"],
        "paragraphs": paragraphs,
        "newlines": corpus.count(C_NEWLINE),
        **{name: corpus.per_doc(corpus.pattern_ends(p)) for name, p in LINE_PATTERNS.items()},
        "inline_code_spans": corpus.per_doc(corpus.pattern_ends(INLINE_CODE_RE)),
        "urls_emails": corpus.per_doc(corpus.pattern_ends(URL_RE)) + emails(corpus),
    }


def _script_mix(corpus: Corpus, chars: np.ndarray) -> dict[str, np.ndarray]:
    """Shares of Han, Latin, other letters and digits among the visible characters; uppercase Latin ratio."""
    latin = corpus.count(C_LATIN_UPPER, C_LATIN_OTHER)
    return {
        "han_share": ratio(corpus.count(C_HAN), chars),
        "latin_share": ratio(latin, chars),
        "other_letter_share": ratio(corpus.count(C_OTHER_LETTER), chars),
        "digit_share": ratio(corpus.count(C_DIGIT), chars),
        "uppercase_ratio": ratio(corpus.count(C_LATIN_UPPER), latin),
    }


def _punctuation_rates(punct: dict[str, np.ndarray], per_word: np.ndarray) -> dict[str, np.ndarray]:
    """Punctuation per word: all of it, then each kind (ASCII and wide forms)."""
    kinds = {name: value for name, value in punct.items() if name != "all"}
    return {"punct_rate": punct["all"] / per_word, **{name: value / per_word for name, value in kinds.items()}}


def _sentence_types(sentence: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Shares of question and exclamation sentences."""
    return {
        "question_sentence_ratio": ratio(sentence["question_sentences"], sentence["sentences"]),
        "exclamation_sentence_ratio": ratio(sentence["exclamation_sentences"], sentence["sentences"]),
    }


def _diversity_and_repetition(corpus: Corpus, w: dict[str, np.ndarray], per_word: np.ndarray
                              ) -> dict[str, np.ndarray]:
    """Lexical diversity (TTR and its length-robust forms, entropy, distinct-n) and repetition."""
    words, tokens, types = w["words"], w["tokens"], w["types"]
    return {
        "ttr": ratio(types, words),
        "root_ttr": ratio(types, np.sqrt(words)),
        "herdan_c": ratio(np.log(np.maximum(types, 1.0)), np.log(per_word)),
        "hapax_ratio": ratio(w["hapax"], types),
        "word_entropy": np.where(words > 0, np.log2(per_word) - ratio(w["xlogx"], words), 0.0),
        "distinct_1": ratio(w["distinct_tokens"], tokens),
        "distinct_2": ratio(w["distinct_bigrams"], tokens - 1.0),
        "repeated_bigram_ratio": ratio(w["repeated_bigrams"], words - 1.0),
        "max_word_freq_ratio": ratio(w["max_count"], words),
        "adjacent_repeat_rate": w["adjacent"] / per_word,
        "char_runs": char_runs(corpus),
    }


def _lexical_categories(w: dict[str, np.ndarray], per_word: np.ndarray) -> dict[str, np.ndarray]:
    """Pronoun, discourse-marker and hedge rates per word (polyalign.data.lexicons)."""
    return {name: w[key] / per_word for name, key in (("first_person_rate", "first_person"),
                                                     ("second_person_rate", "second_person"),
                                                     ("discourse_marker_rate", "discourse_markers"),
                                                     ("hedge_rate", "hedges"))}
