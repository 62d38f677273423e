"""Preference pairs for DPO / HDPO: human over model, human-ranked alternatives, and critic-ranked policy samples.

Each pair carries its bucket, the critic distances of chosen and rejected (computed here, once, in one batched
call — never in the trainer) and a weight (bucket rarity and distance gap, clipped, rescaled to mean 1; see
docs/hdpo.md). `load_pairs` validates a pairs.jsonl for the trainer.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .config import StrictModel
from .critic.distance import summarize
from .errors import ConfigError, InputError, PolyAlignError
from .io import atomic_path, iter_jsonl, make_manifest, sha256_file, sha256_tree, write_json, write_jsonl
from .models.chat import prompt_messages
from .text import normalize_text

PAIR_TYPES = ("human_over_model", "human_ranked", "critic_ranked")
PAIR_FIELDS = ("id", "record_id", "pair_type", "bucket_id", "language", "track", "family", "prompt", "chosen",
               "rejected", "d_chosen", "d_rejected", "weight")


class WeightConfig(StrictModel):
    """Pair weights w = clip(1 + alpha * rarity_b + beta_w * max(0, d- - d+), w_min, w_max), rescaled to mean 1."""

    enabled: bool = Field(True, description="false: every pair weighs 1")
    alpha: float = Field(0.5, ge=0, description="weight of the bucket rarity in [0, 1]")
    beta_w: float = Field(1.0, ge=0, description="weight of the distance gap max(0, d- - d+)")
    w_min: float = Field(0.5, gt=0, description="lower clip (before the mean-1 rescale)")
    w_max: float = Field(3.0, gt=0, description="upper clip (before the mean-1 rescale)")

    @model_validator(mode="after")
    def _bounds(self) -> WeightConfig:
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must be <= w_max ({self.w_max})")
        return self


class PairsConfig(StrictModel):
    """`polyalign pairs build` configuration (configs/pairs/pairs.yaml)."""

    data: Path = Field(description="data build directory")
    predictions: list[Path] = Field(default_factory=list,
                                    description="predictions.jsonl of the policy (SFT model) on the split's prompts")
    critic: Path | None = Field(description="critic bundle (polyalign critic fit) giving d_chosen / d_rejected; "
                                            "null: no critic (d = 0 on both sides; needs weights off and no "
                                            "critic_ranked pairs)")
    out: Path = Field(description="output directory (pairs.jsonl, summary.json, manifest.json)")
    types: list[Literal["human_over_model", "human_ranked", "critic_ranked"]] = Field(
        default_factory=lambda: ["human_over_model", "human_ranked"], description="pair types to build")
    split: str = Field("train", description="records to build pairs from")
    profile: bool = Field(False, description="prepend the profile system prompt (language, track, family)")
    text_field: str = Field("prediction", description="field of the predictions rows holding the policy text")
    max_samples_per_record: int | None = Field(None, ge=1, description="human_over_model: use at most this many "
                                                                          "policy samples per record (lowest sample "
                                                                          "index first); null = all")
    max_ranked_pairs_per_record: int = Field(3, ge=1, description="human_ranked: cap of pairs per record")
    critic_ranked_min_gap: float = Field(0.0, ge=0, description="critic_ranked: minimum d(worst) - d(best)")
    unknown_bucket: Literal["skip", "pooled", "error"] = Field(
        "skip", description="records whose bucket the critic has not seen: skip (counted), score with the "
                            "critic's pooled fallback, or stop with an error")
    min_auc: float = Field(0.75, ge=0, le=1, description="refuse a critic whose held-out AUC is lower")
    allow_weak: bool = Field(False, description="use a critic that fails the collapse check anyway")
    weights: WeightConfig = Field(default_factory=WeightConfig, description="pair weights")
    seed: int = Field(0, description="recorded in the manifest (pair building is deterministic)")

    @model_validator(mode="after")
    def _types(self) -> PairsConfig:
        if not self.types:
            raise ValueError("types must name at least one pair type")
        if len(set(self.types)) != len(self.types):
            raise ValueError("types has duplicates")
        if self.critic is None and "critic_ranked" in self.types:
            raise ValueError("critic_ranked pairs need a critic (critic is null)")
        if self.critic is None and self.weights.enabled:
            raise ValueError("pair weights need critic distances: set weights.enabled: false when critic is null")
        return self


# ---------------------------------------------------------------------------------------------------------------
# Weights


def bucket_rarity(bucket_ids: Sequence[str]) -> dict[str, float]:
    """Normalized inverse-frequency gap per bucket: g_b = max(0, N / (B n_b) - 1) / max_b' g_b' in [0, 1]
    (all 0 when the buckets are balanced)."""
    counts = Counter(bucket_ids)
    if not counts:
        return {}
    n_total, n_buckets = sum(counts.values()), len(counts)
    gaps = {b: max(0.0, n_total / (n_buckets * n) - 1.0) for b, n in counts.items()}
    top = max(gaps.values())
    return {b: (g / top if top > 0 else 0.0) for b, g in gaps.items()}


def pair_weights(bucket_ids: Sequence[str], d_chosen: Sequence[float] | np.ndarray,
                 d_rejected: Sequence[float] | np.ndarray, *, alpha: float = 0.5, beta_w: float = 1.0,
                 w_min: float = 0.5, w_max: float = 3.0) -> np.ndarray:
    """w_i = clip(1 + alpha * rarity_{b_i} + beta_w * max(0, d-_i - d+_i), w_min, w_max), then divided by the
    mean over the pair set so that the weights average 1 (the global learning rate is unchanged)."""
    d_chosen = np.asarray(d_chosen, dtype=np.float64)
    d_rejected = np.asarray(d_rejected, dtype=np.float64)
    if not (len(bucket_ids) == len(d_chosen) == len(d_rejected)):
        raise PolyAlignError("pair_weights: bucket_ids, d_chosen and d_rejected differ in length")
    if not len(d_chosen):
        return np.zeros(0)
    if not (np.all(np.isfinite(d_chosen)) and np.all(np.isfinite(d_rejected))):
        raise PolyAlignError("pair_weights: NaN or infinite distance")
    rarity = bucket_rarity(list(bucket_ids))
    r = np.array([rarity[b] for b in bucket_ids])
    w = np.clip(1.0 + alpha * r + beta_w * np.maximum(0.0, d_rejected - d_chosen), w_min, w_max)
    return w / w.mean()


# ---------------------------------------------------------------------------------------------------------------
# Candidates (chosen, rejected) per record


def _get(record: Any, key: str, default: Any = None) -> Any:
    return record.get(key, default) if isinstance(record, dict) else getattr(record, key, default)


def _sample_index(row: Mapping[str, Any]) -> int:
    sample = row.get("sample", 0)
    return sample if isinstance(sample, int) and not isinstance(sample, bool) else 0


def same_text(a: str, b: str) -> bool:
    """Equal after whitespace normalization."""
    return normalize_text(a) == normalize_text(b)


def human_over_model_candidates(response: str, samples: Sequence[str], skipped: Counter) -> list[tuple[str, str]]:
    """(human, sample) for each policy sample, dropping empty samples and samples equal to the human text."""
    out = []
    for sample in samples:
        if not sample.strip():
            skipped["human_over_model:empty_rejected"] += 1
        elif same_text(response, sample):
            skipped["human_over_model:chosen_equals_rejected"] += 1
        else:
            out.append((response, sample))
    return out


def human_ranked_candidates(response: str, alternatives: Sequence[Mapping[str, Any]], max_pairs: int,
                            skipped: Counter) -> list[tuple[str, str, int, int]]:
    """(better, worse, better_rank, worse_rank) from human ranks: the response is rank 0; an alternative equal to
    an earlier item is the same item (its best rank kept); every two items with different ranks give a pair,
    ordered by (better rank, worse rank), at most `max_pairs` per record."""
    items: list[tuple[str, int]] = [(response, 0)]
    for alt in alternatives:
        rank = alt.get("rank")
        content = alt.get("content")
        if not isinstance(rank, int) or isinstance(rank, bool) or not isinstance(content, str) or not content.strip():
            skipped["human_ranked:alternative_without_rank_or_text"] += 1
            continue
        for i, (text, r) in enumerate(items):
            if same_text(text, content):
                items[i] = (text, min(r, rank))
                break
        else:
            items.append((content, rank))
    items.sort(key=lambda it: it[1])
    pairs = [(a, b, ra, rb) for i, (a, ra) in enumerate(items) for b, rb in items[i + 1:] if ra < rb]
    pairs.sort(key=lambda p: (p[2], p[3]))
    if len(pairs) > max_pairs:
        skipped["human_ranked:over_cap"] += len(pairs) - max_pairs
    return pairs[:max_pairs]


def critic_ranked_candidate(samples: Sequence[str], distances: Sequence[float], min_gap: float,
                            skipped: Counter) -> tuple[str, str, float, float] | None:
    """(best, worst, d_best, d_worst) among distinct non-empty policy samples by critic distance, or None."""
    seen: dict[str, tuple[str, float]] = {}
    for text, d in zip(samples, distances):
        if text.strip():
            seen.setdefault(normalize_text(text), (text, float(d)))
    if len(seen) < 2:
        skipped["critic_ranked:fewer_than_2_distinct_samples"] += 1
        return None
    ranked = sorted(seen.values(), key=lambda td: td[1])
    best, worst = ranked[0], ranked[-1]
    if worst[1] - best[1] <= min_gap:
        skipped["critic_ranked:gap_too_small"] += 1
        return None
    return best[0], worst[0], best[1], worst[1]


# ---------------------------------------------------------------------------------------------------------------
# Building


def build_pairs(records: Sequence[Any], prediction_rows: Sequence[Mapping[str, Any]], critic: Any | None,
                config: PairsConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pair rows (see docs/architecture.md) and a summary. `critic` needs `known(bucket_ids)` and
    `score(texts, languages, bucket_ids, unknown=...)`; it is called once for every text of every pair (a
    cross-fitted critic, `scores_by_conversation`, also gets each text's conversation). critic None: every
    distance is 0 (no critic)."""
    skipped: Counter = Counter()
    samples: dict[str, list[str]] = defaultdict(list)
    for row in sorted(prediction_rows, key=lambda r: (r["id"], _sample_index(r))):
        samples[row["id"]].append(row[config.text_field])
    types = set(config.types)
    buckets = [_get(r, "bucket_id") for r in records]
    known = np.asarray(critic.known(buckets), dtype=bool) if critic is not None else np.ones(len(buckets), bool)
    by_conversation = bool(getattr(critic, "scores_by_conversation", False))
    if config.unknown_bucket == "error" and not known.all():
        missing = sorted({b for b, k in zip(buckets, known) if not k})
        raise PolyAlignError(f"bucket(s) unknown to the critic: {missing[:5]} (set unknown_bucket: skip or pooled)")

    # 1. candidate texts per record
    plans: list[tuple[Any, str, list[tuple[Any, ...]]]] = []
    texts_to_score: dict[tuple[str, str, str], int] = {}

    def text_key(text: str, record: Any) -> tuple[str, ...]:
        key = (text, _get(record, "language"), _get(record, "bucket_id"))
        return (*key, _conversation(record)) if by_conversation else key

    def need(text: str, record: Any) -> None:
        key = text_key(text, record)
        texts_to_score.setdefault(key, len(texts_to_score))

    for record, is_known in zip(records, known):
        rid = _get(record, "id")
        if not is_known and config.unknown_bucket == "skip":
            skipped["record_bucket_unknown_to_critic"] += 1
            continue
        response = _get(record, "response")
        record_samples = samples.get(rid, [])
        n_plans = len(plans)
        if "human_over_model" in types:
            use = record_samples if config.max_samples_per_record is None \
                else record_samples[:config.max_samples_per_record]
            cands = human_over_model_candidates(response, use, skipped)
            if cands:
                plans.append((record, "human_over_model", cands))
        if "human_ranked" in types and _get(record, "alternatives"):
            cands = human_ranked_candidates(response, _get(record, "alternatives"),
                                            config.max_ranked_pairs_per_record, skipped)
            if cands:
                plans.append((record, "human_ranked", cands))
        if "critic_ranked" in types and record_samples:
            plans.append((record, "critic_ranked", [tuple(record_samples)]))
        if len(plans) == n_plans:
            continue
        for _, _, cands in plans[n_plans:]:
            for cand in cands:
                for text in cand:
                    if isinstance(text, str) and text.strip():
                        need(text, record)

    # 2. one batched critic call
    keys = list(texts_to_score)
    unknown = "pooled" if config.unknown_bucket == "pooled" else "error"
    extra = {"conversations": [k[3] for k in keys], "seen": "nan"} if by_conversation else {}
    if critic is None or not keys:
        scores = np.zeros(len(keys))
    else:
        scores = critic.score([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], unknown=unknown,
                              **extra)
    scores = np.asarray(scores, dtype=np.float64)
    # a cross-fitted critic gives NaN to a text every member saw: its pairs are dropped below, never scored
    if not np.all(np.isfinite(scores) | (np.isnan(scores) & by_conversation)):
        raise PolyAlignError("the critic produced NaN or infinite distances")
    distance = {k: float(s) for k, s in zip(keys, scores)}

    # 3. rows
    rows: list[dict[str, Any]] = []
    counter: Counter = Counter()
    for record, pair_type, cands in plans:
        lang, bucket = _get(record, "language"), _get(record, "bucket_id")

        def d(text: str, record: Any = record) -> float:
            return distance[text_key(text, record)]

        for cand in cands:
            if pair_type == "critic_ranked":
                usable = [t for t in cand if t.strip() and not math.isnan(d(t))]  # NaN: every critic saw it
                picked = critic_ranked_candidate(usable, [d(t) for t in usable], config.critic_ranked_min_gap,
                                                 skipped)
                if picked is None:
                    continue
                chosen, rejected = picked[0], picked[1]
            else:
                chosen, rejected = cand[0], cand[1]
            if same_text(chosen, rejected):
                skipped[f"{pair_type}:chosen_equals_rejected"] += 1
                continue
            if math.isnan(d(chosen)) or math.isnan(d(rejected)):
                skipped[f"{pair_type}:every_critic_saw_a_text"] += 1
                continue
            k = counter[(_get(record, "id"), pair_type)]
            counter[(_get(record, "id"), pair_type)] += 1
            rows.append({
                "id": f"{_get(record, 'id')}|{pair_type}|{k}", "record_id": _get(record, "id"),
                "pair_type": pair_type, "bucket_id": bucket, "language": lang, "track": _get(record, "track"),
                "family": _get(record, "family"), "prompt": prompt_messages(record, config.profile),
                "chosen": chosen, "rejected": rejected, "d_chosen": d(chosen), "d_rejected": d(rejected),
                "weight": 1.0})

    # 4. weights
    if rows and config.weights.enabled:
        w = pair_weights([r["bucket_id"] for r in rows], [r["d_chosen"] for r in rows],
                         [r["d_rejected"] for r in rows], alpha=config.weights.alpha, beta_w=config.weights.beta_w,
                         w_min=config.weights.w_min, w_max=config.weights.w_max)
        for row, weight in zip(rows, w):
            row["weight"] = float(weight)
    return rows, summarize_pairs(rows, skipped)


def _conversation(record: Any) -> str:
    """The conversation of a record (its own id when it has none), the unit of cross-fitting."""
    return _get(record, "conversation_id") or _get(record, "id")


def summarize_pairs(rows: Sequence[Mapping[str, Any]], skipped: Mapping[str, int]) -> dict[str, Any]:
    """Pairs per type and bucket, weight statistics, distance-gap statistics, skip counts."""
    weights = np.array([r["weight"] for r in rows], dtype=np.float64)
    gap = np.array([r["d_rejected"] - r["d_chosen"] for r in rows], dtype=np.float64)
    out: dict[str, Any] = {
        "n_pairs": len(rows),
        "by_type": dict(sorted(Counter(r["pair_type"] for r in rows).items())),
        "by_bucket": dict(sorted(Counter(r["bucket_id"] for r in rows).items())),
        "weight": ({"min": float(weights.min()), "mean": float(weights.mean()), "max": float(weights.max()),
                    "std": float(weights.std())} if len(rows) else {}),
        "d_gap": summarize(gap) if len(rows) else {},
        "share_chosen_closer": float((gap > 0).mean()) if len(rows) else None,
        "skipped": dict(sorted(skipped.items())),
    }
    by_type_gap = defaultdict(list)
    for r, g in zip(rows, gap):
        by_type_gap[r["pair_type"]].append(g)
    out["d_gap_by_type"] = {t: summarize(np.array(v)) for t, v in sorted(by_type_gap.items())}
    return out


def build_pairs_stage(config: PairsConfig) -> tuple[Path, dict[str, Any]]:
    """`polyalign pairs build`: read records, predictions and the critic; write pairs.jsonl, summary.json and
    manifest.json to config.out atomically. Returns (out dir, summary)."""
    # deferred: the trainers import this module for load_pairs; the critic (torch + sklearn, 3.9 s measured)
    # is needed only when pairs are built
    from .critic.fit import read_prediction_rows
    from .critic.model import load_critic
    from .data.build import load_records

    started = time.time()
    data = Path(config.data)
    records_file = data / "records" / f"{config.split}.jsonl"
    if not records_file.exists():
        raise ConfigError(f"{records_file}: not found (is {data} a `polyalign data build` output?)")
    needs_samples = {"human_over_model", "critic_ranked"} & set(config.types)
    if needs_samples and not config.predictions:
        raise ConfigError(f"pair types {sorted(needs_samples)} need --predictions (policy samples)")
    for p in config.predictions:
        if not Path(p).exists():
            raise ConfigError(f"{p}: predictions file not found")
    critic = None if config.critic is None else load_critic(config.critic, min_auc=config.min_auc,
                                                             allow_weak=config.allow_weak)
    records = load_records(data, config.split)
    by_id = {_get(r, "id"): r for r in records}
    prediction_rows, skipped_rows = read_prediction_rows(config.predictions, by_id, text_field=config.text_field)
    rows, summary = build_pairs(records, prediction_rows, critic, config)
    summary["skipped"].update({f"predictions:{k}": v for k, v in skipped_rows.items()})
    if not rows:
        raise PolyAlignError(f"no pairs were built (skipped: {summary['skipped']})")
    inputs = {str(records_file): sha256_file(records_file)}
    if config.critic is not None:
        single = Path(config.critic) / "critic.pt"
        inputs["critic/critic.pt" if single.exists() else "critic"] = sha256_file(single) if single.exists() \
            else sha256_tree(config.critic)
    inputs.update({str(p): sha256_file(p) for p in config.predictions})
    out = Path(config.out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        write_jsonl(tmp / "pairs.jsonl", rows)
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "manifest.json", make_manifest(
            stage="pairs", config=config.model_dump(mode="json"), inputs=inputs, seed=config.seed, started=started,
            extra={"critic_method": critic.method if critic else None,
                   "critic_heldout_auc": critic.metrics.get("heldout_auc") if critic else None}))
    return out, summary


# ---------------------------------------------------------------------------------------------------------------
# Reading pairs (for the trainer)


def validate_pair_row(row: Any, *, file: str | Path | None = None, line: int | None = None) -> dict[str, Any]:
    """Check one pairs.jsonl row; raise InputError naming file, line and field."""
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", file=file, line=line)
    for name in ("id", "record_id", "bucket_id", "chosen", "rejected"):
        if not isinstance(row.get(name), str):
            raise InputError("missing or non-string field", file=file, line=line, field=name)
    if row.get("pair_type") not in PAIR_TYPES:
        raise InputError(f"pair_type must be one of {PAIR_TYPES}", file=file, line=line, field="pair_type")
    for name in ("chosen", "rejected"):
        if not row[name].strip():
            raise InputError("empty text", file=file, line=line, field=name)
    if same_text(row["chosen"], row["rejected"]):
        raise InputError("chosen and rejected are the same text", file=file, line=line, field="rejected")
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt):
        raise InputError("must be a non-empty list of {role, content} messages", file=file, line=line,
                         field="prompt")
    for name in ("d_chosen", "d_rejected", "weight"):
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError("missing, non-numeric, NaN or infinite value", file=file, line=line, field=name)
    if row["weight"] <= 0:
        raise InputError("weight must be > 0", file=file, line=line, field="weight")
    return row


def load_pairs(path: str | Path, *, skip_invalid: bool = False) -> tuple[list[dict[str, Any]], Counter]:
    """Validated rows of a pairs.jsonl (see validate_pair_row): by default the first bad row is an error; with
    skip_invalid, bad rows are skipped and counted by field. Returns (rows, skip counts)."""
    rows: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for line, obj in iter_jsonl(path):
        try:
            rows.append(validate_pair_row(obj, file=path, line=line))
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped[exc.field or "row"] += 1
    return rows, skipped
