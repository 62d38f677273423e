"""The critic: a distance d(x, b) >= 0 of a response x to the human support of its bucket b.

* `LearnedCritic`: bucket embedding + standardized features (+ optional hidden states) -> small MLP -> logit of
  P(model | x, b), trained human-vs-model with class balance per bucket (a density-ratio estimate). Its distance
  is d = softplus(logit) = -log P(human | x, b): about 0 for clearly human text, growing with how model-like the
  text is for its bucket.
* `ClosedFormCritic`: the band / Mahalanobis / k-NN distances of `distance.py` behind the same interface.

Both are saved as a bundle (critic.pt, critic.json, metrics.json, manifest.json; see docs/architecture.md) and
loaded with `load_critic`, which refuses a weak or collapsed critic unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PolyAlignError
from ..io import read_json
from .distance import BucketStats, SupportDistance
from .featurize import FeatureStandardizer, Featurizer, HiddenStateEncoder, linguistic_feature_names, \
    linguistic_features
from ..io import write_json

BUNDLE_FORMAT = 1
UNKNOWN_BUCKET = "__unknown_bucket__"
METHODS = ("learned", "band", "mahalanobis", "knn")
DEFAULT_MIN_AUC = 0.75
DEFAULT_MIN_SCORE_STD = 1e-3
TARGET_DESCRIPTION = ("human-vs-model classification (human = 0, model = 1, class-balanced per bucket); "
                      "distance d = softplus(logit) = -log P(human | x, bucket)")


def text_features(featurizer: Any, texts: Sequence[str], languages: Sequence[str],
                  bucket_ids: Sequence[str]) -> np.ndarray | None:
    """The raw feature rows of texts for scoring (None for no texts); the three lists must align."""
    if not (len(texts) == len(languages) == len(bucket_ids)):
        raise PolyAlignError(f"score: got {len(texts)} texts, {len(languages)} languages and "
                             f"{len(bucket_ids)} bucket ids")
    if not len(texts):
        return None
    return np.asarray(featurizer(list(texts), list(languages)), dtype=np.float64)


class CriticNet(nn.Module):
    """[inputs ; embedding(bucket)] -> MLP -> logit (and, with aux_outputs=1, an auxiliary regression output).
    Bucket index 0 is the unknown-bucket row."""

    def __init__(self, n_inputs: int, n_buckets: int, *, bucket_dim: int = 16, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.1, aux_outputs: int = 0):
        super().__init__()
        self.hparams = {"n_inputs": n_inputs, "n_buckets": n_buckets, "bucket_dim": bucket_dim, "hidden": hidden,
                        "layers": layers, "dropout": dropout, "aux_outputs": aux_outputs}
        self.bucket_embedding = nn.Embedding(n_buckets + 1, bucket_dim)
        dims = [n_inputs + bucket_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout)]
        blocks.append(nn.Linear(dims[-1], 1 + aux_outputs))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, inputs: torch.Tensor, bucket_index: torch.Tensor) -> torch.Tensor:
        """[n, 1 + aux_outputs]; column 0 is the logit of P(model | x, b)."""
        return self.mlp(torch.cat([inputs, self.bucket_embedding(bucket_index)], dim=-1))


class Critic:
    """Common interface: `score(texts, languages, bucket_ids)` -> distances (np.ndarray, >= 0)."""

    method: str = ""

    def __init__(self, feature_names: Sequence[str], featurizer: Featurizer | None = None,
                 metrics: Mapping[str, Any] | None = None):
        self.feature_names = list(feature_names)
        self.featurizer: Featurizer = featurizer or linguistic_features
        self.metrics = dict(metrics or {})

    def known(self, bucket_ids: Sequence[str]) -> np.ndarray:
        """Which bucket ids this critic has seen (others are scored by the pooled fallback or refused)."""
        raise NotImplementedError

    def score_features(self, x: np.ndarray, bucket_ids: Sequence[str], *, texts: Sequence[str] | None = None,
                       unknown: str = "error") -> np.ndarray:
        """Distances from precomputed raw feature rows (texts are needed only for hidden-state inputs)."""
        raise NotImplementedError

    def score(self, texts: Sequence[str], languages: Sequence[str], bucket_ids: Sequence[str], *,
              unknown: str = "error") -> np.ndarray:
        """Distances of texts to their buckets' human support; features are computed once for the whole list.
        `unknown`: "error" refuses buckets the critic has not seen, "pooled" scores them with its fallback."""
        x = text_features(self.featurizer, texts, languages, bucket_ids)
        if x is None:
            return np.zeros(0)
        return self.score_features(x, list(bucket_ids), texts=list(texts), unknown=unknown)


    def _check_unknown(self, bucket_ids: Sequence[str], unknown: str) -> None:
        if unknown not in ("error", "pooled"):
            raise PolyAlignError(f"unknown must be 'error' or 'pooled', got {unknown!r}")
        mask = self.known(bucket_ids)
        if unknown == "error" and not mask.all():
            missing = sorted({b for b, k in zip(bucket_ids, mask) if not k})
            raise PolyAlignError(f"bucket(s) unknown to the critic: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                                 " (refit the critic on data with these buckets, or score them with the pooled "
                                 "fallback)")


class LearnedCritic(Critic):
    """The human-vs-model classifier critic (see module docstring)."""

    method = "learned"

    def __init__(self, net: CriticNet, bucket_vocab: Sequence[str], standardizer: FeatureStandardizer,
                 feature_names: Sequence[str], *, hidden_encoder: HiddenStateEncoder | None = None,
                 hidden_mean: np.ndarray | None = None, hidden_std: np.ndarray | None = None,
                 featurizer: Featurizer | None = None, metrics: Mapping[str, Any] | None = None,
                 batch_size: int = 8192):
        super().__init__(feature_names, featurizer, metrics)
        self.net = net.eval()
        self.bucket_vocab = list(bucket_vocab)
        self.bucket_index = {b: i + 1 for i, b in enumerate(self.bucket_vocab)}
        self.standardizer = standardizer
        self.hidden_encoder = hidden_encoder
        self.hidden_mean = None if hidden_mean is None else np.asarray(hidden_mean, dtype=np.float32)
        self.hidden_std = None if hidden_std is None else np.asarray(hidden_std, dtype=np.float32)
        self.batch_size = batch_size

    def known(self, bucket_ids: Sequence[str]) -> np.ndarray:
        return np.array([b in self.bucket_index for b in bucket_ids], dtype=bool)

    def indices(self, bucket_ids: Sequence[str]) -> np.ndarray:
        """Embedding rows of bucket ids (0 = unknown)."""
        return np.array([self.bucket_index.get(b, 0) for b in bucket_ids], dtype=np.int64)

    def inputs(self, x: np.ndarray, bucket_ids: Sequence[str], texts: Sequence[str] | None = None) -> np.ndarray:
        """The MLP's input rows: standardized, clipped features [+ normalized hidden states]."""
        z = self.standardizer.transform(x, bucket_ids)
        if self.hidden_encoder is None:
            return z
        if texts is None:
            raise PolyAlignError("this critic uses hidden states: pass the texts along with the features")
        h = (self.hidden_encoder.encode(texts) - self.hidden_mean) / self.hidden_std
        return np.concatenate([z, h.astype(np.float32)], axis=1)

    def logits_from_inputs(self, inputs: np.ndarray, bucket_index: np.ndarray) -> np.ndarray:
        """Logits of P(model | x, b), batched, without gradients."""
        out = np.empty(len(inputs), dtype=np.float64)
        self.net.eval()
        with torch.no_grad():
            for start in range(0, len(inputs), self.batch_size):
                sl = slice(start, start + self.batch_size)
                out[sl] = self.net(torch.from_numpy(np.ascontiguousarray(inputs[sl])),
                                   torch.from_numpy(bucket_index[sl]))[:, 0].double().numpy()
        return out

    def logits(self, x: np.ndarray, bucket_ids: Sequence[str], *, texts: Sequence[str] | None = None,
               unknown: str = "error") -> np.ndarray:
        """Logits of P(model | x, b) from raw feature rows."""
        self._check_unknown(bucket_ids, unknown)
        return self.logits_from_inputs(self.inputs(x, bucket_ids, texts), self.indices(bucket_ids))

    def score_features(self, x: np.ndarray, bucket_ids: Sequence[str], *, texts: Sequence[str] | None = None,
                       unknown: str = "error") -> np.ndarray:
        return logit_to_distance(self.logits(x, bucket_ids, texts=texts, unknown=unknown))

    def config_json(self) -> dict[str, Any]:
        """critic.json for this critic."""
        hidden = None
        if self.hidden_encoder is not None:
            hidden = {"model": self.hidden_encoder.model_name, "max_length": self.hidden_encoder.max_length,
                      "batch_size": self.hidden_encoder.batch_size, "fingerprint": self.hidden_encoder.fingerprint}
        return {"format": BUNDLE_FORMAT, "method": self.method, "target": TARGET_DESCRIPTION,
                "feature_names": self.feature_names, "bucket_vocab": self.bucket_vocab,
                "unknown_bucket": UNKNOWN_BUCKET, "net": self.net.hparams, "standardizer": self.standardizer.to_json(),
                "hidden_states": hidden}

    def state(self) -> dict[str, Any]:
        """critic.pt for this critic."""
        state: dict[str, Any] = {"net": self.net.state_dict()}
        if self.hidden_mean is not None:
            state["hidden_mean"] = torch.from_numpy(self.hidden_mean)
            state["hidden_std"] = torch.from_numpy(self.hidden_std)
        return state


class ClosedFormCritic(Critic):
    """A closed-form support distance (band | mahalanobis | knn) behind the critic interface."""

    def __init__(self, method: str, distance: SupportDistance, feature_names: Sequence[str], *,
                 featurizer: Featurizer | None = None, metrics: Mapping[str, Any] | None = None):
        if method not in ("band", "mahalanobis", "knn"):
            raise PolyAlignError(f"unknown closed-form method {method!r}")
        super().__init__(feature_names, featurizer, metrics)
        self.method = method
        self.distance = distance

    def known(self, bucket_ids: Sequence[str]) -> np.ndarray:
        return self.distance.known(bucket_ids, self.method)

    def score_features(self, x: np.ndarray, bucket_ids: Sequence[str], *, texts: Sequence[str] | None = None,
                       unknown: str = "error") -> np.ndarray:
        if unknown == "pooled" and not self.known(bucket_ids).all():
            raise PolyAlignError(f"the {self.method} distance has no pooled fallback for unknown buckets")
        self._check_unknown(bucket_ids, unknown)
        return self.distance.compute(self.method, x, bucket_ids)

    def config_json(self) -> dict[str, Any]:
        """critic.json for this critic."""
        return {"format": BUNDLE_FORMAT, "method": self.method,
                "target": f"closed-form {self.method} distance to the bucket's human references",
                "feature_names": self.feature_names, "k": self.distance.k, "eps": self.distance.eps,
                "stats": {b: s.to_json() for b, s in sorted(self.distance.stats.items())}}

    def state(self) -> dict[str, Any]:
        """critic.pt for this critic (the k-NN reference rows; empty for band / Mahalanobis)."""
        if self.method != "knn":
            return {}
        ref_z, norms = self.distance.knn_state()
        return {"ref_z": {b: torch.from_numpy(z.astype(np.float32)) for b, z in ref_z.items()},
                "norms": {b: torch.tensor(v, dtype=torch.float64) for b, v in norms.items()}}


def logit_to_distance(logits: np.ndarray) -> np.ndarray:
    """d = softplus(logit) = -log P(human | x, b), computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.logaddexp(0.0, logits)


# ---------------------------------------------------------------------------------------------------------------
# Refusal checks


def critic_weakness(metrics: Mapping[str, Any], *, min_auc: float = DEFAULT_MIN_AUC,
                    min_score_std: float = DEFAULT_MIN_SCORE_STD) -> str | None:
    """Why a critic with these held-out metrics must not be used (None when it is fine)."""
    auc = metrics.get("heldout_auc")
    std = metrics.get("score_std")
    if auc is None or std is None:
        return "its metrics.json has no held-out AUC / score spread (was it fit by `polyalign critic fit`?)"
    if not np.isfinite(std) or std < min_score_std:
        return f"its held-out scores are (near-)constant (std {std:.3g} < {min_score_std:g}): the critic collapsed"
    if not np.isfinite(auc) or auc < min_auc:
        return (f"its held-out AUC human-vs-model is {auc:.3f} < {min_auc:g}: it does not separate human from "
                f"model responses")
    return None


def ensure_not_constant(scores: np.ndarray, texts: Sequence[str], *, allow_weak: bool = False,
                        tol: float = 1e-9) -> None:
    """Refuse (PolyAlignError) when distinct texts all get the same score, unless allow_weak."""
    scores = np.asarray(scores, dtype=np.float64)
    if allow_weak or len(set(texts)) < 2 or not len(scores):
        return
    if not np.all(np.isfinite(scores)):
        raise PolyAlignError("the critic produced NaN or infinite distances")
    if float(scores.max() - scores.min()) <= tol * max(1.0, float(np.abs(scores).max())):
        raise PolyAlignError(f"the critic gives every one of {len(set(texts))} distinct texts the same distance "
                             f"{scores[0]:.6g}: it collapsed (pass --allow-weak to use it anyway)")


# ---------------------------------------------------------------------------------------------------------------
# Bundle I/O


def save_critic_files(critic: LearnedCritic | ClosedFormCritic, directory: Path) -> None:
    """Write critic.json and critic.pt into `directory` (the caller writes metrics and manifest atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "critic.json", critic.config_json())
    torch.save(critic.state(), directory / "critic.pt")


def load_critic(path: str | Path, *, min_auc: float = DEFAULT_MIN_AUC, min_score_std: float = DEFAULT_MIN_SCORE_STD,
                allow_weak: bool = False, featurizer: Featurizer | None = None,
                hidden_cache_dir: str | Path | None = None) -> LearnedCritic | ClosedFormCritic:
    """Load a critic bundle. Refuses (PolyAlignError) when its held-out AUC < min_auc or its scores are
    (near-)constant, unless allow_weak; refuses when its feature names differ from the featurizer's."""
    path = Path(path)
    if (path / "crossfit.json").exists():  # deferred: crossfit imports this module
        from .crossfit import load_crossfit_critic

        return load_crossfit_critic(path, min_auc=min_auc, min_score_std=min_score_std, allow_weak=allow_weak)
    if not (path / "critic.json").exists():
        raise PolyAlignError(f"{path}: not a critic bundle (no critic.json); make one with `polyalign critic fit`")
    config = read_json(path / "critic.json")
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    if config.get("format") != BUNDLE_FORMAT:
        raise PolyAlignError(f"{path}/critic.json: unsupported bundle format {config.get('format')!r}")
    if not allow_weak:
        reason = critic_weakness(metrics, min_auc=min_auc, min_score_std=min_score_std)
        if reason:
            raise PolyAlignError(f"refusing the critic at {path}: {reason}. Refit it (more or different model "
                                 "responses, hidden states), or pass --allow-weak / allow_weak=True to use it anyway")
    if featurizer is None:
        current = linguistic_feature_names()
        if current != config["feature_names"]:
            raise PolyAlignError(f"{path}: the critic was fit on {len(config['feature_names'])} features that differ "
                                 f"from the {len(current)} this version computes; refit it")
    state = torch.load(path / "critic.pt", map_location="cpu", weights_only=True)
    method = config["method"]
    if method == "learned":
        net = CriticNet(**config["net"])
        net.load_state_dict(state["net"])
        encoder = None
        hidden = config.get("hidden_states")
        if hidden:
            encoder = HiddenStateEncoder(hidden["model"], batch_size=hidden["batch_size"],
                                         max_length=hidden["max_length"], cache_dir=hidden_cache_dir)
        return LearnedCritic(net, config["bucket_vocab"], FeatureStandardizer.from_json(config["standardizer"]),
                             config["feature_names"], hidden_encoder=encoder,
                             hidden_mean=_np(state.get("hidden_mean")), hidden_std=_np(state.get("hidden_std")),
                             featurizer=featurizer, metrics=metrics)
    if method not in METHODS:
        raise PolyAlignError(f"{path}/critic.json: unknown method {method!r}")
    stats = {b: BucketStats.from_json(s) for b, s in config["stats"].items()}
    if method == "knn":
        distance = SupportDistance.from_knn_state(
            stats, {b: z.double().numpy() for b, z in state["ref_z"].items()},
            {b: float(v) for b, v in state["norms"].items()}, k=config["k"], eps=config["eps"])
    else:
        distance = SupportDistance(stats, None, k=config["k"], eps=config["eps"])
    return ClosedFormCritic(method, distance, config["feature_names"], featurizer=featurizer, metrics=metrics)


def _np(t: Any) -> np.ndarray | None:
    return None if t is None else t.numpy()
