"""Benchmark of the evaluation suite: seconds per metric for N predictions vs N human references, and growth.

    python benchmarks/bench_eval.py                  # sizes 1000, 5000, 20000 (the detailed table is for 5000)
    python benchmarks/bench_eval.py --sizes 5000

Data: the bundled human responses (../shared/data, no neural featurizer). For size N: N items and up to N pool
responses drawn from disjoint shuffled halves, with their real buckets (language|track|family|length bin); the
"predictions" are other human responses of the same bucket, perturbed (10–15% of words / characters dropped).
Buckets with fewer than 20 pool responses are dropped, so the scored count can be a little below N.

Printed: suite build (features of items and pool), the first evaluation (human side + ceiling computed and cached,
then the model side), a second evaluation of another method on the same suite (human side read from the cache),
each broken down by metric group, and the growth ratios between sizes. The goal is the whole first evaluation of
5,000 vs 5,000 in ≤ 120 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polyalign.data.schema import Record  # noqa: E402
from polyalign.eval.runner import evaluate  # noqa: E402
from polyalign.eval.suite import write_suite  # noqa: E402
from polyalign.text import count_length_tokens, length_bin, normalize_text  # noqa: E402

FAMILY = {"assistant": "assistant", "chitchat": "open_chat", "knowledge_chat": "knowledge_chat", "task": "task",
          "qa_search": "qa", "longform_qa": "longform_qa"}
MIN_POOL = 20


def load_bundled(data_dir: Path) -> list[Record]:
    """Every assistant turn of the bundled conversations as a Record with its history and bucket."""
    records: list[Record] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                conv = json.loads(line)
                meta = conv.get("meta", {})
                track = "multi" if meta.get("turns") == "multi" else "single"
                family = FAMILY.get(meta.get("track"), "assistant")
                messages = conv["messages"]
                for i, msg in enumerate(messages):
                    if msg["role"] != "assistant" or i == 0:
                        continue
                    response = normalize_text(msg["content"])
                    prompt = normalize_text(messages[i - 1]["content"])
                    if not response or not prompt:
                        continue
                    length = count_length_tokens(response)
                    lbin = length_bin(length)
                    history = [{"role": m["role"], "content": normalize_text(m["content"])} for m in messages[:i - 1]]
                    records.append(Record(
                        id=f"{conv['id']}-{i}", conversation_id=conv["id"], source=path.stem, language=conv["lang"],
                        prompt=prompt, response=response, history=history, track=track, family=family,
                        length=length, length_bin=lbin, bucket_id=f"{conv['lang']}|{track}|{family}|{lbin}",
                        split="test"))
    return records


def perturb(text: str, language: str, rng: random.Random) -> str:
    """Drop ~15% of English words or ~10% of Chinese characters (never everything)."""
    if language == "zh":
        kept = [c for c in text if rng.random() > 0.10]
        return "".join(kept) or text
    kept = [w for w in text.split(" ") if rng.random() > 0.15]
    return " ".join(kept) or text


def make_world(records: list[Record], n: int, root: Path, seed: int = 0) -> tuple[Path, Path, Path, float, int]:
    """Suite of n items (+ pool of up to n) and two prediction files; returns (suite, preds A, preds B,
    suite build seconds, items scored)."""
    rng = random.Random(seed)
    shuffled = records[:]
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    items_all, pool_all = shuffled[:half][:n], shuffled[half:][:n]
    pool_by: dict[str, list[Record]] = defaultdict(list)
    for r in pool_all:
        pool_by[r.bucket_id].append(r)
    keep = {b for b, rows in pool_by.items() if len(rows) >= MIN_POOL}
    items = [r for r in items_all if r.bucket_id in keep]
    pool = [r for r in pool_all if r.bucket_id in keep]
    started = time.perf_counter()
    suite_dir = write_suite(root / f"suite-{n}", items, pool, config={"bench": n}, seed=seed)
    build_s = time.perf_counter() - started
    paths = []
    for name, salt in (("A", 1), ("B", 2)):
        prng = random.Random(seed + salt)
        rows = []
        for r in items:
            source = prng.choice(pool_by[r.bucket_id]).response
            rows.append({"id": r.id, "sample": 0, "bucket_id": r.bucket_id, "language": r.language,
                         "track": r.track, "family": r.family, "length_bin": r.length_bin,
                         "prediction": perturb(source, r.language, prng)})
        path = root / f"preds-{n}-{name}" / "predictions.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        paths.append(path)
    return suite_dir, paths[0], paths[1], build_s, len(items)


def run_size(records: list[Record], n: int, root: Path) -> dict:
    suite_dir, preds_a, preds_b, build_s, n_items = make_world(records, n, root)
    started = time.perf_counter()
    first = evaluate(preds_a, suite_dir, root / f"run-{n}-A", name="A")
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = evaluate(preds_b, suite_dir, root / f"run-{n}-B", name="B")
    second_s = time.perf_counter() - started
    return {"n": n, "n_items": n_items, "n_pool": sum(1 for _ in open(suite_dir / "pool.jsonl", encoding="utf-8")),
            "buckets": len(first["buckets"]), "suite_build_s": build_s, "first_eval_s": first_s,
            "cached_eval_s": second_s, "first": first["metadata"]["timings_s"],
            "second": second["metadata"]["timings_s"],
            "ceiling": {k: first["metrics"][k]["ceiling"]["headline"] for k in
                        ("c2st_acc", "coverage_joint", "coverage_feature", "feature_gap", "c_mauve", "mauve")}}


def print_breakdown(result: dict) -> None:
    print(f"\n== {result['n']} predictions vs {result['n_pool']} references ({result['n_items']} items scored, "
          f"{result['buckets']} buckets) ==")
    print(f"suite build (linguistic features of items + pool): {result['suite_build_s']:.2f} s")
    human = result["first"]["human_side"]
    model = result["first"]["model_side"]
    print(f"{'metric group':45s} {'human side+ceiling':>18s} {'model side':>11s}")
    for key in sorted(set(human) | set(model), key=lambda k: -(human.get(k, 0) + model.get(k, 0))):
        print(f"{key:45s} {human.get(key, 0):18.2f} {model.get(key, 0):11.2f}")
    print(f"{'first evaluation (everything, incl. reports)':45s} {result['first_eval_s']:30.2f} s")
    print(f"{'another method, human side cached':45s} {result['cached_eval_s']:30.2f} s")
    print("human-vs-human ceilings:", {k: round(v, 3) for k, v in result["ceiling"].items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    records = load_bundled(args.data)
    print(f"bundled human responses: {len(records)} (loaded in {time.perf_counter() - started:.1f} s)")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        for n in sizes:
            results.append(run_size(records, n, Path(tmp)))
            print_breakdown(results[-1])
    print("\n== growth ==")
    print(f"{'N':>7s} {'items':>7s} {'first eval s':>13s} {'cached eval s':>14s} {'s per 1k items':>15s}")
    for r in results:
        print(f"{r['n']:7d} {r['n_items']:7d} {r['first_eval_s']:13.2f} {r['cached_eval_s']:14.2f} "
              f"{1000 * r['first_eval_s'] / r['n_items']:15.2f}")
    for a, b in zip(results, results[1:]):
        size_ratio = b["n_items"] / a["n_items"]
        print(f"{a['n']} → {b['n']}: items ×{size_ratio:.2f}, first eval ×{b['first_eval_s'] / a['first_eval_s']:.2f}, "
              f"cached eval ×{b['cached_eval_s'] / a['cached_eval_s']:.2f}")
    five = [r for r in results if r["n"] == 5000]
    if five:
        verdict = "OK" if five[0]["first_eval_s"] <= 120 else "OVER"
        print(f"5,000 vs 5,000 whole first evaluation: {five[0]['first_eval_s']:.1f} s (goal ≤ 120 s: {verdict})")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
