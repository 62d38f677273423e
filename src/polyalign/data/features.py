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
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import regex

from ..errors import InputError
from ..text import LENGTH_TOKEN_RE
from .lexicons import LEXICONS

LANGUAGES = ("en", "zh")

FEATURE_CARD: dict[str, str] = {
    # -- length and layout (counts) --
    "length_tokens": "Length in tokens of the bilingual length rule (polyalign.text.count_length_tokens): a Han "
                     "character, a run of other letters/digits, or a punctuation/symbol character is one token.",
    "chars": "Number of non-whitespace characters.",
    "words": "Number of words (EN: letter/digit runs, apostrophes inside; ZH: jieba words, HMM off; "
             "punctuation is not a word).",
    "word_length_mean": "Mean characters per word (0 when there are no words).",
    "sentences": "Number of sentences: pieces between sentence ends that hold at least one length token. Ends: "
                 "each newline; a run of 。！？… (with closing quotes); a run of ASCII . ! ? before a space or a "
                 "Han character (so not 3.5, nor the 1. of a numbered line).",
    "sentence_length_mean": "Mean sentence length in length-rule tokens (0 when there is no sentence).",
    "sentence_length_std": "Population standard deviation of sentence length in length-rule tokens.",
    "sentence_length_max": "Longest sentence in length-rule tokens.",
    "paragraphs": "Number of paragraphs: blocks of non-blank lines separated by at least one blank line.",
    "newlines": "Number of newline characters.",
    "bullet_items": "Lines starting with a bullet (- * + • · ▪ ● ◦ ‣ then a space).",
    "numbered_items": "Lines starting with a number marker (1. 2) 3、 (4) （5） 一、 ① 第一…).",
    "headings": "Markdown heading lines (1-6 # then a space).",
    "code_fence_lines": "Lines starting a code fence (``` or ~~~), opening and closing both count.",
    "inline_code_spans": "Inline code spans `like this` on one line.",
    "urls_emails": "URLs (http(s)://, ftp://, www.) plus e-mail addresses.",
    # -- script mix (shares of non-whitespace characters) --
    "han_share": "Han characters per non-whitespace character.",
    "latin_share": "Latin-script letters per non-whitespace character.",
    "other_letter_share": "Letters of other scripts (kana, Hangul, Cyrillic, ...) per non-whitespace character.",
    "digit_share": "Decimal digits (ASCII and full-width) per non-whitespace character.",
    "uppercase_ratio": "Uppercase Latin letters per Latin letter (0 without Latin letters).",
    # -- punctuation (per word) --
    "punct_rate": "Punctuation and symbol tokens of the length rule per word (apostrophes inside words excluded).",
    "comma_ascii": "ASCII commas per word (a comma between two digits, as in 1,000, is not counted).",
    "comma_wide": "Full-width commas and enumeration commas (， 、 ﹐ ､) per word.",
    "period_ascii": "ASCII full stops per word (not in a run of dots, not between two letters/digits as in 3.5 "
                    "or e.g).",
    "period_wide": "Ideographic / full-width full stops (。 ． ｡) per word.",
    "question_ascii": "ASCII question marks per word.",
    "question_wide": "Full-width question marks (？) per word.",
    "exclamation_ascii": "ASCII exclamation marks per word.",
    "exclamation_wide": "Full-width exclamation marks (！) per word.",
    "colon_semicolon_ascii": "ASCII colons and semicolons per word (a colon between two letters/digits as in "
                             "10:30, or before / as in http://, is not counted).",
    "colon_semicolon_wide": "Full-width colons and semicolons (： ；) per word.",
    "quote_ascii": "ASCII quotes per word: \" and ' (an apostrophe between two letters, as in don't, is not a "
                   "quote).",
    "quote_wide": "Typographic and CJK quotes per word: “ ” ‘ ’ 「 」 『 』 ＂ ＇ « » ‹ › „ ‚ (’ between two "
                  "letters is an apostrophe, not counted).",
    "bracket_ascii": "ASCII brackets ( ) [ ] { } per word (each bracket character counts).",
    "bracket_wide": "Full-width and CJK brackets （ ） 【 】 《 》 〈 〉 〔 〕 ［ ］ ｛ ｝ 〖 〗 per word.",
    "ellipsis_ascii": "Runs of two or more ASCII dots (.. or ...) per word.",
    "ellipsis_wide": "Runs of ellipsis characters (… ⋯; …… is one) per word.",
    "dash_ascii": "Runs of ASCII hyphens used as dashes per word: not between two letters/digits (a hyphen "
                  "as in well-known) and not first on a line (a list bullet or rule).",
    "dash_wide": "Runs of dash characters (— – ― －; —— is one) per word.",
    # -- sentence types (per sentence) --
    "question_sentence_ratio": "Share of sentences whose end contains ? or ？.",
    "exclamation_sentence_ratio": "Share of sentences whose end contains ! or ！.",
    # -- lexical diversity (on lower-cased words) --
    "ttr": "Type-token ratio: distinct words / words (length-dependent; see root_ttr, herdan_c).",
    "root_ttr": "Guiraud's root TTR: distinct words / sqrt(words); less length-dependent than TTR.",
    "herdan_c": "Herdan's C: log(distinct words) / log(words); 0 with fewer than two words.",
    "hapax_ratio": "Words that occur once / distinct words.",
    "word_entropy": "Shannon entropy of the word frequency distribution, in bits.",
    "distinct_1": "Distinct length-rule tokens / length-rule tokens (lower-cased; for Chinese the character "
                  "level, complementing the word-level TTR).",
    "distinct_2": "Distinct length-rule token bigrams / token bigrams (0 with fewer than two tokens).",
    # -- repetition --
    "repeated_bigram_ratio": "Word bigram occurrences whose bigram occurs more than once in the response / "
                             "word bigrams.",
    "max_word_freq_ratio": "Count of the most frequent word / words.",
    "adjacent_repeat_rate": "Words equal to the word before them (\"the the\") per word.",
    "char_runs": "Runs of one non-space, non-digit character repeated 3 or more times (!!!, 哈哈哈, soooo).",
    # -- lexical categories (per word; EN and ZH lexicons in polyalign.data.lexicons) --
    "first_person_rate": "First-person pronouns (I, me, we, our..., 我, 咱, 俺...; 我们 counts once) per word.",
    "second_person_rate": "Second-person pronouns (you, your..., 你, 您...) per word.",
    "discourse_marker_rate": "Discourse markers (well, so, anyway, actually, by the way..., 然后, 所以, 不过, "
                             "其实, 那么, 总之...) per word.",
    "hedge_rate": "Hedges (maybe, perhaps, probably, I think..., 可能, 也许, 大概, 或许, 我觉得, 好像...) per word.",
}

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_CARD)

FEATURE_CARD_PREFACE = """\
# Feature card

PolyAlign describes every response with the bilingual linguistic features below. They are computed by
`polyalign.data.features.feature_matrix(texts, languages)` (one row per response, float64) and summarized
per bucket by `polyalign.data.references` (train split only). This page is generated from `FEATURE_CARD` by
`render_feature_card()`; a test checks that the two agree.

## Units and tokenization

- **Length-rule tokens** (`polyalign.text.count_length_tokens`): a Han character is one token, a run of
  letters/digits of any other script is one token (apostrophes inside stay in it), every other visible
  character is one token. Lengths, sentence lengths and distinct-n use them: one unit for both languages,
  the one the length bins use.
- **Words** depend on the response's language label: English words are the letter/digit runs of the length
  rule (and each Han character, for Chinese quoted inside English); Chinese words come from jieba
  (`jieba.lcut(text, HMM=False)`, the default dictionary, lower-cased text) without punctuation and spaces.
  HMM is off: it only guesses new words in runs of characters the dictionary does not know, and measured on
  the 18,162 bundled Chinese responses it took about 30% more time (1.41 s against 1.09 s). Lexical
  diversity, repetition and every per-word rate use these words, lower-cased.
- **Rates** say their denominator: *per word* rates divide by max(words, 1) so that a response made only of
  punctuation ("?") still has a rate; *shares* divide by the non-whitespace characters; *per sentence*
  ratios divide by the sentences. A ratio whose denominator is 0 is 0, so a feature is never NaN or
  infinite; the empty response is all zeros (a whitespace-only one has only its newline count).
- Features count what the text says; they do not normalize it first (pass `polyalign.text.normalize_text`
  output, as the data build does, for whitespace-normalized counts).

## No configuration constants

Every feature is a function of the response text and its language only: no feature depends on a setting
(a maximum length, a window size, a model), and none is constant by construction. The reference
implementation's features included `lm_max_seq_length`, which made two runs with different settings look
maximally different; here two runs of the same text always agree, and a test checks that no feature is
constant over the bundled human responses. The lexicons are part of the definition (versioned with the
code), not a setting.

## Features
"""


def render_feature_card() -> str:
    """The feature card (docs/features.md): the preface and one table row per feature."""
    rows = ["| # | feature | definition |", "|---|---|---|"]
    for i, name in enumerate(FEATURE_NAMES, start=1):
        definition = FEATURE_CARD[name].replace("|", "\\|")
        rows.append(f"| {i} | `{name}` | {definition} |")
    return FEATURE_CARD_PREFACE + "\n" + "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Character classes: one small integer per Unicode code point, built once from the same regex properties as
# the length rule (polyalign.text.LENGTH_TOKEN_RE), so that token boundaries can be found with numpy.

(C_SPACE, C_NEWLINE, C_HAN, C_LATIN_UPPER, C_LATIN_OTHER, C_OTHER_LETTER, C_DIGIT, C_OTHER_NUMBER, C_MARK,
 C_INVISIBLE, C_PUNCT, C_SEPARATOR) = range(12)
_RUN_START = (C_LATIN_UPPER, C_LATIN_OTHER, C_OTHER_LETTER, C_DIGIT, C_OTHER_NUMBER)  # letters/digits, not Han
_RUN_BODY = (*_RUN_START, C_MARK)  # marks continue a run but do not start one

# Punctuation with its own class (each character its own code, from 16 on); every other punctuation or
# symbol character is C_PUNCT.
_PUNCT_GROUPS: dict[str, str] = {
    "comma_ascii": ",", "comma_wide": "，、﹐､",
    "period_ascii": ".", "period_wide": "。．｡",
    "question_ascii": "?", "question_wide": "？",
    "exclamation_ascii": "!", "exclamation_wide": "！",
    "colon_ascii": ":", "semicolon_ascii": ";", "colon_semicolon_wide": "：；",
    "dquote_ascii": '"', "apostrophe_ascii": "'", "right_single_quote": "’",
    "quote_wide": "“”‘「」『』＂＇«»‹›„‚",
    "bracket_ascii": "()[]{}", "bracket_wide": "（）【】《》〈〉〔〕［］｛｝〖〗",
    "ellipsis_wide": "…⋯", "hyphen_ascii": "-", "dash_wide": "—–―－",
}
_FIRST_PUNCT_CODE = 16
_PUNCT_CODE: dict[str, int] = {}
for _chars in _PUNCT_GROUPS.values():
    for _ch in _chars:
        _PUNCT_CODE[_ch] = _FIRST_PUNCT_CODE + len(_PUNCT_CODE)
N_CODES = _FIRST_PUNCT_CODE + len(_PUNCT_CODE)


def _codes(group: str) -> list[int]:
    return [_PUNCT_CODE[ch] for ch in _PUNCT_GROUPS[group]]


@lru_cache(maxsize=1)
def _class_table() -> np.ndarray:
    """uint8 class of every code point 0..0x10FFFF (about 0.1 s, once per process)."""
    everything = "".join(map(chr, range(0x110000)))
    table = np.full(0x110000, C_PUNCT, dtype=np.uint8)
    # Later assignments win; the order mirrors the length rule (Han before letters, whitespace first of all).
    for cls, pattern in ((C_OTHER_NUMBER, r"\p{N}+"), (C_DIGIT, r"\p{Nd}+"), (C_MARK, r"\p{M}+"),
                         (C_OTHER_LETTER, r"\p{L}+"), (C_LATIN_OTHER, r"[\p{Latin}&&\p{L}]+"),
                         (C_LATIN_UPPER, r"[\p{Latin}&&\p{Lu}]+"), (C_INVISIBLE, r"[\p{Cf}\p{Cc}]+"),
                         (C_HAN, r"\p{Han}+"), (C_SPACE, r"\s+")):
        for match in regex.finditer(pattern, everything, flags=regex.V1):
            table[match.start():match.end()] = cls
    table[ord("\n")] = C_NEWLINE
    for ch, code in _PUNCT_CODE.items():
        if table[ord(ch)] != C_PUNCT:
            raise AssertionError(f"{ch!r} is not punctuation under the length rule")
        table[ord(ch)] = code
    table[0] = C_SEPARATOR  # NUL only ever appears as the separator (texts have NUL replaced)
    return table


def _flag(*codes: int) -> np.ndarray:
    out = np.zeros(N_CODES, dtype=bool)
    out[list(codes)] = True
    return out


_IS_RUN_START = _flag(*_RUN_START)
_IS_RUN_BODY = _flag(*_RUN_BODY)
_IS_PUNCT = _flag(C_PUNCT, *range(_FIRST_PUNCT_CODE, N_CODES))
_IS_SPACE = _flag(C_SPACE, C_NEWLINE)


# ---------------------------------------------------------------------------------------------------------
# Patterns run once over the joined corpus. None crosses the separator "\n\0\n": none matches NUL or runs
# across a newline.

_SEPARATOR = "\n\x00\n"
_CLOSERS = "\"'”’)\\]」』）》】"
_TERMINATOR_RE = regex.compile(
    rf"[.!?。！？…⋯]*[。！？…⋯][.!?。！？…⋯]*[{_CLOSERS}]*"          # any run with a CJK end or ellipsis
    rf"|(?<!^[^\S\n]*\d{{1,3}})"                                   # (not "1." opening a numbered line)
    rf"[.!?]+[{_CLOSERS}]*(?=\s|\p{{Han}})",                     # ASCII ends: before a space or Han
    regex.V1 | regex.M)
# Line patterns start at the newline before the line (every response starts after one: the separator ends
# with it); stdlib `re` finds the newline fast. A match is counted for the response of its last character.
_LINE_PATTERNS: dict[str, re.Pattern[str]] = {
    "bullet_items": re.compile(r"\n[^\S\n]*[-*+•·▪●◦‣][^\S\n]+(?=[^\s\x00])"),
    "numbered_items": re.compile(
        r"\n[^\S\n]*(?:[0-9０-９]{1,3}(?:[.．](?![0-9])|[)）、])|[(（][0-9０-９]{1,3}[)）]"
        r"|[一二三四五六七八九十]{1,3}[、.．]|[①-⑳]|第[一二三四五六七八九十0-9]{1,3}[步点条章节，,、：:])"),
    "headings": re.compile(r"\n[^\S\n]*#{1,6}[^\S\n]+(?=[^\s\x00])"),
    "code_fence_lines": re.compile(r"\n[^\S\n]*(?:```|~~~)"),
}
_INLINE_CODE_RE = re.compile(r"(?<!`)`[^`\n\x00]+`(?!`)")
_URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s\x00]+")
_EMAIL_LOCAL_CHAR_RE = re.compile(r"[\w.+-]")
_EMAIL_DOMAIN_RE = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_ZH_LEXICON_RES: dict[str, re.Pattern[str]] = {
    lexicon.name: re.compile("|".join(map(re.escape, lexicon.zh_substrings))) for lexicon in LEXICONS}


# ---------------------------------------------------------------------------------------------------------
# Word-level statistics. The per-response Python work is the length-rule regex and jieba; everything else is
# numpy over all responses' words at once.

@lru_cache(maxsize=1)
def _jieba() -> tuple[object, re.Pattern[str]]:
    """jieba's tokenizer, initialized once and quietly, and its pattern of the blocks it segments."""
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba.dt, jieba.re_han_default


def _keep_word(word: str) -> bool:
    return word.isalnum() or (len(word) > 1 and not word.isspace())


def _jieba_words(lowered: str, cache: dict[str, list[str]]) -> list[str]:
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


def _word_level(texts: list[str], languages: list[str], corpus: _Corpus) -> dict[str, np.ndarray]:
    """Length-rule token counts and every word-level statistic, per response."""
    n = len(texts)
    all_tokens: list[str] = []
    n_tokens: list[int] = []
    zh_words: list[str] = []
    n_zh_words: list[int] = []
    zh_docs: list[int] = []
    jieba_cache: dict[str, list[str]] = {}
    for i, (text, language) in enumerate(zip(texts, languages)):
        tokens = LENGTH_TOKEN_RE.findall(text)
        if tokens:  # lower-case every token in one C call ("\n" never occurs inside a token)
            all_tokens += "\n".join(tokens).lower().replace("’", "'").split("\n")
        n_tokens.append(len(tokens))
        if language == "zh":
            words = _jieba_words(text.lower().replace("’", "'"), jieba_cache)
            zh_words += words
            n_zh_words.append(len(words))
            zh_docs.append(i)

    # One vocabulary for tokens and jieba words: an id is the position of the item's first occurrence.
    vocab: dict[str, int] = {}
    counter = itertools.count()
    token_ids = np.fromiter(map(vocab.setdefault, all_tokens, counter), np.int64, len(all_tokens))
    zh_ids = np.fromiter(map(vocab.setdefault, zh_words, counter), np.int64, len(zh_words))
    size = next(counter)
    is_word = np.zeros(size, dtype=bool)
    length = np.zeros(size)
    for item, item_id in vocab.items():
        is_word[item_id] = len(item) > 1 or item.isalnum()
        length[item_id] = len(item)
    token_doc = np.repeat(np.arange(n), n_tokens)
    # English words are the word tokens; Chinese words come from jieba.
    is_english = np.array([lang != "zh" for lang in languages], dtype=bool)
    english = is_english[token_doc] & is_word[token_ids]
    word_doc = np.concatenate([token_doc[english], np.repeat(np.asarray(zh_docs, dtype=np.int64), n_zh_words)])
    word_ids = np.concatenate([token_ids[english], zh_ids])
    order = np.argsort(word_doc, kind="stable")
    words = _Sequences(word_ids[order], word_doc[order], n, vocab)
    tokens = _Sequences(token_ids, token_doc, n, vocab)

    doc_of_type, type_count = words.type_counts()
    # Sum c*log2(c) in an order that does not depend on the other responses of the batch (ids do), so that a
    # row is bit-identical whatever it is computed with.
    by_count = np.lexsort((type_count, doc_of_type))
    doc_of_bigram, bigram_count = words.bigram_counts()
    max_count = np.zeros(n)
    np.maximum.at(max_count, doc_of_type, type_count)
    repeated = bigram_count > 1
    out = {
        "tokens": np.asarray(n_tokens, dtype=np.float64),
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
    for lexicon in LEXICONS:
        lexicon_ids = [vocab[w] for w in lexicon.en_words if w in vocab]
        hits = [words.doc[np.isin(words.ids, lexicon_ids)]]
        hits += [words.doc[words.phrase_positions(p.split())] for p in lexicon.en_phrases]
        hits.append(corpus.doc[corpus.pattern_ends(_ZH_LEXICON_RES[lexicon.name])])
        out[lexicon.name] = words.per_doc(np.concatenate(hits))
    return out


# ---------------------------------------------------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _shift_right(a: np.ndarray, fill) -> np.ndarray:
    """a[i-1] at i (fill at 0)."""
    return np.concatenate([np.asarray([fill], dtype=a.dtype), a[:-1]])


def _shift_left(a: np.ndarray, fill) -> np.ndarray:
    """a[i+1] at i (fill at the end)."""
    return np.concatenate([a[1:], np.asarray([fill], dtype=a.dtype)])


class _Corpus:
    """All responses joined by a separator, as code points and character classes, with the response index
    of every position (n for separator positions)."""

    def __init__(self, texts: list[str]):
        self.n = n = len(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        sep = len(_SEPARATOR)
        self.text = _SEPARATOR + _SEPARATOR.join(t.replace("\x00", "\x01") for t in texts) + _SEPARATOR
        self.points = np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        self.cls = _class_table()[self.points]
        self.size = len(self.cls)
        self.starts = sep + np.concatenate([[0], np.cumsum(lengths + sep)[:-1]])
        self.lengths = lengths
        doc = np.repeat(np.stack([np.arange(n), np.full(n, n)], axis=1).ravel(),
                        np.stack([lengths, np.full(n, sep)], axis=1).ravel())
        self.doc = np.concatenate([np.full(sep, n), doc])
        self._class_counts = np.bincount(self.doc * N_CODES + self.cls,
                                         minlength=(n + 1) * N_CODES).reshape(n + 1, N_CODES)[:n]

    def per_doc(self, positions: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Number (or sum of weights) of the given corpus positions in each response."""
        return np.bincount(self.doc[positions], weights=weights, minlength=self.n + 1)[:self.n].astype(np.float64)

    def count(self, *codes: int) -> np.ndarray:
        """Number of characters of the given classes in each response."""
        return self._class_counts[:, list(codes)].sum(axis=1).astype(np.float64)

    def positions(self, *codes: int) -> np.ndarray:
        """Corpus positions of the characters of the given classes."""
        if len(codes) == 1:
            return np.flatnonzero(self.cls == codes[0])
        return np.flatnonzero(np.isin(self.cls, codes))

    def runs(self, *codes: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (exclusive) positions of the maximal runs of characters of the given classes."""
        pos = self.positions(*codes)
        if len(pos) == 0:
            return pos, pos
        breaks = np.flatnonzero(np.diff(pos) > 1)
        return pos[np.concatenate([[0], breaks + 1])], pos[np.concatenate([breaks, [len(pos) - 1]])] + 1

    def pattern_ends(self, pattern: re.Pattern[str] | regex.Pattern[str]) -> np.ndarray:
        """Positions of the last character of every match of a pattern in the corpus."""
        return np.fromiter((m.end() - 1 for m in pattern.finditer(self.text)), dtype=np.int64)


def _token_starts(corpus: _Corpus, exact_counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean array marking the first character of every length-rule token, and the apostrophes that join a
    letter run (part of a word, not punctuation). Vectorized; any response where it disagrees with
    `exact_counts` (the regex count) has its tokens placed by the regex itself, so the result is exact
    (None: no check, for testing the vectorized rule)."""
    cls = corpus.cls
    body = _IS_RUN_BODY[cls]
    start = _IS_RUN_START[cls]
    apostrophe = np.flatnonzero((cls == _PUNCT_CODE["'"]) | (cls == _PUNCT_CODE["’"]))
    next_body = _shift_left(body, False)[apostrophe]
    start_cum = np.cumsum(start)
    joins = np.zeros(0, dtype=np.int64)
    for _ in range(8):  # joining can chain (a'b'c); two rounds settle real text
        # in_run: inside a letter run, i.e. a run character (or joining apostrophe) with a run start at or
        # after the last character that breaks runs.
        cont = body.copy()
        cont[joins] = True
        breaks = np.flatnonzero(~cont)
        segment = np.cumsum(~cont)  # index of the last break at or before each position, plus one
        starts_before_segment = np.concatenate([[0], start_cum[breaks]])
        in_run = cont & (start_cum > starts_before_segment[segment])
        new_joins = apostrophe[in_run[np.maximum(apostrophe - 1, 0)] & next_body]
        if np.array_equal(new_joins, joins):
            break
        joins = new_joins
    is_join = np.zeros(corpus.size, dtype=bool)
    is_join[joins] = True
    token_start = (cls == C_HAN) | (_IS_PUNCT[cls] & ~is_join) | (start & ~_shift_right(in_run, False))
    token_start[corpus.doc == corpus.n] = False
    if exact_counts is None:
        return token_start, is_join
    counts = corpus.per_doc(np.flatnonzero(token_start))
    for i in np.flatnonzero(counts != exact_counts):  # never seen on real text; kept for exactness
        lo = corpus.starts[i]
        token_start[lo:lo + corpus.lengths[i]] = False
        text = corpus.text[lo:lo + corpus.lengths[i]]
        token_start[[lo + m.start() for m in LENGTH_TOKEN_RE.finditer(text)]] = True
    return token_start, is_join


def _sentence_stats(corpus: _Corpus, token_start: np.ndarray) -> dict[str, np.ndarray]:
    """Sentence count, length mean/std/max (length-rule tokens) and question/exclamation sentence counts."""
    n, cls = corpus.n, corpus.cls
    spans = np.array([m.span() for m in _TERMINATOR_RE.finditer(corpus.text)], dtype=np.int64).reshape(-1, 2)
    question_cum = np.cumsum((cls == _PUNCT_CODE["?"]) | (cls == _PUNCT_CODE["？"]))
    exclaim_cum = np.cumsum((cls == _PUNCT_CODE["!"]) | (cls == _PUNCT_CODE["！"]))
    is_question = question_cum[spans[:, 1] - 1] > question_cum[spans[:, 0] - 1]
    is_exclaim = exclaim_cum[spans[:, 1] - 1] > exclaim_cum[spans[:, 0] - 1]
    # Boundaries: after each sentence-ending run, and at each newline. A sentence is what lies between two
    # consecutive boundaries, when it holds a token.
    newlines = corpus.positions(C_NEWLINE)
    no = np.zeros(len(newlines), dtype=bool)
    bound = np.concatenate([spans[:, 1], newlines])
    question = np.concatenate([is_question, no])
    exclaim = np.concatenate([is_exclaim, no])
    order = np.argsort(bound, kind="stable")
    bound, question, exclaim = bound[order], question[order], exclaim[order]
    new = np.r_[True, np.diff(bound) > 0]
    group = np.cumsum(new) - 1
    bound = bound[new]
    question_at = np.zeros(len(bound), dtype=bool)
    exclaim_at = np.zeros(len(bound), dtype=bool)
    question_at[group[question]] = True
    exclaim_at[group[exclaim]] = True
    token_cum = np.concatenate([[0], np.cumsum(token_start)])
    tokens = np.diff(token_cum[bound])
    keep = tokens > 0
    tokens = tokens[keep]
    sent_doc = corpus.doc[bound[1:][keep] - 1]
    tokens = tokens.astype(np.int64)
    count = np.bincount(sent_doc, minlength=n + 1)[:n]
    # Sums of integers are exact; the variance n·Σx² − (Σx)² is computed in integers, so equal sentence
    # lengths give a std of exactly 0.
    total = np.zeros(n + 1, dtype=np.int64)
    total_sq = np.zeros(n + 1, dtype=np.int64)
    np.add.at(total, sent_doc, tokens)
    np.add.at(total_sq, sent_doc, tokens * tokens)
    total, total_sq = total[:n], total_sq[:n]
    mean = _ratio(total, count)
    std = np.sqrt(_ratio(count * total_sq - total * total, count.astype(np.float64) ** 2))
    count = count.astype(np.float64)
    longest = np.zeros(n + 1)
    np.maximum.at(longest, sent_doc, tokens)
    return {
        "sentences": count,
        "sentence_length_mean": mean,
        "sentence_length_std": std,
        "sentence_length_max": longest[:n],
        "question_sentences": np.bincount(sent_doc[question_at[1:][keep]], minlength=n + 1)[:n],
        "exclamation_sentences": np.bincount(sent_doc[exclaim_at[1:][keep]], minlength=n + 1)[:n],
    }


def _layout(corpus: _Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Paragraph counts per response, and a boolean array marking the first visible character of each line."""
    cls = corpus.cls
    visible = np.flatnonzero(~_IS_SPACE[cls])  # the separator's NUL is visible: it marks a response start
    newline_cum = np.cumsum(cls == C_NEWLINE)
    newlines_before = np.diff(newline_cum[visible], prepend=0)
    after_separator = np.concatenate([[True], cls[visible[:-1]] == C_SEPARATOR])
    is_line_first = np.zeros(corpus.size, dtype=bool)
    is_line_first[visible[(newlines_before >= 1) | after_separator]] = True
    paragraph_first = visible[((newlines_before >= 2) | after_separator) & (cls[visible] != C_SEPARATOR)]
    return corpus.per_doc(paragraph_first), is_line_first


def _punctuation(corpus: _Corpus, is_join: np.ndarray, is_line_first: np.ndarray) -> dict[str, np.ndarray]:
    """Counts per kind of punctuation, ASCII and wide (non-ASCII) forms separately."""
    cls, per_doc, count = corpus.cls, corpus.per_doc, corpus.count
    body = _IS_RUN_BODY[cls]
    prev_body, next_body = _shift_right(body, False), _shift_left(body, False)

    def inside_word(pos: np.ndarray) -> np.ndarray:
        return prev_body[pos] & next_body[pos]

    dot_starts, dot_ends = corpus.runs(_PUNCT_CODE["."])
    single_dots = dot_starts[dot_ends - dot_starts == 1]
    hyphen_starts, hyphen_ends = corpus.runs(_PUNCT_CODE["-"])
    hyphen_in_word = prev_body[hyphen_starts] & np.concatenate([body, [False]])[hyphen_ends]
    commas = corpus.positions(_PUNCT_CODE[","])
    colons = corpus.positions(_PUNCT_CODE[":"])
    before_slash = corpus.points[np.minimum(colons + 1, corpus.size - 1)] == ord("/")
    joins = np.flatnonzero(is_join)
    ascii_joins = per_doc(joins[cls[joins] == _PUNCT_CODE["'"]])
    curly_joins = per_doc(joins[cls[joins] == _PUNCT_CODE["’"]])
    return {
        "comma_ascii": per_doc(commas[~inside_word(commas)]),
        "comma_wide": count(*_codes("comma_wide")),
        "period_ascii": per_doc(single_dots[~inside_word(single_dots)]),
        "period_wide": count(*_codes("period_wide")),
        "question_ascii": count(_PUNCT_CODE["?"]),
        "question_wide": count(_PUNCT_CODE["？"]),
        "exclamation_ascii": count(_PUNCT_CODE["!"]),
        "exclamation_wide": count(_PUNCT_CODE["！"]),
        "colon_semicolon_ascii": per_doc(colons[~inside_word(colons) & ~before_slash]) + count(_PUNCT_CODE[";"]),
        "colon_semicolon_wide": count(*_codes("colon_semicolon_wide")),
        "quote_ascii": count(_PUNCT_CODE['"'], _PUNCT_CODE["'"]) - ascii_joins,
        "quote_wide": count(*_codes("quote_wide"), _PUNCT_CODE["’"]) - curly_joins,
        "bracket_ascii": count(*_codes("bracket_ascii")),
        "bracket_wide": count(*_codes("bracket_wide")),
        "ellipsis_ascii": per_doc(dot_starts[dot_ends - dot_starts >= 2]),
        "ellipsis_wide": per_doc(corpus.runs(*_codes("ellipsis_wide"))[0]),
        "dash_ascii": per_doc(hyphen_starts[~hyphen_in_word & ~is_line_first[hyphen_starts]]),
        "dash_wide": per_doc(corpus.runs(*_codes("dash_wide"))[0]),
        "all": count(C_PUNCT, *range(_FIRST_PUNCT_CODE, N_CODES)) - ascii_joins - curly_joins,
    }


def _emails(corpus: _Corpus) -> np.ndarray:
    """E-mail addresses per response: an @ with an address character before it and a dotted domain after."""
    text = corpus.text
    found = [p for p in np.flatnonzero(corpus.points == ord("@")).tolist()
             if _EMAIL_LOCAL_CHAR_RE.match(text, p - 1) and _EMAIL_DOMAIN_RE.match(text, p + 1)]
    return corpus.per_doc(np.asarray(found, dtype=np.int64))


def _char_runs(corpus: _Corpus) -> np.ndarray:
    """Runs of one character repeated 3+ times (whitespace and digits excluded), per response."""
    points = corpus.points
    same = points[1:] == points[:-1]
    third = np.flatnonzero(same[1:] & same[:-1]) + 2  # the 3rd character of three equal ones
    third = third[~np.isin(corpus.cls[third], [C_SPACE, C_NEWLINE, C_DIGIT, C_SEPARATOR])]
    third = third[points[third - 3] != points[third]]  # count each run once (third >= 3: the corpus starts
    return corpus.per_doc(third)                       # with the separator)


# ---------------------------------------------------------------------------------------------------------


def _check_inputs(texts: Sequence[str], languages: Sequence[str]) -> None:
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
    corpus = _Corpus(texts)
    han = corpus.count(C_HAN)
    w = _word_level(texts, languages, corpus)
    token_start, is_join = _token_starts(corpus, w["tokens"])
    paragraphs, is_line_first = _layout(corpus)
    sentence = _sentence_stats(corpus, token_start)
    punct = _punctuation(corpus, is_join, is_line_first)
    count = corpus.count

    words, tokens, types = w["words"], w["tokens"], w["types"]
    per_word = np.maximum(words, 1.0)
    chars = corpus.lengths - count(C_SPACE, C_NEWLINE)
    latin = count(C_LATIN_UPPER, C_LATIN_OTHER)
    columns: dict[str, np.ndarray] = {
        "length_tokens": tokens,
        "chars": chars,
        "words": words,
        "word_length_mean": _ratio(w["word_chars"], words),
        "sentences": sentence["sentences"],
        "sentence_length_mean": sentence["sentence_length_mean"],
        "sentence_length_std": sentence["sentence_length_std"],
        "sentence_length_max": sentence["sentence_length_max"],
        "paragraphs": paragraphs,
        "newlines": count(C_NEWLINE),
        **{name: corpus.per_doc(corpus.pattern_ends(p)) for name, p in _LINE_PATTERNS.items()},
        "inline_code_spans": corpus.per_doc(corpus.pattern_ends(_INLINE_CODE_RE)),
        "urls_emails": corpus.per_doc(corpus.pattern_ends(_URL_RE)) + _emails(corpus),
        "han_share": _ratio(han, chars),
        "latin_share": _ratio(latin, chars),
        "other_letter_share": _ratio(count(C_OTHER_LETTER), chars),
        "digit_share": _ratio(count(C_DIGIT), chars),
        "uppercase_ratio": _ratio(count(C_LATIN_UPPER), latin),
        "punct_rate": punct.pop("all") / per_word,
        **{name: value / per_word for name, value in punct.items()},
        "question_sentence_ratio": _ratio(sentence["question_sentences"], sentence["sentences"]),
        "exclamation_sentence_ratio": _ratio(sentence["exclamation_sentences"], sentence["sentences"]),
        "ttr": _ratio(types, words),
        "root_ttr": _ratio(types, np.sqrt(words)),
        "herdan_c": _ratio(np.log(np.maximum(types, 1.0)), np.log(per_word)),
        "hapax_ratio": _ratio(w["hapax"], types),
        "word_entropy": np.where(words > 0, np.log2(per_word) - _ratio(w["xlogx"], words), 0.0),
        "distinct_1": _ratio(w["distinct_tokens"], tokens),
        "distinct_2": _ratio(w["distinct_bigrams"], tokens - 1.0),
        "repeated_bigram_ratio": _ratio(w["repeated_bigrams"], words - 1.0),
        "max_word_freq_ratio": _ratio(w["max_count"], words),
        "adjacent_repeat_rate": w["adjacent"] / per_word,
        "char_runs": _char_runs(corpus),
        "first_person_rate": w["first_person"] / per_word,
        "second_person_rate": w["second_person"] / per_word,
        "discourse_marker_rate": w["discourse_markers"] / per_word,
        "hedge_rate": w["hedges"] / per_word,
    }
    if list(columns) != list(FEATURE_NAMES):
        raise AssertionError(f"feature columns differ from FEATURE_NAMES: {set(columns) ^ set(FEATURE_NAMES)}")
    out = np.column_stack(list(columns.values()))
    out[~np.isfinite(out)] = 0.0  # by construction there is none; a guard for the contract
    return out
