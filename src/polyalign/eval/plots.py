"""Matplotlib figures for the reports, returned as base64 PNG strings (embedded in report.html as data: URIs)."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_path  # noqa: E402
from .registry import FAMILIES, load_all  # noqa: E402

HUMAN, MODEL, POOL = "#1f77b4", "#ff7f0e", "#b0b0b0"
METHOD_COLORS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


# CJK fonts matplotlib falls back to for characters DejaVu Sans lacks (method labels are free text): the one `make
# browser` installs for the report's screenshots (fonts-wqy-microhei), then the usual Noto / Source Han families.
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC")


@functools.cache
def text_fonts() -> list[str]:
    """font.family for figures with free-text labels: DejaVu Sans, then the installed CJK fonts as fallbacks
    (a font installed after matplotlib built its font cache is added from the system font folders)."""
    from matplotlib import font_manager

    def known() -> list[str]:
        installed = {f.name for f in font_manager.fontManager.ttflist}
        return [name for name in CJK_FONTS if name in installed]

    if not known():
        for path in font_manager.findSystemFonts():
            if any(tag in Path(path).name.lower() for tag in ("wqy", "notosanscjk", "sourcehansans")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # an unreadable font file: go without it
                    continue
    return ["DejaVu Sans", *known()]


def to_png(fig: Any, path: str | Path) -> Path:
    """Write a figure as a PNG file atomically and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def to_base64(fig: Any) -> str:
    """Encode a figure as a base64 PNG and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _goodness(spec: Any, values: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Per-bucket 'goodness' (higher = better) used only for colouring."""
    if spec.direction == "higher":
        return values
    if spec.direction == "lower":
        return -values
    if spec.direction == "target 0.5":
        return -np.abs(values - 0.5)
    return -np.abs(values - ceiling)


def family_heatmap(metrics: Mapping[str, Any], family: str, buckets: Sequence[str]) -> str | None:
    """Buckets × metrics of one family: numbers annotated, colours = goodness scaled per column (green good)."""
    registry = load_all()
    names = [n for n, m in metrics.items() if m["family"] == family and m["scope"] == "bucket"
             and m["model"].get("per_bucket")]
    if not names or not buckets:
        return None
    values = np.full((len(buckets), len(names)), np.nan)
    colors = np.full_like(values, np.nan)
    for j, name in enumerate(names):
        per = metrics[name]["model"]["per_bucket"]
        ceil = (metrics[name].get("ceiling") or {}).get("per_bucket", {})
        col = np.array([per.get(b, np.nan) for b in buckets], dtype=float)
        cc = np.array([ceil.get(b, np.nan) for b in buckets], dtype=float)
        values[:, j] = col
        good = _goodness(registry[name], col, cc)
        finite = np.isfinite(good)
        if finite.sum() > 1 and np.ptp(good[finite]) > 0:
            colors[:, j] = (good - np.nanmin(good)) / np.ptp(good[finite])
        elif finite.any():
            colors[finite, j] = 0.5
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3.5, 0.28 * len(buckets) + 1.4))
    ax.imshow(np.ma.masked_invalid(colors), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(buckets)):
        for j in range(len(names)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)), [f"{n} {registry[n].arrow}" for n in names], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(buckets)), buckets, fontsize=7)
    ax.set_title(f"{family}: per bucket (colour: better → green, per column)", fontsize=10)
    return to_base64(fig)


def log_bins(values: np.ndarray, n: int) -> np.ndarray:
    """Log-spaced histogram edges covering the values (lengths clipped at 1)."""
    values = np.maximum(np.asarray(values, float), 1.0)
    lo, hi = float(values.min()), float(values.max())
    return np.geomspace(lo * 0.95, hi * 1.05 if hi > lo else lo * 2, n + 1)


def length_histograms(buckets: Sequence[str], human: Mapping[str, np.ndarray], model: Mapping[str, np.ndarray],
                      *, model_label: str = "model", cols: int = 5) -> str | None:
    """Small multiples: per bucket, the distribution of response lengths (log scale) of the human pool and the
    model."""
    buckets = [b for b in buckets if len(human.get(b, [])) and len(model.get(b, []))]
    if not buckets:
        return None
    rows = int(np.ceil(len(buckets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.2 * rows), squeeze=False)
    for ax, bucket in zip(axes.ravel(), buckets):
        h = np.maximum(np.asarray(human[bucket], float), 1.0)
        m = np.maximum(np.asarray(model[bucket], float), 1.0)
        bins = log_bins(np.concatenate([h, m]), 24)
        ax.hist(h, bins=bins, density=True, histtype="stepfilled", alpha=0.45, color=HUMAN, label="human pool")
        ax.hist(m, bins=bins, density=True, histtype="step", linewidth=1.6, color=MODEL, label=model_label)
        ax.set_xscale("log")
        ax.set_title(bucket, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes.ravel()[len(buckets):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Response length (length-rule tokens) per bucket: human pool vs " + model_label, fontsize=10)
    fig.tight_layout()
    return to_base64(fig)


def length_overlay(human: Mapping[str, np.ndarray], methods: Mapping[str, Mapping[str, np.ndarray]]) -> str | None:
    """One panel per language: the human pool's length distribution and every method's, overlaid (log scale)."""
    groups = [g for g in human if len(human[g])]
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 3.8), squeeze=False)
    for ax, group in zip(axes[0], groups):
        h = np.maximum(np.asarray(human[group], float), 1.0)
        bins = log_bins(np.concatenate([h] + [np.asarray(m[group], float) for m in methods.values()
                                              if len(m.get(group, []))]), 30)
        ax.hist(h, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=HUMAN, label="human pool")
        for k, (name, per_group) in enumerate(methods.items()):
            values = np.maximum(np.asarray(per_group.get(group, []), float), 1.0)
            if len(values):
                ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.6,
                        color=METHOD_COLORS[k % len(METHOD_COLORS)], label=name)
        ax.set_xscale("log")
        ax.set_title(f"response length, length-rule tokens ({group})", fontsize=10)
        ax.set_yticks([])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return to_base64(fig)


def frontier_plot(series: Mapping[str, Mapping[str, tuple[float, float]]],
                  frontiers: Mapping[str, Sequence[str]], info: Mapping[str, Mapping[str, str]]) -> str | None:
    """Utility (f1) vs naturalness per bucket for one or more methods, with each method's Pareto frontier."""
    if not any(series.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 5.2))
    markers = {"en": "o", "zh": "s"}
    for k, (method, points) in enumerate(series.items()):
        color = METHOD_COLORS[k % len(METHOD_COLORS)]
        for bucket, (u, v) in points.items():
            ax.scatter(u, v, color=color, marker=markers.get(info.get(bucket, {}).get("language"), "o"),
                       alpha=0.6, s=28, edgecolors="none" if info.get(bucket, {}).get("track") == "single"
                       else "black")
        front = [points[b] for b in frontiers.get(method, []) if b in points]
        if front:
            us = [0.0] + [p[0] for p in front]
            vs = [front[0][1]] + [p[1] for p in front]
            ax.step(us + [us[-1]], vs + [0.0], where="post", color=color, linewidth=1.8, label=f"{method} frontier")
    ax.set_xlabel("utility: token F1 (per bucket)")
    ax.set_ylabel("naturalness: 1 − 2|C2ST acc − 0.5|")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_title("Utility–naturalness per bucket (○ en, □ zh; black edge = multi-turn)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return to_base64(fig)


def projection_plot(pool_xy: np.ndarray, human_xy: np.ndarray, sides: Mapping[str, np.ndarray],
                    languages: Mapping[str, np.ndarray] | None = None, pool_languages: np.ndarray | None = None,
                    human_languages: np.ndarray | None = None, *, per_method: bool = False) -> str | None:
    """2-D projection (coordinates from a PCA fit on the pool's featurizer embeddings) of the human pool, the
    held-out humans and each method's responses. Panels: overall and one per language; with `per_method`, one
    panel per method instead (side by side)."""
    if len(pool_xy) < 3:
        return None
    langs = sorted(set(pool_languages.tolist())) if pool_languages is not None else []
    if per_method:
        panels = [(name, None, {name: xy}) for name, xy in sides.items()]
    else:
        panels = [("all", None, sides)] + [(lang, lang, sides) for lang in langs]
    cols = min(len(panels), 3)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False)
    names = list(sides)
    for ax, (title, lang, shown) in zip(axes.ravel(), panels):
        def pick(arr: np.ndarray, arr_langs: np.ndarray | None, lang: str | None = lang) -> np.ndarray:
            return arr if lang is None or arr_langs is None else arr[arr_langs == lang]

        p = pick(pool_xy, pool_languages)
        ax.scatter(p[:, 0], p[:, 1], s=4, color=POOL, alpha=0.4, label="human pool (train)")
        h = pick(human_xy, human_languages)
        ax.scatter(h[:, 0], h[:, 1], s=8, color=HUMAN, alpha=0.6, label="held-out humans (suite items)")
        for name, xy in shown.items():
            e = pick(xy, (languages or {}).get(name))
            k = names.index(name)
            ax.scatter(e[:, 0], e[:, 1], s=9, alpha=0.6, marker="x", color=METHOD_COLORS[k % len(METHOD_COLORS)],
                       label=name)
        ax.set_title(f"featurizer space, 2-D PCA ({title})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return to_base64(fig)


def method_bars(table: Mapping[str, Mapping[str, float | None]], ceilings: Mapping[str, float | None],
                metric_names: Sequence[str]) -> str | None:
    """Small multiples: one bar chart per metric, one bar per method, the human ceiling as a dashed line."""
    registry = load_all()
    names = [n for n in metric_names if any(table[m].get(n) is not None for m in table)]
    if not names:
        return None
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    methods = list(table)
    for ax, name in zip(axes.ravel(), names):
        vals = [table[m].get(name) for m in methods]
        ax.bar(range(len(methods)), [v if v is not None else 0 for v in vals],
               color=[METHOD_COLORS[k % len(METHOD_COLORS)] for k in range(len(methods))])
        ceil = ceilings.get(name)
        if ceil is not None:
            ax.axhline(ceil, color=HUMAN, linestyle="--", linewidth=1.4, label="human ceiling")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{name} {registry[name].arrow}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return to_base64(fig)


def family_order() -> tuple[str, ...]:
    """Families in report order."""
    return FAMILIES
