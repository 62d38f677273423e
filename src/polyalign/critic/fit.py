"""Fitting a critic: human (train split) vs model responses (predictions of SFT models on train prompts),
split by record, class-balanced per bucket, early-stopped, evaluated by held-out AUC, saved as a bundle."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
import torch

from ..config import StrictModel
from ..errors import ConfigError, InputError, PolyAlignError
from ..io import atomic_path, iter_jsonl, make_manifest, sha256_file, write_json
from .distance import METHODS as CLOSED_FORM_METHODS
from .distance import BucketStats, SupportDistance, bucket_stats_from_references, group_rows, human_baseline, \
    summarize
from .featurize import FeatureStandardizer, Featurizer, HiddenStateEncoder, linguistic_feature_names, \
    linguistic_features
from .model import DEFAULT_MIN_AUC, DEFAULT_MIN_SCORE_STD, ClosedFormCritic, Critic, CriticNet, LearnedCritic, \
    critic_weakness, save_critic_files

from .training import HUMAN, MODEL, class_balanced_weights, split_by_group, train_critic_net
from ..data.references import References
from ..data.build import load_feature_names, load_features, load_records


class CriticConfig(StrictModel):
    """`polyalign critic fit` configuration (configs/critic/critic.yaml)."""

    data: Path = Field(description="data build directory (records/, features/, references.json)")
    predictions: list[Path] = Field(default_factory=list,
                                    description="predictions.jsonl files of SFT models on the split's prompts")
    out: Path = Field(description="output bundle directory")
    method: Literal["learned", "band", "mahalanobis", "knn"] = Field(
        "learned", description="learned classifier critic, or a closed-form distance behind the same interface")
    split: str = Field("train", description="records whose human and model responses train the critic")
    seed: int = Field(0, description="seed for the record split, initialization and batching")
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="share of records held out for the AUC")
    early_stop_fraction: float = Field(0.1, gt=0, lt=1,
                                       description="share of the remaining records used for early stopping")
    min_auc: float = Field(DEFAULT_MIN_AUC, ge=0, le=1, description="held-out AUC below which the critic is refused")
    min_score_std: float = Field(DEFAULT_MIN_SCORE_STD, ge=0,
                                 description="held-out score std below which the critic counts as collapsed")
    text_field: str = Field("prediction", description="field of the predictions rows holding the model text")
    clip: float = Field(5.0, gt=0, description="standardized features are clipped to [-clip, clip]")
    bucket_dim: int = Field(16, ge=1, description="bucket embedding size")
    hidden: int = Field(128, ge=1, description="MLP width")
    layers: int = Field(2, ge=1, description="MLP hidden layers")
    dropout: float = Field(0.1, ge=0, lt=1, description="MLP dropout")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    batch_size: int = Field(512, ge=1, description="training batch size")
    max_epochs: int = Field(100, ge=1, description="maximum epochs")
    patience: int = Field(8, ge=1, description="epochs without early-stop improvement before stopping")
    unknown_bucket_rate: float = Field(0.1, ge=0, lt=1,
                                       description="share of training rows shown with the unknown-bucket row, so "
                                                   "that row learns a pooled critic for unseen buckets")
    aux_band_weight: float = Field(0.0, ge=0, description="weight of an auxiliary regression on log1p(band "
                                                          "distance); 0 = off")
    knn_k: int = Field(10, ge=1, description="k of the k-NN distance")
    threads: int = Field(1, ge=1, description="torch threads while training (a small MLP trains fastest on one)")
    baseline: bool = Field(True, description="store the human-vs-human distance distributions (val vs train)")
    hidden_states_model: str | None = Field(None, description="HF model (folder or hub id) whose mean-pooled last "
                                                              "hidden states are added to the features")
    hidden_states_batch_size: int = Field(16, ge=1, description="batch size for hidden states")
    hidden_states_max_length: int = Field(256, ge=8, description="token limit for hidden states")
    hidden_states_cache: Path | None = Field(None, description="folder caching hidden states per text")


@dataclass
class CriticData:
    """Human and model responses with their raw features; label 0 = human, 1 = model."""

    x: np.ndarray
    labels: np.ndarray
    record_ids: np.ndarray
    bucket_ids: np.ndarray
    languages: np.ndarray
    tracks: np.ndarray
    texts: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    group_ids: np.ndarray | None = None  # conversation of each row (the held-out split's unit); None: the record

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> CriticData:
        """Rows where mask is true."""
        idx = np.flatnonzero(mask)
        return CriticData(self.x[idx], self.labels[idx], self.record_ids[idx], self.bucket_ids[idx],
                          self.languages[idx], self.tracks[idx], [self.texts[i] for i in idx], dict(self.report),
                          None if self.group_ids is None else self.group_ids[idx])

    def with_x(self, x: np.ndarray) -> CriticData:
        """The same rows with other feature values."""
        return replace(self, x=x)

    @property
    def groups(self) -> np.ndarray:
        """The held-out split's unit per row: the conversation, else the record."""
        return self.record_ids if self.group_ids is None else self.group_ids


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def read_prediction_rows(paths: Iterable[str | Path], records_by_id: Mapping[str, Any], *,
                         text_field: str = "prediction") -> tuple[list[dict[str, Any]], Counter]:
    """Prediction rows whose id is a record of `records_by_id`, validated: each has a string "id" and a string
    text field, and its bucket_id (if present) matches the record's. Returns (rows, skip counts); each row gets
    "_file" and "_line". Rows for other records are counted as skipped ("not_in_split")."""
    rows: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for path in paths:
        for line, obj in iter_jsonl(path):
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", file=path, line=line)
            if not isinstance(obj.get("id"), str):
                raise InputError("missing or non-string record id", file=path, line=line, field="id")
            if not isinstance(obj.get(text_field), str):
                raise InputError("missing or non-string model text", file=path, line=line, field=text_field)
            record = records_by_id.get(obj["id"])
            if record is None:
                skipped["not_in_split"] += 1
                continue
            if "bucket_id" in obj and obj["bucket_id"] != _get(record, "bucket_id"):
                raise InputError(f"bucket_id {obj['bucket_id']!r} differs from the record's "
                                 f"{_get(record, 'bucket_id')!r}: predictions from another data build?",
                                 file=path, line=line, field="bucket_id")
            rows.append({**obj, "_file": str(path), "_line": line})
    return rows, skipped


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else getattr(record, key)


def assemble_critic_data(records: Sequence[Any], human_x: np.ndarray, prediction_rows: Sequence[Mapping[str, Any]],
                         featurizer: Featurizer, *, text_field: str = "prediction") -> CriticData:
    """Human rows (one per record, features `human_x` in record order) + model rows (features computed here in
    one batched call), each with its record's bucket, language and track."""
    if len(records) != len(human_x):
        raise PolyAlignError(f"{len(records)} records but {len(human_x)} human feature rows")
    by_id = {_get(r, "id"): r for r in records}
    model_records = [by_id[row["id"]] for row in prediction_rows]
    model_texts = [row[text_field] for row in prediction_rows]
    model_x = np.asarray(featurizer(model_texts, [_get(r, "language") for r in model_records]), dtype=np.float64) \
        if model_texts else np.zeros((0, human_x.shape[1]))
    all_records = list(records) + model_records

    def col(key: str) -> np.ndarray:
        return np.array([_get(r, key) for r in all_records], dtype=object)

    def conversation(record: Any) -> str:
        value = record.get("conversation_id") if isinstance(record, dict) else getattr(record, "conversation_id",
                                                                                         None)
        return value or _get(record, "id")

    return CriticData(
        x=np.concatenate([np.asarray(human_x, dtype=np.float64), model_x]),
        labels=np.concatenate([np.full(len(records), HUMAN), np.full(len(model_records), MODEL)]).astype(np.int64),
        record_ids=col("id"), bucket_ids=col("bucket_id"), languages=col("language"), tracks=col("track"),
        texts=[_get(r, "response") for r in records] + model_texts,
        group_ids=np.array([conversation(r) for r in all_records], dtype=object),
        report={"human_rows": len(records), "model_rows": len(model_records),
                "empty_model_texts": sum(1 for t in model_texts if not t.strip())})


def fit_learned_critic(data: CriticData, stats: Mapping[str, BucketStats], masks: tuple[np.ndarray, ...],
                       config: CriticConfig, feature_names: Sequence[str], *, featurizer: Featurizer | None = None
                       ) -> tuple[LearnedCritic, dict[str, Any]]:
    """Fit the learned critic on `data` with the bucket statistics for standardization; returns (critic, info)."""
    fit_mask, stop_mask, _ = masks
    weights = class_balanced_weights(data.labels, data.bucket_ids)
    trainable = fit_mask & (weights > 0)
    vocab = sorted(set(data.bucket_ids[trainable].tolist()))
    human_fit = data.x[fit_mask & (data.labels == HUMAN)]
    standardizer = FeatureStandardizer.fit_pooled(human_fit if len(human_fit) else data.x,
                                                  {b: s.q50 for b, s in stats.items()},
                                                  {b: s.scale for b, s in stats.items()}, clip=config.clip)
    encoder = hidden_mean = hidden_std = None
    if config.hidden_states_model:
        encoder = HiddenStateEncoder(config.hidden_states_model, batch_size=config.hidden_states_batch_size,
                                     max_length=config.hidden_states_max_length, cache_dir=config.hidden_states_cache)
        hidden = encoder.encode(data.texts)
        hidden_mean = hidden[fit_mask].mean(axis=0)
        hidden_std = np.maximum(hidden[fit_mask].std(axis=0), 1e-6)
    critic = LearnedCritic(CriticNet(1, 1), vocab, standardizer, feature_names, hidden_encoder=encoder,
                           hidden_mean=hidden_mean, hidden_std=hidden_std, featurizer=featurizer)
    inputs = critic.inputs(data.x, data.bucket_ids.tolist(), data.texts)
    aux = None
    if config.aux_band_weight > 0:
        distance = SupportDistance(stats)
        known = distance.known(data.bucket_ids, "band")
        aux = np.zeros(len(data))
        aux[known] = np.log1p(distance.band(data.x[known], data.bucket_ids[known]))
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng():
            net, history = train_critic_net(inputs, critic.indices(data.bucket_ids.tolist()), data.labels, weights,
                                            fit_mask, stop_mask, len(vocab), config, aux)
    finally:
        torch.set_num_threads(threads)
    critic.net = net
    return critic, {"history": history, "epochs": len(history), "bucket_vocab_size": len(vocab),
                    "buckets_without_both_classes": sorted(set(data.bucket_ids.tolist()) - set(vocab))}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if len(set(np.asarray(labels).tolist())) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, languages: np.ndarray, tracks: np.ndarray,
                    bucket_ids: np.ndarray) -> dict[str, Any]:
    """Held-out separation of human (0) and model (1) responses by distance: AUC overall, per language, per
    track, per bucket, the row-weighted mean of per-bucket AUCs, and the score spread per class."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    out: dict[str, Any] = {"heldout_auc": _auc(labels, scores), "n_heldout": int(len(labels)),
                           "n_heldout_human": int((labels == HUMAN).sum()),
                           "n_heldout_model": int((labels == MODEL).sum())}
    for name, groups in (("language", languages), ("track", tracks), ("bucket", bucket_ids)):
        groups = np.asarray(groups, dtype=object)
        out[f"auc_by_{name}"] = {
            str(g): {"auc": _auc(labels[groups == g], scores[groups == g]), "n": int((groups == g).sum())}
            for g in np.unique(groups)}
    per_bucket = [(v["auc"], v["n"]) for v in out["auc_by_bucket"].values() if v["auc"] is not None]
    out["within_bucket_auc"] = float(np.average([a for a, _ in per_bucket], weights=[n for _, n in per_bucket])) \
        if per_bucket else None
    out["score_std"] = float(scores.std()) if len(scores) else 0.0
    out["score_quantiles"] = summarize(scores)
    out["human_scores"] = summarize(scores[labels == HUMAN])
    out["model_scores"] = summarize(scores[labels == MODEL])
    return out


def closed_form_critic(method: str, stats: Mapping[str, BucketStats], reference_rows: Mapping[str, np.ndarray],
                       feature_names: Sequence[str], *, k: int = 10,
                       featurizer: Featurizer | None = None) -> ClosedFormCritic:
    """A closed-form critic over bucket statistics (and, for knn, the reference human rows)."""
    rows = reference_rows if method == "knn" else None
    return ClosedFormCritic(method, SupportDistance(stats, rows, k=k), feature_names, featurizer=featurizer)


def fit_critic_data(data: CriticData, stats: Mapping[str, BucketStats], config: CriticConfig,
                    feature_names: Sequence[str], *, featurizer: Featurizer | None = None
                    ) -> tuple[Critic, dict[str, Any]]:
    """Fit (learned) or set up (closed-form) a critic on assembled data; return it with held-out metrics.
    Closed-form k-NN references are the human rows of the fit and early-stop records (never the held-out)."""
    if not (data.labels == MODEL).any():
        raise PolyAlignError("no model responses: pass predictions of a model on the split's prompts")
    masks = split_by_group(data.groups, config.heldout_fraction, config.early_stop_fraction, config.seed)
    held = masks[2]
    train_humans = ~held & (data.labels == HUMAN)
    reference_rows = group_rows(data.x[train_humans], data.bucket_ids[train_humans])
    info: dict[str, Any] = {}
    if config.method == "learned":
        critic, info = fit_learned_critic(data, stats, masks, config, feature_names, featurizer=featurizer)
    else:
        critic = closed_form_critic(config.method, stats, reference_rows, feature_names, k=config.knn_k,
                                    featurizer=featurizer)
    known = critic.known(data.bucket_ids[held].tolist())
    unknown_mode = "pooled" if config.method == "learned" else "error"
    if unknown_mode == "error":
        held = held.copy()
        held[np.flatnonzero(held)[~known]] = False
    h = data.subset(held)
    scores = critic.score_features(h.x, h.bucket_ids.tolist(), texts=h.texts, unknown=unknown_mode)
    metrics = evaluate_scores(scores, h.labels, h.languages, h.tracks, h.bucket_ids)
    metrics.update({"method": config.method, "min_auc": config.min_auc, "min_score_std": config.min_score_std,
                    "n_fit": int(masks[0].sum()), "n_early_stop": int(masks[1].sum()),
                    "heldout_unknown_buckets": int((~known).sum()), "data": data.report})
    if config.method == "learned":
        metrics["training"] = {k: v for k, v in info.items() if k != "history"}
        metrics["history"] = info["history"]
        comparison = {}
        for method in CLOSED_FORM_METHODS:
            other = closed_form_critic(method, stats, reference_rows, feature_names, k=config.knn_k)
            mask = other.known(h.bucket_ids.tolist())
            if mask.any():
                s = other.score_features(h.x[mask], h.bucket_ids[mask].tolist())
                comparison[method] = _auc(h.labels[mask], s)
        metrics["closed_form_auc"] = comparison
        metrics.update(length_diagnostics(data, stats, masks, config, feature_names, critic, h, unknown_mode))
    weakness = critic_weakness(metrics, min_auc=config.min_auc, min_score_std=config.min_score_std)
    metrics["passes_collapse_check"] = weakness is None
    metrics["weakness"] = weakness
    critic.metrics = metrics
    return critic, metrics


# What grows with a response's length: counts, not rates (a critic without them must tell humans from models by
# how they write, not by how much).
LENGTH_FEATURES = ("length_tokens", "chars", "words", "sentences", "sentence_length_max", "paragraphs", "newlines")


def without_length(x: np.ndarray, bucket_ids: np.ndarray, stats: Mapping[str, BucketStats],
                   feature_names: Sequence[str]) -> np.ndarray:
    """`x` with every length feature set to its bucket's human median (the pooled median of the known buckets for
    a bucket without statistics): standardized, they carry no information."""
    cols = [i for i, name in enumerate(feature_names) if name in LENGTH_FEATURES]
    out = np.array(x, dtype=np.float64, copy=True)
    if not cols or not stats:
        return out
    pooled = np.median(np.stack([s.q50 for s in stats.values()]), axis=0)
    for b in np.unique(bucket_ids):
        rows = bucket_ids == b
        median = stats[b].q50 if b in stats else pooled
        out[np.ix_(rows, cols)] = median[cols]
    return out


def length_diagnostics(data: CriticData, stats: Mapping[str, BucketStats], masks: tuple[np.ndarray, ...],
                       config: CriticConfig, feature_names: Sequence[str], critic: Critic, held: CriticData,
                       unknown_mode: str) -> dict[str, Any]:
    """What the critic knows beyond length, on the same held-out rows: the AUC of a critic fitted the same way
    without the length features (rates such as type-token ratio still carry some length), the critic's AUC
    within length-matched strata (bucket x length quintile: humans and models of about the same length), the AUC
    of the length alone (|robust z| of length_tokens to the bucket's human median), and the rank correlation of
    the critic's distance with that length mismatch."""
    blind_data = data.with_x(without_length(data.x, data.bucket_ids, stats, feature_names))
    blind, _ = fit_learned_critic(blind_data, stats, masks, config, feature_names)
    blind_x = without_length(held.x, held.bucket_ids, stats, feature_names)
    out: dict[str, Any] = {"heldout_auc_without_length": _auc(held.labels, blind.score_features(
        blind_x, held.bucket_ids.tolist(), texts=held.texts, unknown=unknown_mode))}
    if "length_tokens" in feature_names:
        j = list(feature_names).index("length_tokens")
        known = np.array([b in stats for b in held.bucket_ids])
        if known.any():
            mismatch = np.array([abs(v - stats[b].q50[j]) / max(float(stats[b].scale[j]), 1e-9)
                                 for v, b in zip(held.x[known, j], held.bucket_ids[known])])
            scores = critic.score_features(held.x[known], held.bucket_ids[known].tolist(),
                                           texts=[t for t, k in zip(held.texts, known) if k], unknown=unknown_mode)
            out["heldout_auc_length_only"] = _auc(held.labels[known], mismatch)
            out["heldout_auc_length_matched"] = length_matched_auc(
                held.labels[known], scores, held.x[known, j], held.bucket_ids[known])
            out["distance_length_mismatch_spearman"] = float(spearmanr(scores, mismatch).statistic) \
                if len(scores) > 2 else None
    return out


def length_matched_auc(labels: np.ndarray, scores: np.ndarray, lengths: np.ndarray, groups: np.ndarray,
                       n_strata: int = 5) -> float | None:
    """The AUC inside strata of similar length (each group cut at the quintiles of its pooled lengths), averaged
    with weights = the number of human x model pairs in the stratum; None when no stratum has both classes."""
    total, weight = 0.0, 0
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        edges = np.quantile(lengths[rows], np.linspace(0, 1, n_strata + 1)[1:-1])
        strata = np.searchsorted(edges, lengths[rows], side="right")
        for s in np.unique(strata):
            idx = rows[strata == s]
            n_h, n_m = int((labels[idx] == HUMAN).sum()), int((labels[idx] == MODEL).sum())
            if n_h and n_m:
                total += _auc(labels[idx], scores[idx]) * n_h * n_m
                weight += n_h * n_m
    return total / weight if weight else None


# ---------------------------------------------------------------------------------------------------------------
# The stage


def _check_inputs(config: CriticConfig) -> None:
    data = Path(config.data)
    for need in (data / "records" / f"{config.split}.jsonl", data / "references.json"):
        if not need.exists():
            raise ConfigError(f"{need}: not found (is {data} a `polyalign data build` output?)")
    if config.method == "learned" or config.predictions:
        if not config.predictions:
            raise ConfigError("critic fit needs --predictions (model responses on the split's prompts)")
        for p in config.predictions:
            if not Path(p).exists():
                raise ConfigError(f"{p}: predictions file not found")
    if config.hidden_states_model and config.method != "learned":
        raise ConfigError("hidden_states_model is only used by the learned critic")


def load_split_features(data_dir: Path, split: str, records: Sequence[Any]) -> np.ndarray:
    """The data build's feature rows of `split`, in the order of `records` (error if one is missing)."""
    names = load_feature_names(data_dir)
    if names != linguistic_feature_names():
        raise InputError("the data build's feature columns differ from this version's features; rebuild the data",
                         file=Path(data_dir) / "features" / f"{split}.parquet")
    ids, matrix = load_features(data_dir, split)
    row_of = {rid: i for i, rid in enumerate(ids)}
    missing = [_get(r, "id") for r in records if _get(r, "id") not in row_of]
    if missing:
        raise InputError(f"{len(missing)} record(s) have no feature row, e.g. {missing[0]!r}",
                         file=Path(data_dir) / "features" / f"{split}.parquet")
    return np.asarray(matrix, dtype=np.float64)[[row_of[_get(r, "id")] for r in records]]


def load_bucket_stats(data_dir: Path) -> dict[str, BucketStats]:
    """Per-bucket statistics from the data build's references.json."""
    return bucket_stats_from_references(References.load(Path(data_dir) / "references.json"))


def compute_human_baseline(data_dir: Path, stats: Mapping[str, BucketStats], train_records: Sequence[Any],
                           train_x: np.ndarray, *, k: int = 10, critic: Critic | None = None) -> dict[str, Any]:
    """Distances of held-out (val) human responses to train references, per method (and for `critic`)."""
    val_records = load_records(data_dir, "val")
    val_x = load_split_features(data_dir, "val", val_records)
    val_buckets = np.array([_get(r, "bucket_id") for r in val_records], dtype=object)
    train_buckets = np.array([_get(r, "bucket_id") for r in train_records], dtype=object)
    distance = SupportDistance(stats, group_rows(train_x, train_buckets), k=k)
    out = human_baseline(distance, val_x, val_buckets)
    if critic is not None:
        mask = critic.known(val_buckets.tolist())
        texts = [_get(r, "response") for r in val_records]
        scores = critic.score_features(val_x[mask], val_buckets[mask].tolist(),
                                       texts=[t for t, m in zip(texts, mask) if m])
        kept = val_buckets[mask]
        out["critic"] = {"pooled": summarize(scores),
                         "buckets": {str(b): summarize(scores[kept == b]) for b in np.unique(kept)},
                         "skipped": int((~mask).sum())}
    return out


@dataclass
class CriticInputs:
    """What a critic fit reads: the split's records and human features, the bucket statistics, the assembled
    human-vs-model data, and the hashes of the files read."""

    records: list[Any]
    human_x: np.ndarray
    stats: dict[str, BucketStats]
    data: CriticData
    hashes: dict[str, str]


def load_critic_inputs(config: CriticConfig) -> CriticInputs:
    """Check and read the inputs of a critic fit (records, features, references, predictions)."""
    _check_inputs(config)
    data_dir = Path(config.data)
    records = load_records(data_dir, config.split)
    human_x = load_split_features(data_dir, config.split, records)
    stats = load_bucket_stats(data_dir)
    rows, skipped = read_prediction_rows(config.predictions, {_get(r, "id"): r for r in records},
                                         text_field=config.text_field)
    data = assemble_critic_data(records, human_x, rows, linguistic_features, text_field=config.text_field)
    data.report["skipped_predictions"] = dict(skipped)
    hashes = {"references.json": sha256_file(data_dir / "references.json"),
              f"records/{config.split}.jsonl": sha256_file(data_dir / "records" / f"{config.split}.jsonl")}
    hashes.update({str(p): sha256_file(p) for p in config.predictions})
    return CriticInputs(list(records), human_x, stats, data, hashes)


def fit_critic(config: CriticConfig, *, gate: Callable[[Mapping[str, Any]], None] | None = None) -> Path:
    """Fit the critic described by `config` and write its bundle to config.out; return the bundle path.
    `gate(metrics)` is called before anything is written (it raises to refuse the critic)."""
    started = time.time()
    got = load_critic_inputs(config)
    critic, metrics = fit_critic_data(got.data, got.stats, config, linguistic_feature_names())
    if gate is not None:
        gate(metrics)
    baseline = compute_human_baseline(Path(config.data), got.stats, got.records, got.human_x, k=config.knn_k,
                                      critic=critic) if config.baseline else None
    manifest = make_manifest(stage="critic", config=config.model_dump(mode="json"), inputs=got.hashes,
                             seed=config.seed, started=started)
    return write_bundle(config.out, critic, metrics, manifest, baseline)


def write_bundle(out: str | Path, critic: Critic, metrics: Mapping[str, Any], manifest: Mapping[str, Any],
                 baseline: Mapping[str, Any] | None = None) -> Path:
    """Write a critic bundle directory atomically: critic.pt, critic.json, metrics.json, manifest.json
    (+ baseline.json)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        save_critic_files(critic, tmp)
        write_json(tmp / "metrics.json", metrics)
        if baseline is not None:
            write_json(tmp / "baseline.json", baseline)
        write_json(tmp / "manifest.json", manifest)
    return out


__all__ = ["CriticConfig", "CriticData", "assemble_critic_data", "class_balanced_weights", "evaluate_scores",
           "fit_critic", "fit_critic_data", "read_prediction_rows", "split_by_group", "train_critic_net",
           "compute_human_baseline", "write_bundle"]
