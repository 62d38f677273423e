"""Synthetic preference pairs and trainer builders for the HDPO trainer tests (tiny local model, no bundled data).

`make_pair_rows(n, seed)` gives valid pairs.jsonl rows: prompt = the record's chat messages, chosen = its
response, rejected = the response of another record of the same language, distances and weights that differ
from pair to pair.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from records_factory import make_records

from polyalign.models.chat import prompt_messages


def make_pair_rows(n: int = 32, seed: int = 0, uniform_weights: bool = False) -> list[dict[str, Any]]:
    """`n` pairs.jsonl rows over the synthetic records' buckets (deterministic for n, seed)."""
    rng = random.Random(seed)
    records = make_records(n + 8, seed=seed)
    rows = []
    for i, record in enumerate(records[:n]):
        donors = [r for r in records if r.language == record.language and r.response != record.response]
        rejected = rng.choice(donors).response
        rows.append({
            "id": f"pair-{seed}-{i:04d}", "record_id": record.id, "pair_type": "human_over_model",
            "bucket_id": record.bucket_id, "language": record.language, "track": record.track,
            "family": record.family, "prompt": prompt_messages(record), "chosen": record.response,
            "rejected": rejected, "d_chosen": round(rng.uniform(0.0, 1.0), 4),
            "d_rejected": round(rng.uniform(0.5, 3.0), 4),
            "weight": 1.0 if uniform_weights else round(rng.uniform(0.5, 2.5), 4)})
    return rows


def write_pairs(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_dataset(rows: list[dict[str, Any]], tokenizer: Any, max_length: int = 96):
    """(Dataset, bucket names, language names) for the trainer, built like run_hdpo builds it."""
    from datasets import Dataset

    from polyalign.train.hdpo import build_pair_examples

    buckets = sorted({r["bucket_id"] for r in rows})
    languages = sorted({r["language"] for r in rows})
    examples, _ = build_pair_examples(rows, tokenizer, {b: i for i, b in enumerate(buckets)},
                                      {lang: i for i, lang in enumerate(languages)}, max_length=max_length,
                                      min_prompt_tokens=16)
    return Dataset.from_list(examples), buckets, languages
