"""Character-level feature groups, vectorized over the joined corpus: length-rule token starts, sentences,
paragraphs and line starts, punctuation by kind, line patterns (lists, headings, code), URLs and e-mails, and
character runs."""

from __future__ import annotations

import re

import numpy as np
import regex

from ...text import LENGTH_TOKEN_RE
from .corpus import (C_DIGIT, C_HAN, C_NEWLINE, C_PUNCT, C_SEPARATOR, C_SPACE, FIRST_PUNCT_CODE, IS_PUNCT,
                     IS_RUN_BODY, IS_RUN_START, IS_SPACE, N_CODES, PUNCT_CODE, Corpus, codes, ratio, shift_left,
                     shift_right)

# Patterns run once over the joined corpus (see corpus.py: none crosses the separator).
_CLOSERS = "\"'”’)\\]」』）》】"
_TERMINATOR_RE = regex.compile(
    rf"[.!?。！？…⋯]*[。！？…⋯][.!?。！？…⋯]*[{_CLOSERS}]*"          # any run with a CJK end or ellipsis
    rf"|(?<!^[^\S\n]*\d{{1,3}})"                                   # (not "1." opening a numbered line)
    rf"[.!?]+[{_CLOSERS}]*(?=\s|\p{{Han}})",                     # ASCII ends: before a space or Han
    regex.V1 | regex.M)
# Line patterns start at the newline before the line (every response starts after one: the separator ends
# with it); stdlib `re` finds the newline fast. A match is counted for the response of its last character.
LINE_PATTERNS: dict[str, re.Pattern[str]] = {
    "bullet_items": re.compile(r"\n[^\S\n]*[-*+•·▪●◦‣][^\S\n]+(?=[^\s\x00])"),
    "numbered_items": re.compile(
        r"\n[^\S\n]*(?:[0-9０-９]{1,3}(?:[.．](?![0-9])|[)）、])|[(（][0-9０-９]{1,3}[)）]"
        r"|[一二三四五六七八九十]{1,3}[、.．]|[①-⑳]|第[一二三四五六七八九十0-9]{1,3}[步点条章节，,、：:])"),
    "headings": re.compile(r"\n[^\S\n]*#{1,6}[^\S\n]+(?=[^\s\x00])"),
    "code_fence_lines": re.compile(r"\n[^\S\n]*(?:```|~~~)"),
}
INLINE_CODE_RE = re.compile(r"(?<!`)`[^`\n\x00]+`(?!`)")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s\x00]+")
_EMAIL_LOCAL_CHAR_RE = re.compile(r"[\w.+-]")
_EMAIL_DOMAIN_RE = re.compile(r"[\w-]+(?:\.[\w-]+)+")


def token_starts(corpus: Corpus, exact_counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean array marking the first character of every length-rule token, and the apostrophes that join a
    letter run (part of a word, not punctuation). Vectorized; any response where it disagrees with
    `exact_counts` (the regex count) has its tokens placed by the regex itself, so the result is exact
    (None: no check, for testing the vectorized rule)."""
    cls = corpus.cls
    body = IS_RUN_BODY[cls]
    start = IS_RUN_START[cls]
    apostrophe = np.flatnonzero((cls == PUNCT_CODE["'"]) | (cls == PUNCT_CODE["’"]))
    next_body = shift_left(body, False)[apostrophe]
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
    token_start = (cls == C_HAN) | (IS_PUNCT[cls] & ~is_join) | (start & ~shift_right(in_run, False))
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


def sentence_stats(corpus: Corpus, token_start: np.ndarray) -> dict[str, np.ndarray]:
    """Sentence count, length mean/std/max (length-rule tokens) and question/exclamation sentence counts."""
    n, cls = corpus.n, corpus.cls
    spans = np.array([m.span() for m in _TERMINATOR_RE.finditer(corpus.text)], dtype=np.int64).reshape(-1, 2)
    question_cum = np.cumsum((cls == PUNCT_CODE["?"]) | (cls == PUNCT_CODE["？"]))
    exclaim_cum = np.cumsum((cls == PUNCT_CODE["!"]) | (cls == PUNCT_CODE["！"]))
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
    mean = ratio(total, count)
    std = np.sqrt(ratio(count * total_sq - total * total, count.astype(np.float64) ** 2))
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


def layout(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Paragraph counts per response, and a boolean array marking the first visible character of each line."""
    cls = corpus.cls
    visible = np.flatnonzero(~IS_SPACE[cls])  # the separator's NUL is visible: it marks a response start
    newline_cum = np.cumsum(cls == C_NEWLINE)
    newlines_before = np.diff(newline_cum[visible], prepend=0)
    after_separator = np.concatenate([[True], cls[visible[:-1]] == C_SEPARATOR])
    is_line_first = np.zeros(corpus.size, dtype=bool)
    is_line_first[visible[(newlines_before >= 1) | after_separator]] = True
    paragraph_first = visible[((newlines_before >= 2) | after_separator) & (cls[visible] != C_SEPARATOR)]
    return corpus.per_doc(paragraph_first), is_line_first


def punctuation(corpus: Corpus, is_join: np.ndarray, is_line_first: np.ndarray) -> dict[str, np.ndarray]:
    """Counts per kind of punctuation, ASCII and wide (non-ASCII) forms separately."""
    cls, per_doc, count = corpus.cls, corpus.per_doc, corpus.count
    body = IS_RUN_BODY[cls]
    prev_body, next_body = shift_right(body, False), shift_left(body, False)

    def inside_word(pos: np.ndarray) -> np.ndarray:
        return prev_body[pos] & next_body[pos]

    dot_starts, dot_ends = corpus.runs(PUNCT_CODE["."])
    single_dots = dot_starts[dot_ends - dot_starts == 1]
    hyphen_starts, hyphen_ends = corpus.runs(PUNCT_CODE["-"])
    hyphen_in_word = prev_body[hyphen_starts] & np.concatenate([body, [False]])[hyphen_ends]
    commas = corpus.positions(PUNCT_CODE[","])
    colons = corpus.positions(PUNCT_CODE[":"])
    before_slash = corpus.points[np.minimum(colons + 1, corpus.size - 1)] == ord("/")
    joins = np.flatnonzero(is_join)
    ascii_joins = per_doc(joins[cls[joins] == PUNCT_CODE["'"]])
    curly_joins = per_doc(joins[cls[joins] == PUNCT_CODE["’"]])
    return {
        "comma_ascii": per_doc(commas[~inside_word(commas)]),
        "comma_wide": count(*codes("comma_wide")),
        "period_ascii": per_doc(single_dots[~inside_word(single_dots)]),
        "period_wide": count(*codes("period_wide")),
        "question_ascii": count(PUNCT_CODE["?"]),
        "question_wide": count(PUNCT_CODE["？"]),
        "exclamation_ascii": count(PUNCT_CODE["!"]),
        "exclamation_wide": count(PUNCT_CODE["！"]),
        "colon_semicolon_ascii": per_doc(colons[~inside_word(colons) & ~before_slash]) + count(PUNCT_CODE[";"]),
        "colon_semicolon_wide": count(*codes("colon_semicolon_wide")),
        "quote_ascii": count(PUNCT_CODE['"'], PUNCT_CODE["'"]) - ascii_joins,
        "quote_wide": count(*codes("quote_wide"), PUNCT_CODE["’"]) - curly_joins,
        "bracket_ascii": count(*codes("bracket_ascii")),
        "bracket_wide": count(*codes("bracket_wide")),
        "ellipsis_ascii": per_doc(dot_starts[dot_ends - dot_starts >= 2]),
        "ellipsis_wide": per_doc(corpus.runs(*codes("ellipsis_wide"))[0]),
        "dash_ascii": per_doc(hyphen_starts[~hyphen_in_word & ~is_line_first[hyphen_starts]]),
        "dash_wide": per_doc(corpus.runs(*codes("dash_wide"))[0]),
        "all": count(C_PUNCT, *range(FIRST_PUNCT_CODE, N_CODES)) - ascii_joins - curly_joins,
    }


def emails(corpus: Corpus) -> np.ndarray:
    """E-mail addresses per response: an @ with an address character before it and a dotted domain after."""
    text = corpus.text
    found = [p for p in np.flatnonzero(corpus.points == ord("@")).tolist()
             if _EMAIL_LOCAL_CHAR_RE.match(text, p - 1) and _EMAIL_DOMAIN_RE.match(text, p + 1)]
    return corpus.per_doc(np.asarray(found, dtype=np.int64))


def char_runs(corpus: Corpus) -> np.ndarray:
    """Runs of one character repeated 3+ times (whitespace and digits excluded), per response."""
    points = corpus.points
    same = points[1:] == points[:-1]
    third = np.flatnonzero(same[1:] & same[:-1]) + 2  # the 3rd character of three equal ones
    third = third[~np.isin(corpus.cls[third], [C_SPACE, C_NEWLINE, C_DIGIT, C_SEPARATOR])]
    third = third[points[third - 3] != points[third]]  # count each run once (third >= 3: the corpus starts
    return corpus.per_doc(third)                       # with the separator)
