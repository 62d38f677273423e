"""Report sections of the headline numbers (context and oracle-length views, ceilings, paired tests, decoding
reach), as a list of blocks that report.md and report.html both render."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .contrasts import headline_tables
from .headline import HEADLINE_METRICS
from .registry import load_all
from .tables import fmt, html_table, md_table

Block = tuple[str, Any]   # ("h2" | "h3" | "p", text) or ("table", (header, rows))

VIEW_NOTE = {
    "context": ("Headline view: items grouped by what is known before the response exists ({key}); length is "
                "scored as a distribution inside each group (length_w1_norm, length_bin_tv). Each cell: value "
                "[95% bootstrap CI over items]. Read every row against the held-out humans (the same items' gold "
                "responses against the same train pool): that is the attainable ceiling here."),
    "oracle": ("Oracle-length view: items grouped by the training buckets, i.e. by the GOLD response's length bin, "
               "which no model sees. A method is rewarded here for guessing the gold length; shown for "
               "reference, not as the headline."),
}
SAME_PROMPT_NOTE = ("Items that have another human reply to the same prompt (OASST alternatives): every method on "
                    "these items, the held-out (gold) humans on them, and the same-prompt humans — another person "
                    "answering the very same prompt, scored as a method (utility = agreement with the gold). The "
                    "same-prompt row is the attainable ceiling for these items.")
TEST_NOTE = ("Paired tests on the same items and bootstrap draws: diff = badness(A) − badness(B) (distance from "
             "the metric's ideal; negative = A better), 95% CI, two-sided p from the bootstrap SE, and p after "
             "Holm's correction over every row of the table. 'yes' = significant at 0.05 after correction.")


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    if not cell:
        return "n/a"
    ci = cell.get("ci")
    return fmt(cell["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def _metric_header(metrics: Sequence[str]) -> list[str]:
    registry = load_all()
    return [f"{m} {registry[m].arrow}" for m in metrics]


def table_for(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per method (or human reference), one 'value [CI]' cell per metric."""
    used = [m for m in metrics if any(r.get(m) for r in rows.values())]
    return ["", *_metric_header(used)], [[name, *[_cell_text(r.get(m)) for m in used]] for name, r in rows.items()]


def _slice_title(name: str) -> str:
    return "all groups" if name == "overall" else name.replace("by_language/", "language ").replace(
        "by_track/", "track ")


def na_lines(block: Mapping[str, Any]) -> list[str]:
    """'metric: group — reason' for every metric without a value in a group."""
    out = []
    for group, info in sorted(block["groups"].items()):
        for metric, reason in sorted(info["na"].items()):
            if reason.startswith("no utility"):
                continue
            out.append(f"{metric} n/a in {group}: {reason}")
    return out


def view_blocks(runs: Mapping[str, Mapping[str, Any]], view: str, *,
                tests: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, slices: Sequence[str] | None = None,
                metrics: Sequence[str] = HEADLINE_METRICS, heading: str = "h2") -> list[Block]:
    """Tables of one view (all items; same-prompt items), and the paired tests (contrasts.contrast_tests)."""
    first = next(iter(runs.values()))
    key = " | ".join(first.get("context_key") or ["language", "track", "family"])
    tables = headline_tables(runs, view, metrics)
    title = ("Headline: context buckets" if view == "context" else "Oracle-length buckets") + f" ({view} view)"
    blocks: list[Block] = [(heading, title), ("p", VIEW_NOTE[view].format(key=key))]
    sub = "h3" if heading == "h2" else "h4"
    for name, rows in tables["all_items"].items():
        if slices is not None and name not in slices:
            continue
        blocks += [(sub, _slice_title(name)), ("table", table_for(rows, metrics))]
    if tables["same_prompt_items"]:
        blocks += [(sub, "Items with a same-prompt human reply"), ("p", SAME_PROMPT_NOTE)]
        for name, rows in tables["same_prompt_items"].items():
            if slices is not None and name not in slices:
                continue
            blocks += [("p", _slice_title(name)), ("table", table_for(rows, metrics))]
    else:
        blocks.append(("p", "Same-prompt human ceiling: absent (no suite item has another human reply to its "
                            "prompt)."))
    if tests:
        blocks += [(sub, "Paired tests"), ("p", TEST_NOTE)]
        for name, rows in tests.items():
            if slices is not None and name not in slices:
                continue
            header = ["A − B", "metric", "diff [95% CI]", "p", "p (Holm)", "significant"]
            body = [[f"{r['a']} − {r['b']}", r["metric"],
                     fmt(r["diff"]) + (f" [{fmt(r['ci'][0])}, {fmt(r['ci'][1])}]" if r["ci"] else ""),
                     fmt(r["p"], 4), fmt(r["p_holm"], 4), "yes" if r["significant"] else "no"] for r in rows]
            blocks += [("p", _slice_title(name)), ("table", (header, body))]
    na = na_lines(first["headline"][view]["ceiling"])
    if na:
        blocks += [("p", "Not available (held-out humans): " + "; ".join(na))]
    return blocks


def reach_blocks(runs: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    """Whether the decoding budget let each method reach every length bin the humans use."""
    header = ["method", "responses cut at max_new_tokens", "longest cut response (length tokens)",
              "bins out of reach (human share)"]
    rows = []
    for name, run in runs.items():
        reach = run.get("reach") or {}
        if not reach.get("known"):
            rows.append([name, "unknown", "–", reach.get("note", "–")])
            continue
        bins = ", ".join(f"{b['bin']} (≥{b['from']}: {b['human_share']:.1%} of humans)"
                         for b in reach["out_of_reach"]) or "none"
        rows.append([name, f"{reach['truncated']} of {reach['n']} ({reach['truncated_share']:.1%})",
                     fmt(reach["longest_cut"]), bins])
    return [("h2", "Decoding reach"), ("p", "A bin is out of reach when it starts above the longest response that "
                                            "max_new_tokens cut off: no response of the method could get there."),
            ("table", (header, rows))]


def render_md(blocks: Sequence[Block]) -> list[str]:
    """Markdown lines of the blocks."""
    marks = {"h2": "##", "h3": "###", "h4": "####"}
    lines: list[str] = []
    for kind, payload in blocks:
        if kind in marks:
            lines += [f"{marks[kind]} {payload}", ""]
        elif kind == "p":
            lines += [str(payload), ""]
        else:
            lines += [md_table(*payload), ""]
    return lines


def render_html(blocks: Sequence[Block]) -> list[str]:
    """HTML fragments of the blocks."""
    out = []
    for kind, payload in blocks:
        if kind in ("h2", "h3", "h4"):
            out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f'<p class="note">{html.escape(str(payload))}</p>')
        else:
            out.append(html_table(*payload))
    return out

