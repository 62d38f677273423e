"""Multi-turn dynamics: how a response couples to the turn it answers, compared with the bucket's humans.

Per item (previous user turn p, history h, response y):
* log length ratio  log((1 + len(y)) / (1 + len(p)))  (bilingual length rule);
* lexical accommodation: share of y's word types found in p (overlap_prompt) and in p + the last 6 turns of h
  (overlap_history),
  and the TF-IDF cosine of p and y (content tokens: words in English, characters in Chinese);
* semantic coupling: cosine of p and y in a TF-IDF + TruncatedSVD space fit on the pool's prompts AND responses
  (the reference fit it on questions only);
* transition: the dialogue-act pair (act(p), act(y)), act ∈ {question, statement}.
Per bucket, each continuous quantity's model distribution is compared with the pool's by 1/(1 + W1/s) (s the
pool's robust scale), the transition distribution by 1 − total variation; TDM is the mean of the four parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import regex
from scipy.stats import wasserstein_distance
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from ..text import count_length_tokens
from .naturalness import robust_scale
from .registry import register_metric
from .tokenize import content_tokens

TRANSITIONS = ("question→question", "question→statement", "statement→question", "statement→statement")
CONTINUOUS = ("log_length_ratio", "overlap_prompt", "overlap_history", "tfidf_cosine", "semantic_cosine")
HISTORY_WINDOW = 6  # overlap_history looks at the previous user turn plus the 6 turns before it
_QUESTION_RE = regex.compile(r"[?？]|[吗嗎呢][\s\p{P}]*$")


def dialogue_act(text: str) -> str:
    """'question' when the turn has a question mark (ASCII or full-width) or ends with 吗/呢, else 'statement'."""
    return "question" if _QUESTION_RE.search(text.strip()) else "statement"


class CouplingSpace:
    """TF-IDF over content tokens plus a TruncatedSVD, fit on the pool's prompts and responses together."""

    def __init__(self, n_components: int = 64, seed: int = 0):
        self.n_components = n_components
        self.seed = seed
        self._tfidf = None
        self._svd = None

    def fit(self, prompts: Sequence[str], responses: Sequence[str]) -> CouplingSpace:
        texts = list(prompts) + list(responses)
        self._tfidf = TfidfVectorizer(analyzer=content_tokens, sublinear_tf=True, dtype=np.float32)
        matrix = self._tfidf.fit_transform(texts)
        k = max(1, min(self.n_components, matrix.shape[1] - 1, len(texts) - 1))
        self._svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(matrix)
        return self

    def embed(self, texts: Sequence[str]):
        """(l2-normalized sparse TF-IDF rows, dense SVD rows)."""
        tfidf = self._tfidf.transform(list(texts))
        return tfidf, self._svd.transform(tfidf)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def coupling_stats(prompts: Sequence[str], histories: Sequence[Sequence[dict]], responses: Sequence[str],
                   space: CouplingSpace) -> dict[str, np.ndarray]:
    """Per-item coupling quantities (see the module docstring); 'transition' holds indices into TRANSITIONS."""
    n = len(responses)
    out = {name: np.zeros(n) for name in CONTINUOUS}
    out["transition"] = np.zeros(n, dtype=int)
    if n == 0:
        return out
    types: dict[str, frozenset[str]] = {}  # turns repeat across a conversation's records: tokenize each once

    def word_types(text: str) -> frozenset[str]:
        if text not in types:
            types[text] = frozenset(content_tokens(text))
        return types[text]

    for i, (prompt, history, response) in enumerate(zip(prompts, histories, responses)):
        out["log_length_ratio"][i] = np.log((1 + count_length_tokens(response)) / (1 + count_length_tokens(prompt)))
        y = set(content_tokens(response))
        p = word_types(prompt)
        h = p.union(*(word_types(turn["content"]) for turn in history[-HISTORY_WINDOW:]))
        out["overlap_prompt"][i] = len(y & p) / len(y) if y else 0.0
        out["overlap_history"][i] = len(y & h) / len(y) if y else 0.0
        out["transition"][i] = 2 * (dialogue_act(prompt) == "statement") + (dialogue_act(response) == "statement")
    tp, sp = space.embed(prompts)
    ty, sy = space.embed(responses)
    out["tfidf_cosine"] = np.asarray(tp.multiply(ty).sum(axis=1)).ravel()  # rows are l2-normalized
    out["semantic_cosine"] = _row_cosine(sp, sy)
    return out


def transition_distribution(codes: np.ndarray) -> np.ndarray:
    """Frequencies of the four act transitions."""
    counts = np.bincount(np.asarray(codes, dtype=int), minlength=len(TRANSITIONS)).astype(float)
    return counts / counts.sum() if counts.sum() else counts


@dataclass(frozen=True)
class CouplingScales:
    """Fallback scales of the continuous coupling quantities over the whole multi-turn pool."""

    scales: dict[str, float]

    @classmethod
    def fit(cls, pool_stats: dict[str, np.ndarray]) -> CouplingScales:
        return cls({k: float(robust_scale(np.asarray(pool_stats[k])[:, None])[0]) if len(pool_stats[k]) else 0.0
                    for k in CONTINUOUS})


@register_metric("tdm", "multiturn", "higher", "Turn-dynamics match on multi-turn buckets: mean of the four "
                 "parts below (1 = the model couples to the previous turn exactly as the bucket's humans do).",
                 "TDM_b = mean(tdm_length, tdm_lexical, tdm_semantic, tdm_transition)", ideal=1.0,
                 score=lambda g, take: group_tdm(g)["tdm"])
@register_metric("tdm_length", "multiturn", "higher", "Similarity of the log length-ratio distributions "
                 "(response vs previous user turn).", "sim(q) = 1 / (1 + W1(q(X), q(R)) / s_q),  q = log((1 + "
                 "len y)/(1 + len p)),  s_q = IQR(q(R))/1.349 (else std, else the all-pool value, else 1)",
                 ideal=1.0, score=lambda g, take: group_tdm(g)["tdm_length"])
@register_metric("tdm_lexical", "multiturn", "higher", "Lexical accommodation: mean similarity of the "
                 "distributions of overlap with the previous turn, overlap with the recent history (previous turn + 6 "
                 "turns before it), and TF-IDF "
                 "cosine with the previous turn.", "mean(sim(overlap_prompt), sim(overlap_history), "
                 "sim(tfidf_cosine)),  overlap = |types(y) ∩ types(p[+h])| / |types(y)|", ideal=1.0,
                 score=lambda g, take: group_tdm(g)["tdm_lexical"])
@register_metric("tdm_semantic", "multiturn", "higher", "Semantic coupling: similarity of the distributions of "
                 "the cosine between previous turn and response in a TF-IDF+SVD space fit on the pool's prompts "
                 "and responses.", "sim(cos(SVD(p), SVD(y)))", ideal=1.0,
                 score=lambda g, take: group_tdm(g)["tdm_semantic"])
@register_metric("tdm_transition", "multiturn", "higher", "Transition structure: 1 − total-variation distance "
                 "between the model's and the pool's dialogue-act transition frequencies (question/statement → "
                 "question/statement).", "1 − ½ Σ_t |P_X(t) − P_R(t)|", ideal=1.0,
                 score=lambda g, take: group_tdm(g)["tdm_transition"])
def tdm_similarity(x_stats: dict[str, np.ndarray], r_stats: dict[str, np.ndarray],
                   fallback: CouplingScales | None = None) -> dict[str, float]:
    """tdm and its four parts for one bucket (NaN when either side is empty)."""
    names = ("tdm", "tdm_length", "tdm_lexical", "tdm_semantic", "tdm_transition")
    if len(x_stats["transition"]) == 0 or len(r_stats["transition"]) == 0:
        return dict.fromkeys(names, float("nan"))

    def sim(key: str) -> float:
        r = np.asarray(r_stats[key], dtype=float)
        scale = float(robust_scale(r[:, None])[0])
        if scale <= 0 and fallback is not None:
            scale = fallback.scales.get(key, 0.0)
        scale = scale if scale > 0 else 1.0
        return 1.0 / (1.0 + wasserstein_distance(np.asarray(x_stats[key], dtype=float), r) / scale)

    parts = {
        "tdm_length": sim("log_length_ratio"),
        "tdm_lexical": float(np.mean([sim("overlap_prompt"), sim("overlap_history"), sim("tfidf_cosine")])),
        "tdm_semantic": sim("semantic_cosine"),
        "tdm_transition": 1.0 - 0.5 * float(np.abs(transition_distribution(x_stats["transition"])
                                                   - transition_distribution(r_stats["transition"])).sum()),
    }
    return {"tdm": float(np.mean(list(parts.values()))), **parts}


TDM_NAMES = ("tdm", "tdm_length", "tdm_lexical", "tdm_semantic", "tdm_transition")


def group_tdm(group) -> dict[str, float]:
    """tdm and its parts for a multi-turn group (polyalign.eval.group.Group); NaN elsewhere, or without the
    coupling statistics of the side (the headline views do not compute them)."""
    def compute() -> dict[str, float]:
        human, coupling = group.human, group.side.coupling
        if group.info.get("track") != "multi" or human.coupling_space is None or coupling is None:
            return dict.fromkeys(TDM_NAMES, float("nan"))
        return tdm_similarity({k: v[group.rows] for k, v in coupling.items()},
                              {k: v[group.pool_rows] for k, v in human.pool_coupling.items()},
                              human.coupling_fallback)

    return group.cached("tdm", compute)
