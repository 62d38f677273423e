"""Utility: a prediction against its item's gold human response (EM, token F1, ROUGE-L, chrF)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from sacrebleu.metrics import CHRF

from .registry import register_metric
from .tokenize import utility_tokens


def exact_match(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """1.0 when the normalized token sequences are equal, else 0.0."""
    return float(list(pred_tokens) == list(gold_tokens))


def token_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """SQuAD token F1 (bag of tokens). Both empty → 1; exactly one empty → 0."""
    if not pred_tokens or not gold_tokens:
        return float(not pred_tokens and not gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence (bit-parallel algorithm of Allison–Dix / Hyyrö:
    O(|b|) big-integer operations on |a|-bit vectors)."""
    if not a or not b:
        return 0
    masks: dict[Hashable, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """ROUGE-L F1: P = LCS/|pred|, R = LCS/|gold|, F = 2PR/(P+R). Both empty → 1; one empty → 0."""
    if not pred_tokens or not gold_tokens:
        return float(not pred_tokens and not gold_tokens)
    lcs = lcs_length(gold_tokens, pred_tokens)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred_tokens), lcs / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


@register_metric("em", "utility", "higher", "Exact match of the normalized token sequences (EN: SQuAD-"
                 "normalized words; ZH: characters).", "EM = 1[tok(pred) == tok(gold)]; bucket value = mean over "
                 "items", ceiling=False, ideal=1.0, score=lambda g, take: group_utility(g, take, "em"))
@register_metric("f1", "utility", "higher", "Token F1 with language-aware tokens (EN words, ZH characters).",
                 "P = |tok(pred) ∩ tok(gold)| / |tok(pred)|  (multiset intersection)\n"
                 "R = |tok(pred) ∩ tok(gold)| / |tok(gold)|\nF1 = 2PR / (P + R); both empty → 1, one empty → 0",
                 ceiling=False, ideal=1.0, score=lambda g, take: group_utility(g, take, "f1"), resample=True)
@register_metric("f1_zh_char", "utility", "higher", "Chinese token F1 by character (Chinese buckets only).",
                 "F1 as for `f1`, tok = Han characters + runs of other letters/digits, punctuation dropped",
                 ceiling=False, ideal=1.0, languages=("zh",),
                 score=lambda g, take: group_utility(g, take, "f1_zh_char"))
@register_metric("f1_zh_word", "utility", "higher", "Chinese token F1 by jieba word (Chinese buckets only).",
                 "F1 as for `f1`, tok = jieba words containing a letter or digit", ceiling=False, ideal=1.0,
                 languages=("zh",), score=lambda g, take: group_utility(g, take, "f1_zh_word"))
@register_metric("rouge_l", "utility", "higher", "ROUGE-L F1 (longest common subsequence) on the same tokens as "
                 "`f1`.", "P = LCS/|tok(pred)|, R = LCS/|tok(gold)|, ROUGE-L = 2PR/(P+R)", ceiling=False,
                 ideal=1.0, score=lambda g, take: group_utility(g, take, "rouge_l"))
def utility_item_scores(predictions: Sequence[str], golds: Sequence[str],
                        languages: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-item em, f1, rouge_l, f1_zh_char and f1_zh_word (NaN for English items) as float arrays."""
    n = len(predictions)
    if not (len(golds) == n == len(languages)):
        raise ValueError("predictions, golds and languages must have the same length")
    out = {name: np.full(n, np.nan) for name in ("em", "f1", "rouge_l", "f1_zh_char", "f1_zh_word")}
    for i, (pred, gold, lang) in enumerate(zip(predictions, golds, languages)):
        p, g = utility_tokens(pred, lang), utility_tokens(gold, lang)
        out["em"][i] = exact_match(p, g)
        out["f1"][i] = token_f1(p, g)
        out["rouge_l"][i] = rouge_l_f1(p, g)
        if lang == "zh":
            out["f1_zh_char"][i] = out["f1"][i]
            out["f1_zh_word"][i] = token_f1(utility_tokens(pred, lang, "word"), utility_tokens(gold, lang, "word"))
    return out


@register_metric("chrf", "utility", "higher", "Mean sentence chrF of the bucket's predictions against their gold "
                 "responses (sacrebleu defaults: character n-grams up to 6, β = 2, whitespace ignored): a per-item "
                 "score, so that its confidence interval comes from resampling items. It needs no tokenizer, so it "
                 "applies to Chinese as is, but Chinese values run far lower than English ones (long character "
                 "n-grams rarely match): compare it within a language.",
                 "chrF = mean_i sacrebleu.metrics.CHRF().sentence_score(pred_i, [gold_i]).score  (0–100)",
                 ceiling=False, value_range="[0, 100]", ideal=100.0, score=lambda g, take: group_utility(g, take, "chrf"),
                 resample=True)
def chrf_score(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Mean sentence chrF (0–100) of predictions against one gold reference each."""
    scores = chrf_item_scores(predictions, golds)
    return float(scores.mean()) if len(scores) else float("nan")


def chrf_item_scores(predictions: Sequence[str], golds: Sequence[str]) -> np.ndarray:
    """Sentence chrF (0–100) of each prediction against its gold reference."""
    if len(predictions) != len(golds):
        raise ValueError("predictions and golds must have the same length")
    metric = CHRF()
    return np.array([metric.sentence_score(p, [g]).score for p, g in zip(predictions, golds)], dtype=float)


def group_utility(group, take: np.ndarray, name: str) -> float:
    """Mean per-item utility `name` (em, f1, rouge_l, f1_zh_char, f1_zh_word or chrf) of a group's responses at
    positions `take`; NaN for the held-out humans (the gold against itself) and where no item has a value."""
    if not group.side.with_utility or len(take) == 0:
        return float("nan")
    if name == "chrf":
        values = group.cached("chrf", lambda: chrf_item_scores(group.texts, group.golds))
    else:
        values = group.cached("utility", lambda: utility_item_scores(group.texts, group.golds,
                                                                   group.languages))[name]
    picked = values[take]
    picked = picked[np.isfinite(picked)]
    return float(picked.mean()) if len(picked) else float("nan")
