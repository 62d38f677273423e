"""The feature card: every feature's name and definition (`FEATURE_CARD`, in matrix column order) and
docs/features.md rendered from it."""

from __future__ import annotations

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
