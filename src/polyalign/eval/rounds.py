"""The per-round table of a multi-round preference method (stage rounds_<method>): for the policy entering each
round (and the last round's model), its round's critic AUC with and without length features and length-matched,
the mean critic distance of its samples against the humans' of the same prompts, the closed-form Mahalanobis
distances, and its output length against the humans' per context group. Written as rounds.json, rounds.md and
rounds.png (eval/rounds_plot.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import ROUNDS_PLOT
from ..critic.distance import SupportDistance
from ..critic.featurize import linguistic_feature_names, linguistic_features
from ..critic.fit import load_bucket_stats, load_split_features, read_prediction_rows
from ..critic.model import load_critic
from ..data.build import load_records
from ..errors import PolyAlignError
from ..io import read_json, write_json, write_text
from .tables import fmt, md_table

CRITIC_COLUMNS = ("heldout_auc", "heldout_auc_without_length", "heldout_auc_length_matched",
                  "heldout_auc_length_only", "distance_length_mismatch_spearman")


@dataclass(frozen=True)
class RoundInput:
    """One row: the round, the policy that wrote the samples, its samples file, and the round's critic (None
    for the last round's model or a method without a critic); critic_in_sample: that critic was fitted on
    these very samples (round 1, or no cross-fitting), so its distances are in-sample."""

    round: int
    policy: str
    samples: Path
    critic: Path | None
    critic_in_sample: bool


def length_by_group(model_lengths: Sequence[float], model_groups: Sequence[str], human_lengths: Sequence[float],
                    human_groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per group: mean model and human length, their counts and the ratio model / human (None when a side
    is empty or the human mean is 0)."""
    out: dict[str, dict[str, Any]] = {}
    model_lengths, human_lengths = np.asarray(model_lengths, float), np.asarray(human_lengths, float)
    model_groups, human_groups = np.asarray(model_groups, object), np.asarray(human_groups, object)
    for g in sorted(set(model_groups.tolist()) | set(human_groups.tolist())):
        m, h = model_lengths[model_groups == g], human_lengths[human_groups == g]
        mean_m = float(m.mean()) if len(m) else None
        mean_h = float(h.mean()) if len(h) else None
        out[str(g)] = {"model": mean_m, "human": mean_h, "n_model": int(len(m)), "n_human": int(len(h)),
                       "ratio": mean_m / mean_h if mean_m is not None and mean_h else None}
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def round_row(item: RoundInput, records_by_id: Mapping[str, Any], human_x: Mapping[str, np.ndarray],
              stats: Mapping[str, Any], context_key: Sequence[str]) -> dict[str, Any]:
    """The row of one round (see the module docstring)."""
    rows, _ = read_prediction_rows([item.samples], records_by_id)
    if not rows:
        raise PolyAlignError(f"{item.samples}: no samples for train records")
    records = [records_by_id[r["id"]] for r in rows]
    texts = [r["prediction"] for r in rows]
    languages = [r.language for r in records]
    buckets = [r.bucket_id for r in records]
    x = linguistic_features(texts, languages)
    human_records = list({r.id: r for r in records}.values())  # the humans of the same prompts, once each
    hx = np.stack([human_x[r.id] for r in human_records])
    h_buckets = [r.bucket_id for r in human_records]
    names = linguistic_feature_names()
    j = names.index("length_tokens")
    row: dict[str, Any] = {"round": item.round, "policy": item.policy, "n_samples": len(rows),
                           "critic": str(item.critic) if item.critic else None,
                           "critic_in_sample": item.critic_in_sample if item.critic else None}
    if item.critic is not None:
        metrics = read_json(Path(item.critic) / "metrics.json")
        row.update({f"critic_{k.removeprefix('heldout_')}": metrics.get(k) for k in CRITIC_COLUMNS})
        row["critic_min_auc"] = metrics.get("min_auc")
        critic = load_critic(item.critic, allow_weak=True)
        extra = {"conversations": [r.conversation_id for r in records]} \
            if getattr(critic, "scores_by_conversation", False) else {}
        h_extra = {"conversations": [r.conversation_id for r in human_records]} if extra else {}
        row["mean_distance"] = _mean(critic.score_features(x, buckets, texts=texts, unknown="pooled", **extra))
        row["mean_distance_human"] = _mean(critic.score_features(
            hx, h_buckets, texts=[r.response for r in human_records], unknown="pooled", **h_extra))
    else:
        row.update({f"critic_{k.removeprefix('heldout_')}": None for k in CRITIC_COLUMNS})
        row["critic_min_auc"] = None
        row["mean_distance"] = row["mean_distance_human"] = None
    closed = SupportDistance(stats)
    known, h_known = closed.known(buckets, "mahalanobis"), closed.known(h_buckets, "mahalanobis")
    row["mahalanobis"] = _mean(closed.compute("mahalanobis", x[known], np.array(buckets, object)[known]))
    row["mahalanobis_human"] = _mean(closed.compute("mahalanobis", hx[h_known],
                                                    np.array(h_buckets, object)[h_known]))
    group = ["|".join(str(getattr(r, f)) for f in context_key) for r in records]
    h_group = ["|".join(str(getattr(r, f)) for f in context_key) for r in human_records]
    row["length_tokens"] = _mean(x[:, j])
    row["length_tokens_human"] = _mean(hx[:, j])
    row["length_by_context"] = length_by_group(x[:, j], group, hx[:, j], h_group)
    return row


def rounds_table(items: Sequence[RoundInput], data_dir: str | Path, *, context_key: Sequence[str],
                 method: str) -> dict[str, Any]:
    """The table of every round of one method."""
    data_dir = Path(data_dir)
    records = load_records(data_dir, "train")
    features = load_split_features(data_dir, "train", records)
    human_x = {r.id: features[i] for i, r in enumerate(records)}
    records_by_id = {r.id: r for r in records}
    stats = load_bucket_stats(data_dir)
    rows = [round_row(item, records_by_id, human_x, stats, context_key) for item in items]
    return {"method": method, "context_key": list(context_key), "rows": rows,
            "notes": {"round k": "samples of the policy entering round k (k = K + 1: the last round's model), "
                                 "scored by round k's critic",
                      "critic_in_sample": "true: that critic was fitted on these samples (round 1, or "
                                          "cross_fit: 1); false: out-of-fold scores (cross-fitted)",
                      "length": "length_tokens (the data build's length unit), samples vs the humans of the "
                                "same prompts"}}


COLUMNS = (("round", "round"), ("policy", "policy"), ("critic_auc", "AUC"),
           ("critic_auc_without_length", "AUC w/o length"), ("critic_auc_length_matched", "AUC length-matched"),
           ("critic_auc_length_only", "AUC length only"), ("mean_distance", "d model"),
           ("mean_distance_human", "d human"), ("critic_in_sample", "d in-sample"),
           ("mahalanobis", "Mahalanobis model"), ("mahalanobis_human", "Mahalanobis human"),
           ("length_tokens", "length model"), ("length_tokens_human", "length human"))


def table_rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the per-round table (one row per round), for rounds.md and the report."""
    return [c[1] for c in COLUMNS], [[fmt(row.get(c[0])) for c in COLUMNS] for row in table["rows"]]


def length_rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of output length per context group, 'model / human' cells."""
    return seed_length_rows([table])


SEED_COLUMNS = tuple(c for c in COLUMNS if c[0] not in ("round", "policy", "critic_in_sample"))


def seed_rounds_rows(tables: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one method's per-round table over several seeds (one table per seed, same rounds):
    each numeric cell 'mean ± sd' over the seeds that have it (sd with ddof 1; the mean alone for one seed),
    and the number of seeds."""
    if not tables:
        raise PolyAlignError("no per-round tables to combine")
    rounds = [[row["round"] for row in t["rows"]] for t in tables]
    if any(r != rounds[0] for r in rounds):
        raise PolyAlignError(f"the seeds' per-round tables have different rounds: {rounds}")
    header = ["round", "policy", *(c[1] for c in SEED_COLUMNS), "seeds"]
    rows = []
    for i, k in enumerate(rounds[0]):
        cells = [str(k), str(tables[0]["rows"][i]["policy"])]
        for key, _ in SEED_COLUMNS:
            values = np.array([t["rows"][i].get(key) for t in tables if t["rows"][i].get(key) is not None], float)
            if len(values) == 0:
                cells.append(fmt(None))
            elif len(values) == 1:
                cells.append(fmt(float(values[0])))
            else:
                cells.append(f"{fmt(float(values.mean()))} ± {fmt(float(values.std(ddof=1)))}")
        rows.append([*cells, str(len(tables))])
    return header, rows


def seed_length_rows(tables: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of output length per context group over several seeds: 'model / human' cells, each side
    the mean over the seeds that have it."""
    groups = sorted({g for t in tables for row in t["rows"] for g in row["length_by_context"]})
    rows = []
    for i, row in enumerate(tables[0]["rows"]):
        cells = []
        for g in groups:
            sides = []
            for side in ("model", "human"):
                values = [v for t in tables if (v := t["rows"][i]["length_by_context"].get(g, {}).get(side))
                          is not None]
                sides.append(fmt(float(np.mean(values))) if values else fmt(None))
            cells.append(" / ".join(sides))
        rows.append([str(row["round"]), *cells])
    return ["round", *groups], rows


def rounds_markdown(table: Mapping[str, Any]) -> str:
    """rounds.md: the plot, one line per round, then output length per context group."""
    lines = [f"# Rounds: {table['method']}", "", f"![per-round critic AUC, distances and lengths]({ROUNDS_PLOT})",
             "",
             md_table(*table_rows(table)), "",
             f"## Output length per context group ({'|'.join(table['context_key'])}): model / human", "",
             md_table(*length_rows(table))]
    return "\n".join(lines) + "\n"


def write_rounds_table(out: str | Path, items: Sequence[RoundInput], data_dir: str | Path, *,
                       context_key: Sequence[str], method: str) -> Path:
    """Compute the table and write rounds.json, rounds.md and rounds.png into `out` (the pipeline's partial
    folder: the stage appears only when all are written)."""
    from .rounds_plot import write_rounds_plot  # matplotlib only when the table is written

    table = rounds_table(items, data_dir, context_key=context_key, method=method)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "rounds.json", table)
    write_text(out / "rounds.md", rounds_markdown(table))
    write_rounds_plot(table, out / ROUNDS_PLOT)
    return out
