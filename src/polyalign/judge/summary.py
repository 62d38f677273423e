"""A judge run's summary: composites per method and slice with bootstrap CIs, failures, pairwise win rates,
and agreement between judges.

CIs are normal intervals (value ± 1.96 · SE, SE the standard deviation over bootstrap draws of the slice's
items), as for the headline metrics (polyalign.eval.headline). The draws depend only on the seed and the slice,
so every method is resampled on the same items; paired differences between methods use the same draws and
polyalign.eval.significance.normal_test with Holm's correction."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.significance import holm, normal_test
from ..io import write_text
from .rubric import Rubric

Z = 1.959963984540054


def slice_names(row: dict[str, Any]) -> list[str]:
    """The slices a judgment counts in: overall, its bucket and its context bucket (language|track|family)."""
    return ["overall", f"bucket/{row['bucket_id']}", f"context/{row['context_bucket']}"]


def _draws(seed: int, name: str, n: int, draws: int) -> np.ndarray:
    return np.random.default_rng([seed, zlib.crc32(name.encode())]).integers(0, n, size=(draws, n))


def mean_with_ci(values: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
    """Mean of the finite values, with the normal bootstrap interval over the index draws `idx` [draws, n]."""
    finite = np.isfinite(values)
    if not finite.any():
        return {"mean": None, "ci": None, "n": 0}
    mean = float(values[finite].mean())
    with np.errstate(invalid="ignore"):
        sums = np.where(finite[idx], values[idx], 0.0).sum(1)
        counts = finite[idx].sum(1)
        reps = sums[counts > 0] / counts[counts > 0]
    se = float(reps.std(ddof=1)) if len(reps) > 1 else 0.0
    return {"mean": mean, "ci": [mean - Z * se, mean + Z * se], "n": int(finite.sum()), "se": se,
            "replicates": reps}


def _pointwise(rows: list[dict], rubric: Rubric, methods: Sequence[str], judge: int, seed: int,
               draws: int) -> dict[str, Any]:
    mine = [r for r in rows if r["judge"] == judge]
    by_slice: dict[str, list[str]] = defaultdict(list)
    for r in mine:
        for s in slice_names(r):
            if r["item"] not in by_slice[s]:
                by_slice[s].append(r["item"])
    lookup = {(r["item"], r["method"]): r for r in mine}
    tables: dict[str, Any] = {}
    tests: list[dict[str, Any]] = []
    for s, items in by_slice.items():
        idx = _draws(seed, s, len(items), draws)
        tables[s] = {}
        for comp in rubric.composites:
            per_method = {}
            for m in methods:
                vals = np.array([(lookup.get((it, m)) or {}).get("composites", {}).get(comp) for it in items],
                                dtype=float)
                per_method[m] = mean_with_ci(vals, idx)
            tables[s][comp] = per_method
            if s == "overall" and comp == "overall":
                for a, b in zip(methods, methods[1:]):
                    ra, rb = per_method[b].get("replicates"), per_method[a].get("replicates")
                    if ra is None or rb is None or len(ra) != len(rb) or per_method[a]["mean"] is None:
                        continue
                    diff = per_method[b]["mean"] - per_method[a]["mean"]
                    tests.append({"a": b, "b": a, "diff": diff,
                                  **normal_test(diff, float(np.std(ra - rb, ddof=1)))})
    for t, p in zip(tests, holm([t.get("p") for t in tests])):
        t["p_holm"] = p
    for s in tables.values():
        for comp in s.values():
            for v in comp.values():
                v.pop("replicates", None)
    failures: dict[str, Any] = {}
    for m in methods:
        rs = [r for r in mine if r["method"] == m]
        failures[m] = {"judged": len(rs), "ok": sum(r["status"] == "ok" for r in rs),
                       "failed": sum(r["status"] == "failed" for r in rs),
                       "retried_answers": sum(max(0, r["attempts"] - 1) for r in rs),
                       "empty_capped": sum(r["attempts"] == 0 for r in rs),
                       "failed_by_bucket": dict(Counter(r["bucket_id"] for r in rs if r["status"] == "failed"))}
    errors = Counter(r.get("error", "").split(":")[0] for r in mine if r["status"] == "failed")
    return {"tables": tables, "tests": tests, "failures": failures, "failure_kinds": dict(errors.most_common(8))}


def _pairwise(rows: list[dict], judge: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mine = [r for r in rows if r["judge"] == judge]
    for r in mine:
        a, b = r["pair"]
        cell = out.setdefault(f"{a} vs {b}", {"a": a, "b": b, "a_wins": 0, "b_wins": 0, "ties": 0, "failed": 0,
                                              "shown_first_won": 0})
        if r["status"] != "ok":
            cell["failed"] += 1
            continue
        cell["a_wins" if r["winner"] == a else "b_wins" if r["winner"] == b else "ties"] += 1
        cell["shown_first_won"] += r["shown_winner"] == "1"
    return out


def agreement(rows: list[dict], rubric: Rubric, j1: int, j2: int) -> dict[str, Any]:
    """Agreement of two judges on the tasks both answered: quadratic-weighted Cohen's kappa per dimension
    (sklearn) and Spearman's rho of the overall composite (scipy); pairwise: the same winner, and kappa."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    def key(r: dict) -> tuple:
        return (r["item"], r.get("method") or tuple(r["pair"]))

    first = {key(r): r for r in rows if r["judge"] == j1 and r["status"] == "ok"}
    both = [(first[key(r)], r) for r in rows if r["judge"] == j2 and r["status"] == "ok" and key(r) in first]
    out: dict[str, Any] = {"judges": [j1, j2], "n_both_ok": len(both)}
    if len(both) < 2:
        return out
    if "winner" in both[0][0]:
        w1, w2 = [a["winner"] for a, _ in both], [b["winner"] for _, b in both]
        out["same_winner"] = float(np.mean([x == y for x, y in zip(w1, w2)]))
        out["kappa"] = float(cohen_kappa_score(w1, w2)) if len(set(w1) | set(w2)) > 1 else None
        return out
    out["weighted_kappa"] = {}
    for d in rubric.dimensions:
        pairs = [(a["capped"][d], b["capped"][d]) for a, b in both if d in a["capped"] and d in b["capped"]]
        if len(pairs) >= 2 and len({p for pair in pairs for p in pair}) > 1:
            x, y = zip(*pairs)
            out["weighted_kappa"][d] = float(cohen_kappa_score(x, y, weights="quadratic",
                                                               labels=list(range(rubric.scale.min,
                                                                                 rubric.scale.max + 1))))
        else:
            out["weighted_kappa"][d] = None
    x = [a["composites"]["overall"] for a, _ in both]
    y = [b["composites"]["overall"] for _, b in both]
    rho = spearmanr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else None
    out["spearman_overall"] = None if rho is None or not np.isfinite(rho) else float(rho)
    return out


def summarize(rows: list[dict], rubric: Rubric, config: Any, *, methods: Sequence[str],
              n_judges: int) -> dict[str, Any]:
    """The summary of a run's judgment rows (see the module doc)."""
    summary: dict[str, Any] = {"rubric": rubric.name, "mode": config.mode, "with_reference": config.with_reference,
                               "methods": list(methods), "per_judge": []}
    for j in range(n_judges):
        if config.mode == "pointwise":
            summary["per_judge"].append(_pointwise(rows, rubric, methods, j, config.seed, config.bootstrap_draws))
        else:
            summary["per_judge"].append({"pairs": _pairwise(rows, j),
                                         "failed": sum(r["status"] == "failed" for r in rows if r["judge"] == j)})
    summary["agreement"] = [agreement(rows, rubric, a, b) for a in range(n_judges) for b in range(a + 1, n_judges)]
    return summary


def _fmt(cell: dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "n/a"
    return f"{cell['mean']:.1f} [{cell['ci'][0]:.1f}, {cell['ci'][1]:.1f}]"


def composite_rows(summary: dict[str, Any], judge: int = 0, slice_name: str = "overall") -> tuple[list[str],
                                                                                                  list[list[str]]]:
    """(header, rows) of method × composite (mean [95% CI], 0..100) plus ok/failed counts, for one judge."""
    result = summary["per_judge"][judge]
    table = result["tables"].get(slice_name, {})
    comps = list(table)
    header = ["method", *comps, "judged ok", "failed (after retries)"]
    rows = []
    for m in summary["methods"]:
        f = result["failures"][m]
        rows.append([m, *[_fmt(table[c][m]) for c in comps], str(f["ok"]), str(f["failed"])])
    return header, rows


def write_report(path: Path, summary: dict[str, Any]) -> None:
    """report.md: the composite tables (overall, per bucket, per context bucket), failures, agreement."""
    lines = [f"# LLM judge ({summary['rubric']}, {summary['mode']}, "
             f"{'with' if summary['with_reference'] else 'without'} the human reference)", ""]
    for j, judge in enumerate(summary.get("judges", [])):
        lines.append(f"Judge {j}: `{judge['model_name']}`")
    for j, result in enumerate(summary["per_judge"]):
        if summary["mode"] == "pairwise":
            lines += ["", f"## Judge {j}: pairwise", "", "| pair | a wins | b wins | ties | failed | shown first won |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {k} | {c['a_wins']} | {c['b_wins']} | {c['ties']} | {c['failed']} | {c['shown_first_won']} |"
                      for k, c in result["pairs"].items()]
            continue
        for s in sorted(result["tables"], key=lambda s: (s != "overall", s)):
            header, rows = composite_rows(summary, j, s)
            lines += ["", f"## Judge {j}: {s} (0..100, mean [95% CI])", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        if result["failure_kinds"]:
            lines += ["", "Failed answers by kind: " + "; ".join(f"{k} ({v})" for k, v in
                                                                result["failure_kinds"].items())]
    for a in summary["agreement"]:
        lines += ["", f"## Agreement of judges {a['judges'][0]} and {a['judges'][1]} ({a['n_both_ok']} tasks both "
                      f"answered)", "", "```", str({k: v for k, v in a.items() if k not in ("judges",)}), "```"]
    write_text(path, "\n".join(lines) + "\n")
