"""English and Chinese word lists for the lexical features (pronouns, discourse markers, hedges).

Every category holds both languages and is matched on every response whatever its language label, so a
Chinese response that quotes "I think" counts one hedge, as does an English one that writes 我觉得:

* English entries are matched on the response's words (lower-cased, ’ read as ', so ``I’m`` is ``i'm``; for
  a Chinese response the words are jieba's): one-word entries against single words, multi-word entries
  (``i think``) against consecutive words;
* Chinese entries are matched as substrings of the text (Chinese has no spaces), left to right without
  overlap (当然后 counts 当然, not also 然后). No Chinese entry contains another entry of its category, so
  each occurrence counts once: 我们 counts as one 我.

They are surface counts: ``so`` as an intensifier or 可能 inside 不可能 count too. The lists are small on
purpose: common items, frequent in both human and model text, so the rates are stable estimates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lexicon:
    """One category's entries: English words, English phrases (space-separated words), Chinese substrings."""

    name: str
    en_words: frozenset[str]
    en_phrases: tuple[str, ...]
    zh_substrings: tuple[str, ...]

    def __post_init__(self) -> None:
        for sub in self.zh_substrings:
            others = [o for o in self.zh_substrings if o != sub and sub in o]
            if others:
                raise ValueError(f"lexicon {self.name}: {sub!r} is inside {others} and would count twice")
        for phrase in self.en_phrases:
            if len(phrase.split()) < 2 or phrase != " ".join(phrase.split()):
                raise ValueError(f"lexicon {self.name}: phrase {phrase!r} needs 2+ single-spaced words")


FIRST_PERSON = Lexicon(
    "first_person",
    en_words=frozenset({"i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves",
                        "i'm", "i've", "i'd", "i'll", "we're", "we've", "we'd", "we'll"}),
    en_phrases=(),
    zh_substrings=("我", "咱", "俺", "本人"))

SECOND_PERSON = Lexicon(
    "second_person",
    en_words=frozenset({"you", "your", "yours", "yourself", "yourselves", "you're", "you've", "you'd",
                        "you'll", "y'all", "ya", "u", "ur"}),
    en_phrases=(),
    zh_substrings=("你", "您", "妳"))

DISCOURSE_MARKERS = Lexicon(
    "discourse_markers",
    en_words=frozenset({"well", "so", "anyway", "anyways", "actually", "basically", "oh", "okay", "ok", "now",
                        "however", "besides", "plus", "firstly", "secondly", "finally", "therefore", "thus",
                        "hence", "meanwhile", "honestly"}),
    en_phrases=("in fact", "by the way", "you know", "i mean", "of course", "after all", "on the other hand",
                "in other words", "to be honest"),
    zh_substrings=("然后", "所以", "不过", "其实", "那么", "总之", "因此", "但是", "而且", "另外", "首先",
                   "其次", "最后", "此外", "总的来说", "换句话说", "当然", "也就是说", "对了", "反正",
                   "毕竟", "于是", "接着", "况且", "说实话"))

HEDGES = Lexicon(
    "hedges",
    en_words=frozenset({"maybe", "perhaps", "probably", "possibly", "likely", "might", "seem", "seems",
                        "seemed", "apparently", "presumably", "somewhat", "arguably", "roughly",
                        "approximately"}),
    en_phrases=("sort of", "kind of", "i think", "i guess", "i believe", "i suppose", "i feel",
                "in my opinion", "not sure"),
    zh_substrings=("可能", "也许", "大概", "或许", "我觉得", "好像", "似乎", "应该", "估计", "恐怕", "大约",
                   "差不多", "不一定", "我认为", "未必", "说不定", "貌似"))

LEXICONS: tuple[Lexicon, ...] = (FIRST_PERSON, SECOND_PERSON, DISCOURSE_MARKERS, HEDGES)
