"""Bilingual text basics: whitespace normalization, the length rule, length bins and language detection.

The length rule (one rule for every language, see docs/data.md):
  * each CJK ideograph is one token;
  * a run of letters, marks or digits of any other script is one token (``naïve``, ``Straße``, ``Москва``,
    ``2024``, ``カタカナ`` are one token each), and an apostrophe between letters stays inside the run
    (``don't`` is one token);
  * every other visible character (punctuation, symbols, ``_``, emoji) is one token;
  * whitespace is not counted, nor are invisible format/control characters (zero-width space and joiner, BOM)
    or a combining mark / variation selector that follows no letter (``❤️`` is one token, not two).
"""

from __future__ import annotations

from collections.abc import Sequence

import regex

HAN = r"\p{Han}"
# Letters/marks/digits that are not Han; apostrophes join letter runs ("don't", "l'été").
# A run starts with a letter or digit; marks (accents, variation selectors) only continue it.
_WORD_NOT_HAN = r"[[\p{L}\p{M}\p{N}]--\p{Han}]"
_WORD_START = r"[[\p{L}\p{N}]--\p{Han}]"
LENGTH_TOKEN_RE = regex.compile(
    rf"{HAN}|{_WORD_START}{_WORD_NOT_HAN}*(?:['’]{_WORD_NOT_HAN}+)*|[^\p{{L}}\p{{M}}\p{{N}}\p{{Cf}}\p{{Cc}}\s]",
    regex.V1)
_HAN_RE = regex.compile(HAN)
_LETTER_RUN_RE = regex.compile(rf"{_WORD_START}{_WORD_NOT_HAN}*", regex.V1)
_LATIN_RE = regex.compile(r"\p{Latin}")
_INLINE_WS_RE = regex.compile(r"[^\S\n]+")
_BLANK_LINES_RE = regex.compile(r"\n{3,}")

DEFAULT_LENGTH_EDGES: tuple[int, ...] = (40, 120, 240)
DEFAULT_LENGTH_LABELS: tuple[str, ...] = ("short", "medium", "long", "xlong")


def normalize_text(text: str) -> str:
    """Unify newlines, collapse spaces inside lines, keep at most one blank line between paragraphs, strip."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\u3000", " ")
    lines = [_INLINE_WS_RE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


def length_tokens(text: str) -> list[str]:
    """The tokens of the bilingual length rule (see the module docstring)."""
    return LENGTH_TOKEN_RE.findall(text)


def count_length_tokens(text: str) -> int:
    """Length of a text under the bilingual length rule."""
    return len(LENGTH_TOKEN_RE.findall(text))


def length_bin(n_tokens: int, edges: Sequence[int] = DEFAULT_LENGTH_EDGES,
               labels: Sequence[str] = DEFAULT_LENGTH_LABELS) -> str:
    """Bin label for a length: the first bin whose upper edge (inclusive) is >= n_tokens."""
    if len(labels) != len(edges) + 1:
        raise ValueError(f"need {len(edges) + 1} labels for {len(edges)} edges, got {len(labels)}")
    for edge, label in zip(edges, labels):
        if n_tokens <= edge:
            return label
    return labels[-1]


def script_counts(text: str) -> dict[str, int]:
    """Counts of Han characters, non-Han letter/digit runs, and Latin letters."""
    return {"han": len(_HAN_RE.findall(text)), "other_runs": len(_LETTER_RUN_RE.findall(text)),
            "latin": len(_LATIN_RE.findall(text))}


def detect_language(text: str, zh_threshold: float = 0.5) -> str | None:
    """'zh' when Han characters make up at least `zh_threshold` of the word tokens, 'en' when other letters
    dominate, None for text with neither (digits and punctuation only).

    Tokens are counted with the length rule (a Han character vs a run of other letters), so an English name
    inside Chinese text weighs one word, not its number of letters.
    """
    han = len(_HAN_RE.findall(text))
    other = sum(1 for run in _LETTER_RUN_RE.findall(text) if not run.isdigit())
    if han + other == 0:
        return None
    return "zh" if han / (han + other) >= zh_threshold else "en"
