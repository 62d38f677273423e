"""The "Rounds" section of a comparison report: for each method with a per-round table (rounds_<method>: rounds.json,
rounds.png), the plot and the table. report.html embeds the plot (the page stays self-contained); report.md links
to it, relative to the report's folder."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..artifacts import ROUNDS_PLOT
from ..errors import InputError
from ..io import read_json
from .rounds import length_rows, table_rows
from .tables import html_table, md_table

NOTE = ("Row k: samples (train prompts) of the policy entering round k, scored by round k's critic; the last row is "
        "the last round's model (no critic). AUC: the round critic's held-out AUC human vs policy (dash-dotted "
        "line in the plot: its min_auc gate). A falling AUC with lengths near the humans' is the policy moving "
        "toward human support; a falling critic distance with a flat Mahalanobis distance is the critic being "
        "fooled. See docs/hdpo.md, Rounds.")


def load_rounds(rounds: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """{method: {"dir", "table", "plot" (path or None)}} for {method: rounds folder}; InputError when a folder
    has no rounds.json."""
    out = {}
    for name, folder in rounds.items():
        folder = Path(folder)
        if not (folder / "rounds.json").exists():
            raise InputError("not a rounds table (no rounds.json; the pipeline's rounds_<method> stage writes it)",
                             file=folder)
        plot = folder / ROUNDS_PLOT
        out[name] = {"dir": folder, "table": read_json(folder / "rounds.json"),
                     "plot": plot if plot.exists() else None}
    return out


def render_md(loaded: Mapping[str, Mapping[str, Any]], report_dir: Path) -> list[str]:
    """The section's markdown lines (empty without tables); the plot linked relative to `report_dir`."""
    if not loaded:
        return []
    lines = ["## Rounds", "", NOTE, ""]
    for name, got in loaded.items():
        lines += [f"### {name}", ""]
        if got["plot"] is not None:
            link = Path(os.path.relpath(got["plot"], report_dir)).as_posix()
            lines += [f"![{name}: per-round critic AUC, distances and lengths]({link})", ""]
        lines += [md_table(*table_rows(got["table"])), "", "Output length per context group, model / human:", "",
                  md_table(*length_rows(got["table"])), ""]
    return lines


def render_html(loaded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The section's HTML (empty without tables), the plot embedded as a data: URI."""
    if not loaded:
        return []
    body = ['<section id="rounds"><h2>Rounds</h2>', f'<p class="note">{html.escape(NOTE)}</p>']
    for name, got in loaded.items():
        body.append(f"<h3>{html.escape(name)}</h3>")
        if got["plot"] is not None:
            data = base64.b64encode(got["plot"].read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(name)}: rounds" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(name)}: per-round critic AUC, distances and lengths "
                        f"({html.escape(str(got['plot']))})</figcaption></figure>")
        body += [html_table(*table_rows(got["table"]), left=2),
                 '<p class="note">Output length per context group, model / human:</p>',
                 html_table(*length_rows(got["table"]))]
    body.append("</section>")
    return body
