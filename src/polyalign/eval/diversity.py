"""Diversity of a set of responses: corpus-level distinct-n and sampled self-BLEU, language-aware."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from .registry import register_metric
from .tokenize import content_tokens

SELF_BLEU_CANDIDATES = 64   # candidates scored per set (sampled, seeded)
SELF_BLEU_REFERENCES = 32   # other texts each candidate is scored against (sampled, seeded)


@register_metric("distinct_1", "diversity", "target human", "Corpus-level distinct unigrams of the bucket's "
                 "responses (content tokens: words in English, characters in Chinese).",
                 "distinct-n = |unique n-grams over all responses| / |n-grams over all responses|, n = 1",
                 score=lambda g, take: distinct_n_texts(g.texts, 1))
@register_metric("distinct_2", "diversity", "target human", "Corpus-level distinct bigrams of the bucket's "
                 "responses (n-grams do not cross responses).", "distinct-n as above, n = 2",
                 score=lambda g, take: distinct_n_texts(g.texts, 2))
def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique n-grams over total n-grams, pooled over all texts (n-grams never cross texts); NaN if none."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else float("nan")


def distinct_n_texts(texts: Sequence[str], n: int) -> float:
    """distinct_n over the content tokens of raw texts."""
    return distinct_n([content_tokens(t) for t in texts], n)


@register_metric("self_bleu", "diversity", "target human", "Self-BLEU-4 of the bucket's responses: each sampled "
                 "candidate scored by sacrebleu sentence BLEU against sampled other responses of the same set "
                 "(tokenize 'zh' for Chinese, '13a' for English); higher = more repetitive.",
                 f"SB = mean_i sentence_bleu(x_i, {{x_j : j ∈ S_i}})  over ≤ {SELF_BLEU_CANDIDATES} seeded "
                 f"candidates i, S_i = ≤ {SELF_BLEU_REFERENCES} seeded others (effective order)",
                 value_range="[0, 100]", score=lambda g, take: self_bleu(g.texts, g.info["language"], seed=g.seed))
def self_bleu(texts: Sequence[str], language: str, *, seed: int = 0, max_candidates: int = SELF_BLEU_CANDIDATES,
              max_references: int = SELF_BLEU_REFERENCES) -> float:
    """Sampled self-BLEU (0–100) of a set of texts; NaN for fewer than two texts.

    Each candidate's score equals sacrebleu's ``BLEU(tokenize=…, effective_order=True).sentence_score(candidate,
    references)``; the n-gram counts of every text are extracted once and reused across candidates."""
    texts = list(texts)
    n = len(texts)
    if n < 2:
        return float("nan")
    bleu = BLEU(tokenize="zh" if language == "zh" else "13a", effective_order=True)
    order = bleu.max_ngram_order
    rng = np.random.default_rng(seed)
    candidates = rng.choice(n, size=min(n, max_candidates), replace=False)
    ngrams: dict[int, tuple] = {}

    def counts(i: int) -> tuple:
        if i not in ngrams:
            ngrams[i] = extract_all_word_ngrams(bleu._preprocess_segment(texts[i]), 1, order)
        return ngrams[i]

    scores = []
    for i in candidates:
        others = np.delete(np.arange(n), i)
        refs = [counts(int(j)) for j in rng.choice(others, size=min(len(others), max_references), replace=False)]
        hyp, hyp_len = counts(int(i))
        correct, total = [0] * order, [0] * order
        for gram, count in hyp.items():
            k = len(gram) - 1
            total[k] += count
            best = max(ref.get(gram, 0) for ref, _ in refs)
            if best:
                correct[k] += min(count, best)
        ref_len = bleu._get_closest_ref_len(hyp_len, [length for _, length in refs])
        scores.append(BLEU.compute_bleu(correct, total, hyp_len, ref_len, smooth_method=bleu.smooth_method,
                                        smooth_value=bleu.smooth_value, effective_order=True,
                                        max_ngram_order=order).score)
    return float(np.mean(scores))


@register_metric("duplicate_rate", "diversity", "target human", "Share of the group's responses that repeat another "
                 "response of the group exactly (after whitespace normalization): a model that answers different "
                 "prompts with the same text.", "dup_g = |{i : ∃ j ≠ i, norm(x_i) = norm(x_j)}| / |X_g|",
                 score=lambda g, take: duplicate_rate(g.texts))
def duplicate_rate(texts: Sequence[str]) -> float:
    """Share of texts that occur more than once (whitespace-normalized); NaN for no texts."""
    if not texts:
        return float("nan")
    counts = Counter(" ".join(t.split()) for t in texts)
    return sum(c for c in counts.values() if c > 1) / len(texts)
