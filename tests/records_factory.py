"""Synthetic bilingual PolyAlign records for unit tests (no bundled data needed).

`make_records(n, seed)` returns `n` valid `Record`s spread over buckets of very different sizes: English and
Chinese, single- and multi-turn, several families and length bins, some with a context passage and some with
human-ranked alternatives. The same (n, seed) always gives the same records.

`write_data_dir(root, splits)` writes records the way `polyalign data build` lays them out
(`records/{split}.jsonl` plus a small `buckets.json` and `manifest.json`), for tests of commands that take a data
directory.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from polyalign.data.schema import Record
from polyalign.text import count_length_tokens, length_bin

EN_WORDS = ("the time people often think about coffee beans water quantum state small city weather music "
            "train ticket morning evening because really maybe sure great idea book movie friend school "
            "answer question reason simple always never today tomorrow garden river mountain station hotel "
            "price cheap nice warm cold fast slow learn teach cook bread machine model data light").split()
ZH_CHARS = ("我你他她们的是了在有不这那个人们说就都和也很到要会去看想好天时候电影音乐火车票城市天气咖啡"
            "学习老师问题回答因为所以可能今天明天朋友书店酒店价格便宜温暖寒冷快慢做饭面包机器模型数据山河")
EN_FILLERS = ("Sure,", "Well,", "Honestly,", "I think", "Yes,", "Hmm,")
ZH_FILLERS = ("好的，", "嗯，", "其实", "我觉得", "是的，", "哈哈，")

# (language, track, family, relative weight, response length range in length-rule tokens, has context)
BUCKET_SPECS: tuple[tuple[str, str, str, float, tuple[int, int], bool], ...] = (
    ("en", "multi", "open_chat", 0.30, (4, 30), False),
    ("zh", "multi", "task", 0.22, (6, 35), False),
    ("en", "single", "assistant", 0.14, (60, 200), False),
    ("zh", "single", "qa", 0.12, (2, 12), True),
    ("en", "single", "longform_qa", 0.08, (130, 300), False),
    ("zh", "multi", "assistant", 0.07, (40, 140), False),
    ("en", "single", "qa", 0.05, (1, 8), True),
    ("zh", "single", "assistant", 0.02, (150, 320), False),
)


def _en_text(rng: random.Random, n_tokens: int) -> str:
    words: list[str] = []
    while len(words) < n_tokens:
        sentence = [rng.choice(EN_WORDS) for _ in range(rng.randint(3, 12))]
        sentence[0] = sentence[0].capitalize()
        words.extend(sentence)
        words[-1] += rng.choice((".", ".", "?", "!"))
    text = " ".join(words)
    if rng.random() < 0.3:
        text = f"{rng.choice(EN_FILLERS)} {text[0].lower()}{text[1:]}"
    return text


def _zh_text(rng: random.Random, n_tokens: int) -> str:
    parts: list[str] = []
    count = 0
    while count < n_tokens:
        k = rng.randint(4, 16)
        parts.append("".join(rng.choice(ZH_CHARS) for _ in range(k)) + rng.choice(("。", "，", "？", "！")))
        count += k + 1
    text = "".join(parts)
    if rng.random() < 0.3:
        text = rng.choice(ZH_FILLERS) + text
    return text


def _text(rng: random.Random, language: str, n_tokens: int) -> str:
    return _en_text(rng, n_tokens) if language == "en" else _zh_text(rng, n_tokens)


def _counts(n: int, weights: Sequence[float]) -> list[int]:
    """Split n over buckets by weight; every bucket gets at least 1 when n allows."""
    raw = [max(1, int(round(n * w))) for w in weights]
    while sum(raw) > n:
        raw[raw.index(max(raw))] -= 1
    while sum(raw) < n:
        raw[0] += 1
    return raw


def make_records(n: int = 64, seed: int = 0, split: str = "train") -> list[Record]:
    """`n` synthetic, valid records over 8 buckets of very different sizes (EN and ZH, single and multi-turn),
    deterministic for (n, seed). Lengths and bins follow `polyalign.text`; `bucket_id` is
    language|track|family|length_bin."""
    rng = random.Random(f"{seed}-{split}")
    weights = [spec[3] for spec in BUCKET_SPECS]
    records: list[Record] = []
    for (language, track, family, _, (lo, hi), has_context), count in zip(BUCKET_SPECS, _counts(n, weights)):
        for _ in range(count):
            idx = len(records)
            history: list[dict[str, str]] = []
            if track == "multi":
                for _ in range(rng.randint(1, 3)):
                    history.append({"role": "user", "content": _text(rng, language, rng.randint(3, 25))})
                    history.append({"role": "assistant", "content": _text(rng, language, rng.randint(3, 25))})
            context = _text(rng, language, rng.randint(40, 90)) if has_context else ""
            prompt = _text(rng, language, rng.randint(4, 20))
            response = _text(rng, language, rng.randint(lo, hi))
            length = count_length_tokens(response)
            lbin = length_bin(length)
            alternatives = []
            if family == "assistant" and rng.random() < 0.3:
                alternatives = [{"content": response, "rank": 0},
                                {"content": _text(rng, language, rng.randint(lo, hi)), "rank": 1}]
            records.append(Record(
                id=f"syn-{split}-{seed}-{idx:05d}", conversation_id=f"conv-{split}-{seed}-{idx:05d}",
                source=f"synthetic-{language}-{family}", language=language, prompt=prompt, response=response,
                history=history, context=context, alternatives=alternatives, track=track, family=family,
                length=length, length_bin=lbin, bucket_id=f"{language}|{track}|{family}|{lbin}", split=split,
                turn_index=len(history) // 2, license="CC0-1.0", meta={"synthetic": True}))
    rng.shuffle(records)
    return records


def bucket_counts(records: Sequence[Record]) -> Counter:
    """Number of records per bucket_id."""
    return Counter(r.bucket_id for r in records)


def write_data_dir(root: str | Path, splits: dict[str, Sequence[Record]]) -> Path:
    """Write records as a data directory (records/{split}.jsonl, buckets.json, manifest.json); return root."""
    root = Path(root)
    (root / "records").mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, int]] = {}
    for split, records in splits.items():
        with open(root / "records" / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        for bucket, count in bucket_counts(records).items():
            table.setdefault(bucket, {})[split] = count
    (root / "buckets.json").write_text(json.dumps({"buckets": table, "merges": {}}, indent=2), encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"stage": "data", "synthetic": True}), encoding="utf-8")
    return root
