"""Cross-fitted critics: a pair's critic distances come from a critic that never saw its texts.

The conversations of the critic's data are dealt into `n_folds` folds (seeded). Member j is a learned critic
fitted (by `fit_critic_data`, with its own held-out split) on every row outside fold j, so it never saw a
conversation of fold j. A row whose text (after whitespace normalization) occurs in two folds would be seen by
every member, so such rows are left out of every member's data (and counted). A text is scored by the members
that saw neither its conversation nor the text itself; when several qualify (a new text: all of them) the score
is their maximum, the conservative choice for a distance the policy is rewarded to lower (with two members the
maximum is mean + standard deviation). A text no member is blind to (in the bundled OASST data an alternative
response of one branch can be the response of a sibling branch, another conversation) is never scored in-sample:
an error, or NaN for the caller to drop (pairs build drops and counts those pairs).

The bundle is a folder: members/<j>/ (a plain critic bundle each), crossfit.json (folds, the texts each member
saw), metrics.json (out-of-fold metrics: every row scored by the member blind to it), manifest.json.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..errors import ConfigError, PolyAlignError
from ..io import atomic_path, make_manifest, read_json, write_json
from ..text import normalize_text
from .featurize import linguistic_feature_names
from .fit import CriticConfig, CriticData, _auc, evaluate_scores, fit_critic, fit_critic_data, length_matched_auc, \
    load_critic_inputs
from .model import DEFAULT_MIN_AUC, DEFAULT_MIN_SCORE_STD, Critic, critic_weakness, load_critic, save_critic_files, \
    text_features

CROSSFIT_FILE = "crossfit.json"
CROSSFIT_FORMAT = 1
AGGREGATE = "max"


def text_key(text: str) -> str:
    """The identity of a text for "has this critic seen it": a hash of its whitespace-normalized form."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:20]


def assign_folds(conversations: Sequence[str], n_folds: int, seed: int) -> dict[str, int]:
    """Conversation -> fold: the sorted distinct conversations in a seeded order, dealt round-robin (fold sizes
    differ by at most one)."""
    if n_folds < 2:
        raise PolyAlignError(f"cross-fitting needs at least 2 folds, got {n_folds}")
    unique = sorted(set(conversations))
    if len(unique) < n_folds:
        raise PolyAlignError(f"{len(unique)} conversation(s) cannot be split into {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i]: position % n_folds for position, i in enumerate(order)}


def member_rows(fold_of_row: np.ndarray, keys: Sequence[str], n_folds: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(rows member j trains on, for each j; rows left out of every member because their text occurs in two
    folds). Member j takes the rows outside fold j whose text occurs in one fold only."""
    folds_of_text: dict[str, set[int]] = {}
    for key, fold in zip(keys, fold_of_row.tolist()):
        folds_of_text.setdefault(key, set()).add(fold)
    shared = np.array([len(folds_of_text[k]) > 1 for k in keys], dtype=bool)
    return [(fold_of_row != j) & ~shared for j in range(n_folds)], shared


class CrossFitCritic:
    """Members fitted on complementary folds behind the critic interface; `score(..., conversations=...)`
    uses only the members blind to each text (see the module docstring)."""

    scores_by_conversation = True

    def __init__(self, members: Sequence[Critic], fold_of: Mapping[str, int], seen: Sequence[set[str]],
                 metrics: Mapping[str, Any] | None = None):
        if len(members) != len(seen) or len(members) < 2:
            raise PolyAlignError("a cross-fitted critic needs at least 2 members, each with the texts it saw")
        self.members = list(members)
        self.fold_of = dict(fold_of)
        self.seen = [set(s) for s in seen]
        self.metrics = dict(metrics or {})
        self.method = f"crossfit-{self.members[0].method}"
        self.feature_names = self.members[0].feature_names
        self.featurizer = self.members[0].featurizer

    def known(self, bucket_ids: Sequence[str]) -> np.ndarray:
        """Buckets every member has seen."""
        return np.logical_and.reduce([m.known(bucket_ids) for m in self.members])

    def blind_members(self, text: str, conversation: str | None) -> list[int]:
        """The members that saw neither this conversation nor this text."""
        key = text_key(text)
        fold = self.fold_of.get(conversation) if conversation is not None else None
        # member j trained on every fold but j: it saw conversation c unless c is in fold j
        return [j for j in range(len(self.members))
                if (fold is None or fold == j) and key not in self.seen[j]]

    def score_features(self, x: np.ndarray, bucket_ids: Sequence[str], *, texts: Sequence[str] | None = None,
                       unknown: str = "error", conversations: Sequence[str | None] | None = None,
                       seen: str = "error") -> np.ndarray:
        """Distances: for each row the max over the members blind to it (texts are required: they decide which
        members saw a row). A row no member is blind to is an error, or NaN with seen="nan"."""
        if seen not in ("error", "nan"):
            raise PolyAlignError(f"seen must be 'error' or 'nan', got {seen!r}")
        if texts is None:
            raise PolyAlignError("a cross-fitted critic needs the texts to know which members saw them")
        if conversations is None:
            conversations = [None] * len(texts)
        if not (len(x) == len(bucket_ids) == len(texts) == len(conversations)):
            raise PolyAlignError("score_features: features, bucket ids, texts and conversations differ in length")
        if not len(texts):
            return np.zeros(0)
        all_scores = np.stack([m.score_features(x, list(bucket_ids), texts=list(texts), unknown=unknown)
                               for m in self.members])
        out = np.empty(len(texts), dtype=np.float64)
        for i, (text, conversation) in enumerate(zip(texts, conversations)):
            blind = self.blind_members(text, conversation)
            if not blind and seen == "nan":
                out[i] = np.nan
                continue
            if not blind:
                raise PolyAlignError(f"no member of the cross-fitted critic is blind to text {i} (conversation "
                                     f"{conversation!r}): it would be scored in-sample")
            out[i] = all_scores[blind, i].max()
        return out

    def score(self, texts: Sequence[str], languages: Sequence[str], bucket_ids: Sequence[str], *,
              unknown: str = "error", conversations: Sequence[str | None] | None = None,
              seen: str = "error") -> np.ndarray:
        """Distances of texts (features computed once); `conversations` names each text's conversation (None:
        a new text, scored by every member that did not see it); `seen` as in score_features."""
        x = text_features(self.featurizer, texts, languages, bucket_ids)
        if x is None:
            return np.zeros(0)
        return self.score_features(x, list(bucket_ids), texts=list(texts), unknown=unknown,
                                   conversations=conversations, seen=seen)


# ---------------------------------------------------------------------------------------------------------------
# Fitting


def fit_crossfit_data(data: CriticData, stats: Mapping[str, Any], config: CriticConfig, feature_names: Sequence[str],
                      n_folds: int) -> tuple[CrossFitCritic, dict[str, Any]]:
    """Fit the members on `data` and measure the ensemble out of fold; returns (critic, metrics)."""
    if config.method != "learned":
        raise ConfigError(f"cross-fitting fits learned critics (method: learned), not {config.method!r}")
    fold_of = assign_folds(data.groups.tolist(), n_folds, config.seed)
    fold_of_row = np.array([fold_of[g] for g in data.groups.tolist()], dtype=np.int64)
    keys = [text_key(t) for t in data.texts]
    masks, shared = member_rows(fold_of_row, keys, n_folds)
    members, member_metrics, seen = [], [], []
    for j, mask in enumerate(masks):
        critic, metrics = fit_critic_data(data.subset(mask), stats, config, feature_names)
        members.append(critic)
        member_metrics.append(metrics)
        seen.append({k for k, m in zip(keys, mask) if m})
    ensemble = CrossFitCritic(members, fold_of, seen)
    scored = ~shared  # every other row has exactly one blind member: the one of its fold
    rows = data.subset(scored)
    oof = ensemble.score_features(rows.x, rows.bucket_ids.tolist(), texts=rows.texts, unknown="pooled",
                                  conversations=rows.groups.tolist())
    metrics = evaluate_scores(oof, rows.labels, rows.languages, rows.tracks, rows.bucket_ids)
    metrics.update(out_of_fold_length_diagnostics(rows, oof, stats, feature_names))
    without = [m.get("heldout_auc_without_length") for m in member_metrics]
    metrics["heldout_auc_without_length"] = float(np.mean(without)) if all(v is not None for v in without) else None
    metrics.update({
        "method": config.method, "min_auc": config.min_auc, "min_score_std": config.min_score_std,
        "data": data.report,
        "crossfit": {"n_folds": n_folds, "aggregate": AGGREGATE, "unit": "conversation",
                     "n_rows": int(len(data)), "n_rows_shared_text_left_out": int(shared.sum()),
                     "heldout_auc": "out of fold: every row scored by the member that never saw it",
                     "heldout_auc_without_length": "mean over the members, each on its own held-out rows"},
        "members": [{k: m.get(k) for k in ("heldout_auc", "within_bucket_auc", "heldout_auc_without_length",
                                           "heldout_auc_length_matched", "n_fit", "passes_collapse_check")}
                    for m in member_metrics]})
    weakness = critic_weakness(metrics, min_auc=config.min_auc, min_score_std=config.min_score_std)
    metrics["passes_collapse_check"] = weakness is None
    metrics["weakness"] = weakness
    ensemble.metrics = metrics
    return ensemble, metrics


def out_of_fold_length_diagnostics(rows: CriticData, scores: np.ndarray, stats: Mapping[str, Any],
                                   feature_names: Sequence[str]) -> dict[str, Any]:
    """Length-matched AUC, length-only AUC and the distance-length-mismatch rank correlation of out-of-fold
    scores (as fit.length_diagnostics, on the rows of known buckets)."""
    if "length_tokens" not in feature_names:
        return {}
    j = list(feature_names).index("length_tokens")
    known = np.array([b in stats for b in rows.bucket_ids])
    if not known.any():
        return {}
    mismatch = np.array([abs(v - stats[b].q50[j]) / max(float(stats[b].scale[j]), 1e-9)
                         for v, b in zip(rows.x[known, j], rows.bucket_ids[known])])
    s, labels = scores[known], rows.labels[known]
    return {"heldout_auc_length_only": _auc(labels, mismatch),
            "heldout_auc_length_matched": length_matched_auc(labels, s, rows.x[known, j], rows.bucket_ids[known]),
            "distance_length_mismatch_spearman": float(spearmanr(s, mismatch).statistic) if len(s) > 2 else None}


def fit_round_critic(config: CriticConfig, n_folds: int, *,
                     gate: Callable[[Mapping[str, Any]], None] | None = None) -> Path:
    """`fit_critic` with `n_folds` cross-fitted members (n_folds = 1: the plain critic); returns the bundle.
    `gate(metrics)` (the out-of-fold metrics) is called before anything is written; it raises to refuse."""
    if n_folds == 1:
        return fit_critic(config, gate=gate)
    started = time.time()
    got = load_critic_inputs(config)
    critic, metrics = fit_crossfit_data(got.data, got.stats, config, linguistic_feature_names(), n_folds)
    if gate is not None:
        gate(metrics)
    manifest = make_manifest(stage="critic", config=config.model_dump(mode="json"), inputs=got.hashes,
                             seed=config.seed, started=started, extra={"cross_fit": n_folds})
    return write_crossfit_bundle(config.out, critic, metrics, manifest)


def write_crossfit_bundle(out: str | Path, critic: CrossFitCritic, metrics: Mapping[str, Any],
                          manifest: Mapping[str, Any]) -> Path:
    """Write a cross-fitted bundle atomically (members/<j>/, crossfit.json, metrics.json, manifest.json)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        for j, member in enumerate(critic.members):
            save_critic_files(member, tmp / "members" / str(j))
            write_json(tmp / "members" / str(j) / "metrics.json", member.metrics)
        write_json(tmp / CROSSFIT_FILE, {"format": CROSSFIT_FORMAT, "aggregate": AGGREGATE,
                                         "n_folds": len(critic.members), "fold_of": critic.fold_of,
                                         "seen": [sorted(s) for s in critic.seen]})
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "manifest.json", manifest)
    return out


def load_crossfit_critic(path: str | Path, *, min_auc: float = DEFAULT_MIN_AUC,
                         min_score_std: float = DEFAULT_MIN_SCORE_STD, allow_weak: bool = False) -> CrossFitCritic:
    """Load a cross-fitted bundle; refuses a weak one (by its out-of-fold metrics) unless allow_weak."""
    path = Path(path)
    spec = read_json(path / CROSSFIT_FILE)
    if spec.get("format") != CROSSFIT_FORMAT or spec.get("aggregate") != AGGREGATE:
        raise PolyAlignError(f"{path}/{CROSSFIT_FILE}: unsupported format {spec.get('format')!r}")
    metrics = read_json(path / "metrics.json")
    if not allow_weak:
        reason = critic_weakness(metrics, min_auc=min_auc, min_score_std=min_score_std)
        if reason:
            raise PolyAlignError(f"refusing the critic at {path}: {reason}. Pass allow_weak to use it anyway")
    members = [load_critic(path / "members" / str(j), allow_weak=True) for j in range(spec["n_folds"])]
    return CrossFitCritic(members, spec["fold_of"], [set(s) for s in spec["seen"]], metrics)


def is_crossfit_bundle(path: str | Path) -> bool:
    """True for a folder written by `write_crossfit_bundle`."""
    return (Path(path) / CROSSFIT_FILE).exists()
