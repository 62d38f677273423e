"""Benchmark: `data build` on the bundled data and on copies of it ×10 and ×100, wall time and peak memory each.

The enlarged corpus is made here: copy k of every line (k = 0 is the line as it is) gets `~k` appended to its
id and to meta.tree_id, and ` (k)` to its first user turn, so that no copy deduplicates against another and
OASST trees stay apart (passage-grouped QA copies share their passage's split group). Each build runs in its
own process; its memory is sampled (every 0.2 s, /proc/<pid>/smaps_rollup) over that process and its worker
processes: the peak of the summed RSS over the tree ('RSS tree', the figure issue 15's goal "peak RSS <= 3 GB"
is judged on), of the summed PSS ('PSS tree': each shared page, e.g. of a memory-mapped Arrow file that two
processes read, counted once, split among them; the fair measure of what the tree uses), of the summed
anonymous memory ('anon tree', without file-backed pages), the build process alone (RSS and PSS), the largest
single process, next to ru_maxrss of the build process and of its reaped workers; all in MiB; and the CPU
seconds (user + system) of the build process and its reaped workers ('CPU s', steadier than wall time on a
shared machine). With --smaps S,
every S seconds the per-mapping RSS of each process is sampled too and the mappings with the largest peak
RSS are printed per build (the diagnosis of what is resident where).

Usage:
  python benchmarks/bench_data.py [--scales 1,10,100] [--engines stream,memory] [--memory-scales 1,10]
                                  [--num-proc 2] [--workdir /tmp/bench_data] [--smaps 2]
                                  [--report-every 60]
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
                  "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "cpu_s": sum(getattr(resource.getrusage(who), f) for who in
                               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))}))
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


def _rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and Anonymous of a process in bytes, from /proc/<pid>/smaps_rollup (Pss shares each page among
    the processes that map it, so Pss sums to the memory the tree really uses)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Anonymous"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def _smaps(pid: int) -> dict[str, dict[str, int]]:
    """Per mapped file (or [heap] / [anon]) of a process, its Rss, Pss and Anonymous in bytes (/proc/<pid>/smaps)."""
    out: dict[str, dict[str, int]] = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(maxsplit=5)
            if not head:
                continue
            if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                name = head[5].strip() if len(head) > 5 else "[anon]"
                continue
            if head[0] in ("Rss:", "Pss:", "Anonymous:"):
                entry = out.setdefault(name, {"Rss": 0, "Pss": 0, "Anonymous": 0})
                entry[head[0][:-1]] += int(head[1]) * 1024
    return out


def _short(path: str, workdir: str) -> str:
    """A mapping's name without the bench workdir and build temp prefix (e.g. work/hf/.../generator-train.arrow)."""
    if path.startswith(workdir):
        path = path[len(workdir):].lstrip("/")
        parts = path.split("/")
        return "/".join(parts[1:] if len(parts) > 1 and parts[0].startswith(".") else parts)
    return path if path.startswith("[") else "(other files: libraries, ...)"


def run_build(config: Path, out: Path, engine: str, num_proc: int, smaps_every: float = 0.0,
              report_every: float = 0.0) -> dict:
    """One build in a fresh process, its memory tree sampled every 0.2 s until it exits: peak of the summed RSS,
    RssAnon and PSS over the tree, RSS of the build process, the largest process; with smaps_every > 0, every
    that many seconds the per-mapping RSS / PSS of each process too (peak per process role and file)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(config), str(out), engine, str(num_proc)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = dict.fromkeys(("tree", "one", "anon", "main", "pss", "main_pss"), 0)
    maps: dict[tuple[str, str], dict[str, int]] = {}
    started, last_maps, last_report = time.perf_counter(), -1e9, time.perf_counter()
    workdir = str(out.parent)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        sums = dict.fromkeys(("Rss", "Pss", "Anonymous"), 0)
        rss_one, rss_main, pss_main = 0, 0, 0
        take_maps = smaps_every > 0 and time.perf_counter() - last_maps >= smaps_every
        for k, p in enumerate(procs):
            try:
                roll = _rollup(p.pid)
                per_file = _smaps(p.pid) if take_maps else {}
            except (psutil.Error, OSError):
                continue
            for key in sums:
                sums[key] += roll.get(key, 0)
            rss_one = max(rss_one, roll.get("Rss", 0))
            if k == 0:
                rss_main, pss_main = roll.get("Rss", 0), roll.get("Pss", 0)
            role = "main" if k == 0 else "worker"
            t = round(time.perf_counter() - started)
            short: dict[str, dict[str, int]] = {}
            for name, v in per_file.items():
                entry = short.setdefault(_short(name, workdir), dict.fromkeys(("Rss", "Pss", "Anonymous"), 0))
                for key in entry:
                    entry[key] += v[key]
            for name, v in short.items():
                entry = maps.setdefault((role, name), {"Rss": 0, "Pss": 0, "Anonymous": 0, "at_s": 0})
                if v["Rss"] > entry["Rss"]:
                    entry.update(v, at_s=t)
        if take_maps:
            last_maps = time.perf_counter()
        peak.update(tree=max(peak["tree"], sums["Rss"]), anon=max(peak["anon"], sums["Anonymous"]),
                    pss=max(peak["pss"], sums["Pss"]), one=max(peak["one"], rss_one),
                    main=max(peak["main"], rss_main), main_pss=max(peak["main_pss"], pss_main))
        if report_every > 0 and time.perf_counter() - last_report >= report_every:
            last_report = time.perf_counter()
            print(f"    {last_report - started:7.0f} s: {len(procs)} processes, RSS tree {sums['Rss'] / 2**20:.0f} "
                  f"(peak {peak['tree'] / 2**20:.0f}), PSS tree {sums['Pss'] / 2**20:.0f} (peak "
                  f"{peak['pss'] / 2**20:.0f}), anon {sums['Anonymous'] / 2**20:.0f} MiB", flush=True)
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({engine}, {config}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update({f"peak_{k}_mib": v / 2**20 for k, v in peak.items()})
    result["smaps"] = sorted(([role, name, v["Rss"] / 2**20, v["Pss"] / 2**20, v["Anonymous"] / 2**20, v["at_s"]]
                              for (role, name), v in maps.items()), key=lambda r: -r[2])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,10,100")
    parser.add_argument("--engines", default="stream,memory")
    parser.add_argument("--memory-scales", default="1,10", help="scales the in-memory engine runs at")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_data"))
    parser.add_argument("--smaps", type=float, default=0.0, metavar="SECONDS",
                        help="also sample /proc/<pid>/smaps every SECONDS and print, per build, the mappings with "
                             "the largest peak RSS per process role (main, worker)")
    parser.add_argument("--report-every", type=float, default=0.0, metavar="SECONDS",
                        help="print the tree's current and peak memory every SECONDS while a build runs")
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
                r = run_build(config, out, engine, args.num_proc if engine == "stream" else 1, args.smaps,
                              args.report_every)
                shutil.rmtree(out, ignore_errors=True)
                rows.append((scale, engine, r))
                print(f"  {engine}: {r['wall']:.1f} s, {r['records']} records, peak RSS tree "
                      f"{r['peak_tree_mib']:.0f} MiB, PSS tree {r['peak_pss_mib']:.0f} MiB; timings {r['timings']}",
                      flush=True)
                if args.smaps:
                    print(f"    {'process':>7} {'peak RSS':>8} {'its PSS':>8} {'anon':>6} {'at s':>5}  mapping")
                    for role, name, rss, pss, anon, at in r["smaps"][:12]:
                        print(f"    {role:>7} {rss:>8.0f} {pss:>8.0f} {anon:>6.0f} {at:>5}  {name}")
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print()
    print("goal (issue 15): peak RSS summed over the build's process tree ('RSS tree') <= 3 GB (2861 MiB) at x100; "
          "'PSS tree' (shared pages split among the processes that map them) shown next to it")
    print(f"{'scale':>6} {'engine':>7} {'num_proc':>8} {'records':>9} {'wall s':>8} {'s/1k rec':>8} "
          f"{'RSS tree MiB':>12} {'PSS tree':>8} {'anon tree':>9} {'RSS main':>8} {'PSS main':>8} {'RSS max1':>8} "
          f"{'maxrss self':>11} {'maxrss kids':>11} {'CPU s':>7}")
    for scale, engine, r in rows:
        n_proc = args.num_proc if engine == "stream" else 1
        print(f"{'x' + str(scale):>6} {engine:>7} {n_proc:>8} {r['records']:>9} {r['wall']:>8.1f} "
              f"{1000 * r['wall'] / r['records']:>8.3f} {r['peak_tree_mib']:>12.0f} {r['peak_pss_mib']:>8.0f} "
              f"{r['peak_anon_mib']:>9.0f} {r['peak_main_mib']:>8.0f} {r['peak_main_pss_mib']:>8.0f} "
              f"{r['peak_one_mib']:>8.0f} "
              f"{r['self_maxrss_kib'] / 1024:>11.0f} {r['children_maxrss_kib'] / 1024:>11.0f} {r['cpu_s']:>7.0f}")
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
