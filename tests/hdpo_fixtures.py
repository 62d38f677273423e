"""Test-only stand-ins for the critic / pairs tests: small record sets drawn from the bundled human data, and
synthetic "model-like" text (shuffled, truncated, repeated) built from it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from polyalign.text import count_length_tokens, length_bin

FAMILY = {"assistant": "assistant", "chitchat": "open_chat", "knowledge_chat": "open_chat", "task": "task",
          "qa_search": "qa", "longform_qa": "longform_qa"}
FILES = ("en_oasst1.jsonl", "en_chitchat_byu.jsonl", "en_xquad.jsonl", "en_stackexchange.jsonl",
         "zh_oasst1.jsonl", "zh_kdconv.jsonl", "zh_crosswoz.jsonl", "zh_cmrc2018.jsonl")


def bundled_records(data_dir: Path, per_file: int = 150, seed: int = 0, coarse: bool = True) -> list[dict[str, Any]]:
    """One record per conversation (its last assistant turn) from several bundled files, with stand-in buckets
    (language|track|family, plus |short|long when coarse=False)."""
    rng = random.Random(seed)
    records = []
    for name in FILES:
        lines = (data_dir / name).read_text(encoding="utf-8").splitlines()
        rng.shuffle(lines)
        for line in lines[:per_file]:
            conv = json.loads(line)
            msgs = conv["messages"]
            response = msgs[-1]["content"]
            track = "multi" if len(msgs) > 2 else "single"
            family = FAMILY[conv["meta"]["track"]]
            lbin = length_bin(count_length_tokens(response), (60,), ("short", "long"))
            key = [conv["lang"], track, family] + ([] if coarse else [lbin])
            alternatives = [{"content": a["content"], "rank": a["rank"]}
                            for a in conv.get("ranked_alternatives", [])]
            records.append({"id": conv["id"], "conversation_id": conv["id"], "language": conv["lang"],
                            "track": track, "family": family, "length_bin": lbin, "bucket_id": "|".join(key),
                            "prompt": msgs[-2]["content"], "response": response, "history": msgs[:-2],
                            "context": "", "alternatives": alternatives})
    return records


def model_like(text: str, language: str, rng: random.Random) -> str:
    """A synthetic model-like response: the human text shuffled, truncated, or repeated."""
    kind = rng.choice(["shuffle", "truncate", "repeat"])
    units = list(text) if language == "zh" else text.split()
    if kind == "shuffle" and len(units) > 2:
        rng.shuffle(units)
        return ("" if language == "zh" else " ").join(units)
    if kind == "truncate" and len(units) > 3:
        return ("" if language == "zh" else " ").join(units[:max(2, len(units) // 4)])
    sentence = text.split("。" if language == "zh" else ". ")[0]
    return (("。" if language == "zh" else ". ").join([sentence] * 4)).strip()


def prediction_rows(records: list[dict[str, Any]], samples: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """predictions.jsonl-shaped rows of synthetic model-like text, `samples` per record."""
    rng = random.Random(seed)
    return [{"id": r["id"], "sample": k, "bucket_id": r["bucket_id"], "language": r["language"],
             "track": r["track"], "family": r["family"], "length_bin": r["length_bin"],
             "prediction": model_like(r["response"], r["language"], rng)}
            for r in records for k in range(samples)]


def human_as_predictions(records: list[dict[str, Any]], donors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose 'model' text is the human response of a donor record of the same bucket (a null critic task)."""
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for d in donors:
        by_bucket.setdefault(d["bucket_id"], []).append(d)
    rows, used = [], {}
    for r in records:
        pool = by_bucket.get(r["bucket_id"])
        if not pool:
            continue
        i = used.get(r["bucket_id"], 0)
        used[r["bucket_id"]] = i + 1
        rows.append({"id": r["id"], "sample": 0, "bucket_id": r["bucket_id"], "language": r["language"],
                     "prediction": pool[i % len(pool)]["response"]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def stats_by_bucket(x: np.ndarray, bucket_ids: list[str]):
    from polyalign.critic.distance import bucket_stats_from_matrix, group_rows

    return {b: bucket_stats_from_matrix(rows) for b, rows in group_rows(x, bucket_ids).items() if len(rows) >= 5}
