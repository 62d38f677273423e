"""Feature-extraction throughput on the bundled human responses, on ONE core.

    .venv/bin/python benchmarks/bench_features.py [--data DIR] [--repeat 3]

Reads every assistant turn of DIR/*.jsonl (default ../shared/data), pins the process to one core, and times
`polyalign.data.features.feature_matrix` on all of them (one call, as the data build makes it), then on each
language alone. Start-up (jieba's dictionary, the character table) is timed apart, once. Prints responses/s
(median of --repeat runs), peak RSS and whether the goal of 5,000 responses/s is met.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "TORCH_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

GOAL = 5000.0
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_responses(data_dir: Path) -> tuple[list[str], list[str]]:
    """Every assistant turn of every conversation in data_dir/*.jsonl, with the file's language."""
    texts, languages = [], []
    files = sorted(data_dir.glob("*.jsonl"))
    if not files:
        sys.exit(f"no *.jsonl files in {data_dir}")
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = json.loads(line)
                for message in record["messages"]:
                    if message["role"] == "assistant":
                        texts.append(message["content"])
                        languages.append(record["lang"])
    return texts, languages


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall time and median CPU time of `repeat` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def report(label: str, n: int, wall: float, cpu: float, extra: str = "") -> None:
    print(f"{label:22s}: {n:>6,} responses  wall {wall:5.2f} s = {n / wall:>7,.0f}/s   "
          f"cpu {cpu:5.2f} s = {n / cpu:>7,.0f}/s  {extra}")


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of *.jsonl conversations")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    args = parser.parse_args()

    pinned = "not available on this platform"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = f"pinned to core {sorted(os.sched_getaffinity(0))}"

    from polyalign.data.features import FEATURE_NAMES, feature_matrix

    texts, languages = load_responses(args.data)
    n_chars = sum(map(len, texts))
    print(f"data: {args.data} -- {len(texts):,} responses, {n_chars:,} characters, "
          f"{len(set(zip(texts, languages))):,} distinct")
    print(f"process: {pinned}; python {platform.python_version()}; {len(FEATURE_NAMES)} features")

    start = time.perf_counter()
    feature_matrix(["warm-up", "预热"], ["en", "zh"])
    print(f"start-up (jieba dictionary + character table, once per process): {time.perf_counter() - start:.2f} s")

    print(f"timings: median of {args.repeat} runs; wall = elapsed time, cpu = this process's CPU time (they differ "
          f"when other processes share the core)")
    wall, cpu, matrix = timed(lambda: feature_matrix(texts, languages), args.repeat)
    rate = len(texts) / wall
    report("all", len(texts), wall, cpu, f"shape {matrix.shape}")
    for language in sorted(set(languages)):
        subset = [t for t, lang in zip(texts, languages) if lang == language]
        sub_wall, sub_cpu, _ = timed(lambda: feature_matrix(subset, [language] * len(subset)), args.repeat)
        report(f"{language} only", len(subset), sub_wall, sub_cpu,
               f"{sum(map(len, subset)) / len(subset):.0f} chars on average")
    distinct = list(dict.fromkeys(zip(texts, languages)))
    d_wall, d_cpu, _ = timed(lambda: feature_matrix([t for t, _ in distinct], [lang for _, lang in distinct]),
                             args.repeat)
    report("distinct texts only", len(distinct), d_wall, d_cpu, "(no gain from identical responses)")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    verdict = "MET" if rate >= GOAL else "NOT MET"
    print(f"goal >= {GOAL:,.0f} responses/s on one core (wall time, all responses): {verdict} ({rate:,.0f}/s, "
          f"{rate / 47:.0f}x the reference extractor's 47/s)")


if __name__ == "__main__":
    main()
