"""`polyalign pairs ...`: build preference pairs (human over model, human-ranked, critic-ranked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import load_config, validate_config
from .common import console, make_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                  help="Preference pairs for DPO / HDPO, with critic distances and weights.")


def register(root: typer.Typer) -> None:
    """Add the `pairs` group (build) to the root app."""
    root.add_typer(app, name="pairs")


@app.command("build")
def build(config: Path | None = typer.Argument(None, help="pairs config YAML (configs/pairs/pairs.yaml); "
                                                        "options below override it"),
          data: Path | None = typer.Option(None, "--data", help="data build directory"),
          predictions: list[Path] = typer.Option([], "--predictions",
                                                 help="policy predictions.jsonl on the split's prompts (repeatable)"),
          critic: Path | None = typer.Option(None, "--critic", help="critic bundle directory"),
          out: Path | None = typer.Option(None, "--out", "-o", help="output directory"),
          types: str | None = typer.Option(None, "--types",
                                           help="comma-separated: human_over_model,human_ranked,critic_ranked"),
          split: str | None = typer.Option(None, "--split", help="records to pair (default train)"),
          profile: bool | None = typer.Option(None, "--profile/--no-profile",
                                              help="prepend the profile system prompt"),
          allow_weak: bool = typer.Option(False, "--allow-weak", help="use a weak or collapsed critic anyway"),
          ) -> None:
    """Build pairs.jsonl: chosen/rejected texts, prompt messages, critic distances (one batched call) and
    weights; print pairs per type and bucket and the weight and distance-gap statistics.

    Example: [bold]polyalign pairs build --data runs/data --predictions runs/samples/sft/predictions.jsonl
    --critic runs/critic --out runs/pairs[/bold]
    """
    # Lazy on purpose: polyalign.pairs imports scipy through the critic's distances (0.21 s measured).
    from ..pairs import PairsConfig, build_pairs_stage

    overrides: dict[str, Any] = {k: v for k, v in {
        "data": str(data) if data else None, "critic": str(critic) if critic else None,
        "out": str(out) if out else None, "split": split, "profile": profile,
        "types": [t.strip() for t in types.split(",") if t.strip()] if types else None,
        "predictions": [str(p) for p in predictions] or None, "allow_weak": True if allow_weak else None,
    }.items() if v is not None}
    cfg = load_config(config, PairsConfig, overrides) if config else validate_config(overrides, PairsConfig)
    with console.status("building pairs"):
        out_dir, summary = build_pairs_stage(cfg)
    print_summary(summary)
    console.print(f"pairs: {out_dir / 'pairs.jsonl'}")


def print_summary(summary: dict[str, Any]) -> None:
    """Pairs per type and bucket, weights, distance gaps, skips."""
    gaps = summary.get("d_gap_by_type", {})
    rows = [[t, n, gaps.get(t, {}).get("q50"), gaps.get(t, {}).get("mean")] for t, n in summary["by_type"].items()]
    console.print(make_table(f"{summary['n_pairs']} pairs", ["type", "pairs", "median d- - d+", "mean d- - d+"], rows))
    console.print(make_table("Pairs per bucket", ["bucket", "pairs"], list(summary["by_bucket"].items())))
    w = summary["weight"]
    console.print(f"weights: min {w['min']:.3g}, mean {w['mean']:.3g}, max {w['max']:.3g}, std {w['std']:.3g}; "
                  f"chosen closer to human support in {summary['share_chosen_closer']:.1%} of pairs")
    if summary["skipped"]:
        console.print(make_table("Skipped", ["reason", "count"], list(summary["skipped"].items())))
