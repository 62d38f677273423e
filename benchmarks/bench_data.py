"""Benchmark: the whole `data build` on the bundled data (configs/data/bundled.yaml) into a temporary directory.

Prints wall time (total and per stage), peak RSS of this process and of its children, and records per split.
Usage: .venv/bin/python benchmarks/bench_data.py [CONFIG]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mib(who: int) -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(who).ru_maxrss * scale


def main() -> None:
    from polyalign.data.build import build_dataset
    from polyalign.data.sources import load_data_config

    config_path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "configs" / "data" / "bundled.yaml"
    config = load_data_config(config_path)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        started = time.perf_counter()
        summary = build_dataset(config, Path(tmp) / "data", progress=False)
        wall = time.perf_counter() - started
    print(f"config: {config_path}")
    print(f"records: {summary['records']} in {summary['conversations']} conversations; "
          f"per split: {', '.join(f'{k} {v}' for k, v in summary['splits'].items())}")
    print(f"buckets: {summary['buckets']} ({summary['merges']} merges); references: {summary['references']}")
    print(f"removed: invalid {summary['invalid']}, filtered {summary['filtered']}, "
          f"duplicates {summary['duplicates_removed']}")
    print("stage times: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in summary["timings"].items()))
    print(f"wall time: {wall:.2f} s (target < 60 s)")
    print(f"peak RSS: {_peak_rss_mib(resource.RUSAGE_SELF):.0f} MiB (self), "
          f"{_peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB (children)")


if __name__ == "__main__":
    main()
