"""Text featurizers for MAUVE and the 2-D projection: one shared space for every method.

* ``char-ngram-svd`` (default, offline, right for Chinese and English alike): TF-IDF over character n-grams
  (``char_wb``, 1–3, sublinear tf, the 32,768 most frequent) followed by TruncatedSVD, FIT ONCE on the suite's
  human reference pool with a fixed seed; every method's responses are then projected into that same space.
* ``hidden-states``: the mean-pooled last hidden state of a given Hugging Face model (any local path or hub id),
  e.g. a multilingual LM; nothing is fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from ..models.loading import load_causal_lm, load_tokenizer


class Featurizer(Protocol):
    """Maps texts to dense vectors in one fixed space."""

    name: str

    def spec(self) -> dict[str, Any]:
        """Everything that determines the space (for cache keys and metrics.json)."""

    def fit(self, texts: Sequence[str]) -> Featurizer:
        """Fit on the human reference pool (no-op for pretrained featurizers)."""

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Dense float32 matrix [n, d]."""


class CharNgramSVD:
    """Character n-gram TF-IDF (char_wb, 1–3) + TruncatedSVD, fit on the human reference pool."""

    name = "char-ngram-svd"

    def __init__(self, n_components: int = 100, ngram_max: int = 3, min_df: int = 2, max_features: int = 32768,
                 seed: int = 0):
        self.n_components = n_components
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.seed = seed
        self._vectorizer = None
        self._svd = None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "analyzer": "char_wb", "ngram_range": [1, self.ngram_max],
                "sublinear_tf": True, "min_df": self.min_df, "max_features": self.max_features,
                "n_components": self.n_components, "seed": self.seed}

    def fit(self, texts: Sequence[str]) -> CharNgramSVD:
        texts = list(texts)
        if len(texts) < 3:
            raise ValueError("the featurizer needs at least 3 reference texts to fit")
        self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, self.ngram_max), sublinear_tf=True,
                                           min_df=min(self.min_df, len(texts)), max_features=self.max_features,
                                           dtype=np.float32, lowercase=True)
        matrix = self._vectorizer.fit_transform(texts)
        k = max(1, min(self.n_components, matrix.shape[1] - 1, len(texts) - 1))
        self._svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(matrix)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectorizer is None or self._svd is None:
            raise RuntimeError("fit the featurizer on the reference pool first")
        return self._svd.transform(self._vectorizer.transform(list(texts))).astype(np.float32)


class HiddenStates:
    """Mean-pooled last hidden state of a Hugging Face model (local path or hub id)."""

    name = "hidden-states"

    def __init__(self, model: str, batch_size: int = 16, max_length: int = 256, device: str | None = None):
        self.model_path = str(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model = None
        self._tokenizer = None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_path, "max_length": self.max_length}

    def fit(self, texts: Sequence[str]) -> HiddenStates:
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = state["_tokenizer"] = None  # never pickle weights into the cache
        return state

    def _load(self) -> None:
        if self._model is not None:
            return
        self._tokenizer = load_tokenizer(self.model_path, padding_side="right")
        self._model = load_causal_lm(self.model_path, dtype="float32", device=self.device or "auto")

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        import torch  # deferred: only this featurizer needs torch (1.7 s measured), the default one does not

        self._load()
        model, tokenizer = self._model, self._tokenizer
        device = next(model.parameters()).device
        out = []
        texts = [t if t else " " for t in texts]
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                  truncation=True, max_length=self.max_length).to(device)
                result = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               output_hidden_states=True)
                hidden = result.hidden_states[-1] if getattr(result, "hidden_states", None) is not None \
                    else result.last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(pooled.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


FEATURIZERS = {CharNgramSVD.name: CharNgramSVD, HiddenStates.name: HiddenStates}


def make_featurizer(name: str = CharNgramSVD.name, **options: Any) -> Featurizer:
    """Build a featurizer by name ('char-ngram-svd' | 'hidden-states'; the latter needs model=PATH)."""
    if name not in FEATURIZERS:
        raise ValueError(f"unknown featurizer {name!r}; choose one of {sorted(FEATURIZERS)}")
    if name == HiddenStates.name and not options.get("model"):
        raise ValueError("the hidden-states featurizer needs a model (a local path or hub id)")
    return FEATURIZERS[name](**options)
