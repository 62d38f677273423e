"""The joined corpus the vectorized features run on: all responses joined by a separator as code points and
character classes (one small integer per Unicode code point, from the same regex properties as the length rule),
with the response index of every position; and the small array helpers the feature groups share."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import regex

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
FIRST_PUNCT_CODE = 16
PUNCT_CODE: dict[str, int] = {}
for _chars in _PUNCT_GROUPS.values():
    for _ch in _chars:
        PUNCT_CODE[_ch] = FIRST_PUNCT_CODE + len(PUNCT_CODE)
N_CODES = FIRST_PUNCT_CODE + len(PUNCT_CODE)


def codes(group: str) -> list[int]:
    """The class codes of a punctuation group of _PUNCT_GROUPS (e.g. "comma_wide")."""
    return [PUNCT_CODE[ch] for ch in _PUNCT_GROUPS[group]]


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
    for ch, code in PUNCT_CODE.items():
        if table[ord(ch)] != C_PUNCT:
            raise AssertionError(f"{ch!r} is not punctuation under the length rule")
        table[ord(ch)] = code
    table[0] = C_SEPARATOR  # NUL only ever appears as the separator (texts have NUL replaced)
    return table


def _flag(*classes: int) -> np.ndarray:
    """A lookup table over class codes: True for the given ones."""
    out = np.zeros(N_CODES, dtype=bool)
    out[list(classes)] = True
    return out


IS_RUN_START = _flag(*_RUN_START)
IS_RUN_BODY = _flag(*_RUN_BODY)
IS_PUNCT = _flag(C_PUNCT, *range(FIRST_PUNCT_CODE, N_CODES))
IS_SPACE = _flag(C_SPACE, C_NEWLINE)

# Every response is preceded and followed by the separator "\n\0\n"; patterns run over the corpus never match
# NUL nor run across a newline, so no match crosses two responses.
SEPARATOR = "\n\x00\n"


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def shift_right(a: np.ndarray, fill) -> np.ndarray:
    """a[i-1] at i (fill at 0)."""
    return np.concatenate([np.asarray([fill], dtype=a.dtype), a[:-1]])


def shift_left(a: np.ndarray, fill) -> np.ndarray:
    """a[i+1] at i (fill at the end)."""
    return np.concatenate([a[1:], np.asarray([fill], dtype=a.dtype)])


class Corpus:
    """All responses joined by a separator, as code points and character classes, with the response index
    of every position (n for separator positions)."""

    def __init__(self, texts: list[str]):
        self.n = n = len(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        sep = len(SEPARATOR)
        self.text = SEPARATOR + SEPARATOR.join(t.replace("\x00", "\x01") for t in texts) + SEPARATOR
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
