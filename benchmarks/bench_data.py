"""Benchmark: `data build` on the bundled data and on copies of it ×10 and ×100, wall time and peak memory each.

The enlarged corpus is made here: copy k of every line (k = 0 is the line as it is) gets `~k` appended to its
id and to meta.tree_id, and ` (k)` to its first user turn, so that no copy deduplicates against another and
OASST trees stay apart (passage-grouped QA copies share their passage's split group). Each build runs in its
own process; peak RSS is sampled (every 0.2 s) over that process and its worker processes (sum over the
tree, its anonymous part (RssAnon, without the file-backed pages of memory-mapped Arrow files), the build
process alone, the largest single process), next to ru_maxrss of the build process and of its reaped workers;
all in MiB.

Usage:
  python benchmarks/bench_data.py [--scales 1,10,100] [--engines stream,memory] [--memory-scales 1,10]
                                  [--num-proc 2] [--workdir /tmp/bench_data]
The enlarged corpora and build outputs are written under --workdir and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "data" / "bundled.yaml"

CHILD = """
import json, resource, sys, time
from polyalign.data.build import build_dataset
from polyalign.data.sources import load_data_config
config = load_data_config(sys.argv[1])
t0 = time.perf_counter()
summary = build_dataset(config, sys.argv[2], progress=False, engine=sys.argv[3], num_proc=int(sys.argv[4]))
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "records": summary["records"], "timings": summary["timings"],
                  "self_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def vary(obj: dict, k: int) -> dict:
    """Copy k of a messages-format line (k = 0: unchanged)."""
    if k == 0:
        return obj
    obj = json.loads(json.dumps(obj))
    obj["id"] = f"{obj['id']}~{k}"
    meta = obj.get("meta")
    if isinstance(meta, dict) and meta.get("tree_id") is not None:
        meta["tree_id"] = f"{meta['tree_id']}~{k}"
    for message in obj.get("messages", []):
        if message.get("role") == "user":
            message["content"] = f"{message['content']} ({k})"
            break
    return obj


def enlarge(scale: int, out: Path) -> Path:
    """Write the bundled sources ×scale under `out`; return the data config that reads them."""
    config = yaml.safe_load(CONFIG.read_text())
    out.mkdir(parents=True, exist_ok=True)
    for source in config["sources"]:
        src = (CONFIG.parent / source["path"]).resolve()
        dst = out / src.name
        lines = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
        with open(dst, "w", encoding="utf-8") as fh:
            for k in range(scale):
                fh.write("".join(json.dumps(vary(obj, k), ensure_ascii=False) + "\n" for obj in lines))
        source["path"] = str(dst)
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _rss_anon(pid: int) -> int:
    """Anonymous resident memory of a process in bytes (RssAnon; RSS minus file-backed and shared pages)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def run_build(config: Path, out: Path, engine: str, num_proc: int) -> dict:
    """One build in a fresh process, its RSS tree sampled until it exits."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(config), str(out), engine, str(num_proc)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_tree = peak_one = peak_anon = peak_main = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss, anon = [], []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                    anon.append(_rss_anon(p.pid))
                except (psutil.Error, OSError):
                    pass
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss, default=0))
            peak_anon, peak_main = max(peak_anon, sum(anon)), max(peak_main, rss[0] if rss else 0)
        except psutil.Error:
            pass
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({engine}, {config}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(peak_tree_mib=peak_tree / 2**20, peak_one_mib=peak_one / 2**20, peak_anon_mib=peak_anon / 2**20,
                  peak_main_mib=peak_main / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,10,100")
    parser.add_argument("--engines", default="stream,memory")
    parser.add_argument("--memory-scales", default="1,10", help="scales the in-memory engine runs at")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_data"))
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    engines = args.engines.split(",")
    memory_scales = {int(s) for s in args.memory_scales.split(",")}
    rows = []
    try:
        for scale in scales:
            corpus = args.workdir / f"x{scale}"
            t0 = time.perf_counter()
            config = enlarge(scale, corpus)
            print(f"x{scale}: corpus written in {time.perf_counter() - t0:.0f} s "
                  f"({sum(p.stat().st_size for p in corpus.glob('*.jsonl')) / 2**20:.0f} MiB)", flush=True)
            for engine in engines:
                if engine == "memory" and scale not in memory_scales:
                    continue
                out = args.workdir / f"out_{engine}_x{scale}"
                r = run_build(config, out, engine, args.num_proc if engine == "stream" else 1)
                shutil.rmtree(out, ignore_errors=True)
                rows.append((scale, engine, r))
                print(f"  {engine}: {r['wall']:.1f} s, {r['records']} records, peak RSS tree "
                      f"{r['peak_tree_mib']:.0f} MiB; timings {r['timings']}", flush=True)
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print()
    print(f"{'scale':>6} {'engine':>7} {'num_proc':>8} {'records':>9} {'wall s':>8} {'s/1k rec':>8} "
          f"{'RSS tree MiB':>12} {'anon tree':>9} {'RSS main':>8} {'RSS max1':>8} {'maxrss self':>11} "
          f"{'maxrss kids':>11}")
    for scale, engine, r in rows:
        n_proc = args.num_proc if engine == "stream" else 1
        print(f"{'x' + str(scale):>6} {engine:>7} {n_proc:>8} {r['records']:>9} {r['wall']:>8.1f} "
              f"{1000 * r['wall'] / r['records']:>8.3f} {r['peak_tree_mib']:>12.0f} {r['peak_anon_mib']:>9.0f} "
              f"{r['peak_main_mib']:>8.0f} {r['peak_one_mib']:>8.0f} "
              f"{r['self_maxrss_kib'] / 1024:>11.0f} {r['children_maxrss_kib'] / 1024:>11.0f}")
    walls = {(s, e): r["wall"] for s, e, r in rows}
    for engine in engines:
        for lo, hi in ((1, 10), (10, 100)):
            if (lo, engine) in walls and (hi, engine) in walls:
                ratio = walls[(hi, engine)] / walls[(lo, engine)]
                print(f"{engine}: t(x{hi}) / t(x{lo}) = {ratio:.2f} (linear: {hi // lo}; goal for x10->x100: "
                      f"<= {1.2 * hi / lo:.0f})")
    for scale in sorted({s for s, _, _ in rows}):
        if (scale, "memory") in walls and (scale, "stream") in walls:
            print(f"x{scale}: memory / stream wall time = {walls[(scale, 'memory')] / walls[(scale, 'stream')]:.2f}")


if __name__ == "__main__":
    main()
