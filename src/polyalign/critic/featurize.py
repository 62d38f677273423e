"""What the learned critic sees of a response: its linguistic features standardized by its bucket's human
reference, clipped, and optionally the mean-pooled last hidden states of a given Hugging Face causal LM."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PolyAlignError
from ..io import atomic_path, sha256_json
from ..data.features import FEATURE_NAMES, feature_matrix
from ..models.loading import load_causal_lm, load_tokenizer, resolve_device

Featurizer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def linguistic_features(texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
    """The data layer's bilingual feature matrix [n, F] (polyalign.data.features.feature_matrix)."""
    return np.asarray(feature_matrix(list(texts), list(languages)), dtype=np.float64)


def linguistic_feature_names() -> list[str]:
    """Names of the columns of `linguistic_features`."""
    return list(FEATURE_NAMES)


class FeatureStandardizer:
    """z = clip((x - center_b) / scale_b, -clip, clip) with bucket b's robust center and scale; buckets without a
    reference use the pooled center and scale of all training humans."""

    def __init__(self, centers: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray],
                 pooled_center: np.ndarray, pooled_scale: np.ndarray, clip: float = 5.0, eps: float = 1e-6):
        if clip <= 0:
            raise PolyAlignError(f"clip must be > 0, got {clip}")
        self.centers = {b: np.asarray(v, dtype=np.float64) for b, v in centers.items()}
        self.scales = {b: np.maximum(np.asarray(v, dtype=np.float64), eps) for b, v in scales.items()}
        self.pooled_center = np.asarray(pooled_center, dtype=np.float64)
        self.pooled_scale = np.maximum(np.asarray(pooled_scale, dtype=np.float64), eps)
        self.clip = float(clip)
        self.eps = eps

    @classmethod
    def fit_pooled(cls, x_human: np.ndarray, centers: Mapping[str, np.ndarray],
                   scales: Mapping[str, np.ndarray], clip: float = 5.0, eps: float = 1e-6) -> FeatureStandardizer:
        """Per-bucket center/scale as given; the pooled fallback from all human rows (median, IQR/1.349)."""
        q25, q50, q75 = np.quantile(np.asarray(x_human, dtype=np.float64), [0.25, 0.5, 0.75], axis=0)
        return cls(centers, scales, q50, (q75 - q25) / 1.349, clip, eps)

    def transform(self, x: np.ndarray, bucket_ids: Sequence[str]) -> np.ndarray:
        """Standardized, clipped features (float32)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        bucket_ids = np.asarray(list(bucket_ids), dtype=object)
        center = np.empty_like(x)
        scale = np.empty_like(x)
        for b in np.unique(bucket_ids):
            idx = bucket_ids == b
            center[idx] = self.centers.get(b, self.pooled_center)
            scale[idx] = self.scales.get(b, self.pooled_scale)
        return np.clip((x - center) / scale, -self.clip, self.clip).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"clip": self.clip, "eps": self.eps, "pooled_center": self.pooled_center.tolist(),
                "pooled_scale": self.pooled_scale.tolist(),
                "centers": {b: v.tolist() for b, v in sorted(self.centers.items())},
                "scales": {b: v.tolist() for b, v in sorted(self.scales.items())}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FeatureStandardizer:
        """Inverse of to_json."""
        return cls(obj["centers"], obj["scales"], obj["pooled_center"], obj["pooled_scale"], obj["clip"],
                   obj.get("eps", 1e-6))


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(model: str, max_length: int) -> str:
    """A short hash naming a model (local folder: file names, sizes and mtimes; hub id: the id) and max_length."""
    path = Path(model)
    files = []
    if path.is_dir():
        files = [(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
                 for p in sorted(path.rglob("*")) if p.is_file()]
    return sha256_json({"model": str(model), "files": files, "max_length": max_length})[:16]


class HiddenStateEncoder:
    """Mean-pooled last hidden states of a Hugging Face model (local folder or hub id), batched, and cached per
    text in `cache_dir/hidden_<fingerprint>.npz` when a cache folder is given."""

    def __init__(self, model: str, *, batch_size: int = 16, max_length: int = 256, device: str = "auto",
                 cache_dir: str | Path | None = None):
        self.model_name = str(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: dict[str, np.ndarray] | None = None
        self.fingerprint = model_fingerprint(self.model_name, max_length)

    def _load(self) -> None:
        if self._model is not None:
            return
        self.device = resolve_device(self.device)
        self._tokenizer = load_tokenizer(self.model_name, padding_side="right")
        self._model = load_causal_lm(self.model_name, dtype="float32", device=self.device).base_model

    @property
    def cache_file(self) -> Path | None:
        """Where the per-text cache lives (None without a cache folder)."""
        return self.cache_dir / f"hidden_{self.fingerprint}.npz" if self.cache_dir else None

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            self._cache = {}
            if self.cache_file is not None and self.cache_file.exists():
                with np.load(self.cache_file) as data:
                    self._cache = dict(zip(data["keys"].tolist(), data["vectors"]))
        return self._cache

    def _save_cache(self) -> None:
        if self.cache_file is None or not self._cache:
            return
        keys = sorted(self._cache)
        with atomic_path(self.cache_file) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.array(keys), vectors=np.stack([self._cache[k] for k in keys]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[n, H] float32 mean-pooled last hidden states (padding excluded)."""
        cache = self._load_cache()
        keys = [_text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items(), key=lambda kv: len(kv[1]))
        if missing:
            self._load()
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                enc = self._tokenizer([t for _, t in chunk], return_tensors="pt", padding=True, truncation=True,
                                      max_length=self.max_length).to(self.device)
                with torch.no_grad():
                    hidden = self._model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
                                         ).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                for (key, _), vec in zip(chunk, pooled.cpu().numpy()):
                    cache[key] = vec.astype(np.float32)
            self._save_cache()
        return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
