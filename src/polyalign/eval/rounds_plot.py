"""rounds.png of a multi-round method (stage rounds_<method>), drawn from its per-round table (eval/rounds.py):
the round critic's held-out AUC (overall, without the length features, length-matched) with the min_auc gate;
the mean critic distance of the policy's samples against the humans' of the same prompts; mean output length
against the humans'. Rows without a critic (the last round's model, iterated SPIN) are gaps in the first two
panels; a method without any critic distance shows the closed-form Mahalanobis distance in the second."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plots import HUMAN, MODEL, plt, text_fonts, to_png

AUC_LINES = (("critic_auc", "AUC", "#d62728", "-"), ("critic_auc_without_length", "AUC w/o length features",
                                                        "#9467bd", "--"),
             ("critic_auc_length_matched", "AUC length-matched", "#8c564b", ":"))


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """A column as floats, None (and anything not a number) as NaN."""
    out = []
    for row in rows:
        value = row.get(key)
        out.append(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan)
    return np.array(out, dtype=float)


def _pair(ax: Any, x: np.ndarray, model: np.ndarray, human: np.ndarray, what: str) -> None:
    ax.plot(x, model, marker="o", color=MODEL, label=f"policy {what}")
    ax.plot(x, human, marker="s", color=HUMAN, linestyle="--", label=f"humans {what} (same prompts)")


def rounds_figure(table: Mapping[str, Any]) -> Any:
    """The three-panel figure of a rounds table (rounds.json's contents)."""
    rows = list(table["rows"])
    x = np.arange(1, len(rows) + 1, dtype=float)
    ticks = [f"{r['round']}\n{r.get('policy', '')}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for key, label, color, style in AUC_LINES:
        ax.plot(x, _column(rows, key), marker="o", color=color, linestyle=style, label=label)
    gate = _column(rows, "critic_min_auc")
    if np.isfinite(gate).any():
        ax.step(x, gate, where="mid", color="black", linewidth=1.2, linestyle="-.", label="min_auc gate")
    ax.axhline(0.5, color="#999999", linewidth=0.8)
    if not np.isfinite(_column(rows, "critic_auc")).any():
        ax.text(0.5, 0.5, "no critic (iterated SPIN)", ha="center", va="center", transform=ax.transAxes)
    aucs = np.concatenate([_column(rows, key) for key, *_ in AUC_LINES])
    low = float(np.nanmin(aucs)) if np.isfinite(aucs).any() else 0.5
    ax.set_ylim(min(0.4, low - 0.05), 1.02)
    ax.set_title("round critic: held-out AUC human vs policy", fontsize=10)
    d_model, d_human = _column(rows, "mean_distance"), _column(rows, "mean_distance_human")
    if np.isfinite(d_model).any() or np.isfinite(d_human).any():
        _pair(axes[1], x, d_model, d_human, "d")
        axes[1].set_title("mean critic distance (round k's critic)", fontsize=10)
    else:
        _pair(axes[1], x, _column(rows, "mahalanobis"), _column(rows, "mahalanobis_human"), "Mahalanobis")
        axes[1].set_title("no critic: closed-form Mahalanobis distance", fontsize=10)
    _pair(axes[2], x, _column(rows, "length_tokens"), _column(rows, "length_tokens_human"), "length")
    axes[2].set_title("mean output length (length-rule tokens)", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlim(0.6, len(rows) + 0.4)
        ax.set_xlabel("round k: samples of the policy entering it", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Rounds: {table.get('method', '')}", fontsize=11)
    fig.tight_layout()
    return fig


def write_rounds_plot(table: Mapping[str, Any], path: str | Path) -> Path:
    """Draw rounds_figure(table) and write it as a PNG (atomically); labels fall back to a CJK font."""
    with plt.rc_context({"font.family": text_fonts()}):  # fonts are resolved when the figure is drawn
        return to_png(rounds_figure(table), path)
