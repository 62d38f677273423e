"""`polyalign data ...`: build a data directory from sources, show its bucket table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from ..data.build import build_dataset, load_bucket_table, load_report
from ..data.sources import load_data_config
from ..io import read_json
from .common import console, err_console, make_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                  help="Build and inspect PolyAlign data directories (records, buckets, features, references).")


def register(root: typer.Typer) -> None:
    """Add the `data` group (build, show) to the root app."""
    root.add_typer(app, name="data")


@app.command("build")
def build(config: Path = typer.Argument(..., help="data config YAML (see configs/data/bundled.yaml)"),
          out: Path = typer.Option(..., "--out", "-o", help="output data directory (replaced only on success)"),
          skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                            help="skip and count invalid lines instead of stopping at the first"),
          seed: int | None = typer.Option(None, "--seed", help="override the config's split seed"),
          engine: str = typer.Option("auto", "--engine",
                                     help="stream (records never all in memory; Arrow files in the output's "
                                          "temporary folder), memory (the in-memory reference build) or auto "
                                          "(stream above 64 MiB of input or with --num-proc > 1); same outputs"),
          num_proc: int = typer.Option(1, "--num-proc", min=1,
                                       help="worker processes for normalization and features (engine stream)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Read the sources of CONFIG, normalize, split by conversation, dedup, bucket, compute features and
    train-only references, and write them to --out.

    Example: [bold]polyalign data build configs/data/bundled.yaml --out runs/data --num-proc 2[/bold]
    """
    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["seed"] = seed
    if skip_invalid:
        overrides["skip_invalid"] = True
    cfg = load_data_config(config, overrides or None)
    summary = build_dataset(cfg, out, progress=not quiet, engine=engine, num_proc=num_proc)
    print_bucket_table(out)
    print_summary(summary)
    print_warnings(summary.get("warnings", []))


def print_warnings(warnings: list[str]) -> None:
    """The build's warnings (empty or fully filtered sources, buckets emptied by dedup), one per line, on stderr."""
    for warning in warnings:
        err_console.print(Text("warning: ", style="bold yellow") + Text(warning))


@app.command("show")
def show(data_dir: Path = typer.Argument(..., help="a directory written by `polyalign data build`")) -> None:
    """Print the bucket table (records per bucket per split) and the build summary of DATA_DIR.

    Example: [bold]polyalign data show runs/data[/bold]
    """
    print_bucket_table(data_dir)
    manifest = read_json(Path(data_dir) / "manifest.json")
    if "summary" in manifest:
        print_summary(manifest["summary"])
    else:
        report = load_report(data_dir)
        console.print(f"invalid: {report['invalid_total']}  filtered: {report['filtered_total']}  "
                      f"duplicates removed: {report['dedup']['removed']}")


def print_bucket_table(data_dir: str | Path) -> None:
    """The bucket table of a data directory as a rich table."""
    table = load_bucket_table(data_dir)
    rows = []
    for b in table["buckets"]:
        flag = "merged" if b["merged"] else ""
        if b["below_min"]:
            flag = (flag + " below_min").strip()
        rows.append([b["bucket_id"], b["train"], b["val"], b["test"], b["total"], flag])
    totals = [sum(b[s] for b in table["buckets"]) for s in ("train", "val", "test", "total")]
    rows.append(["[bold]all[/bold]", *totals, ""])
    console.print(make_table(f"Buckets ({'|'.join(table['key'])}; min {table['min_bucket_size']} train records)",
                             ["bucket", "train", "val", "test", "total", "merged?"], rows))


def print_summary(summary: dict[str, Any]) -> None:
    """Records per language/track/family and what was removed."""
    def fmt(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    rows = [["records", f"{summary['records']} in {summary['conversations']} conversations"],
            ["splits", fmt(summary["splits"])], ["language", fmt(summary["by_language"])],
            ["track", fmt(summary["by_track"])], ["family", fmt(summary["by_family"])],
            ["buckets", f"{summary['buckets']} ({summary['merges']} merges, {len(summary['below_min'])} below min)"],
            ["references", str(summary.get("references", "-"))],
            ["removed", f"invalid {summary['invalid']}, filtered {summary['filtered']}, duplicates "
                        f"{summary['duplicates_removed']}"]]
    if "wall_time_s" in summary:
        rows.append(["wall time", f"{summary['wall_time_s']:.1f} s"])
    rows.append(["output", summary["out_dir"]])
    console.print(make_table("Summary", ["", ""], rows))
