"""`polyalign train hdpo` and `polyalign train dpo`: preference training on a pairs.jsonl (registered on the
`train` group by `register`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import parse_override
from ..io import read_json
from ..progress import quiet_libraries
from .common import console, err_console, make_table
from .train import app as train_app
from .train import rich_progress_callback


def print_bucket_preference_table(summary: dict[str, Any] | None, title: str) -> None:
    """Per-bucket held-out reward accuracy and margin, then the macro accuracy and the worst bucket."""
    if not summary or not summary.get("buckets"):
        return
    rows = [[name, v["pairs"], v["reward_accuracy"], v["margin"]] for name, v in sorted(summary["buckets"].items())]
    table = make_table(title, ["bucket", "pairs", "reward acc", "margin"], rows)
    table.columns[0].no_wrap = True
    console.print(table)
    console.print(f"macro accuracy {summary['macro_accuracy']:.4f}  worst {summary['worst_bucket']} "
                  f"({summary['worst_accuracy']:.4f})  pair accuracy {summary['pair_accuracy']:.4f}")


def _train(config: Path, set_: list[str], quiet: bool, plain_dpo: bool) -> None:
    # Lazy on purpose, like every trainer import in the CLI: polyalign.train.hdpo takes 0.13 s to import and
    # `accelerate` 1.2 s (measured), which `polyalign --help` and the other verbs do not need.
    from ..train.hdpo import as_plain_dpo, load_hdpo_config, run_hdpo

    cfg = load_hdpo_config(config, parse_override(set_) if set_ else None)
    if plain_dpo:
        cfg, notes = as_plain_dpo(cfg)
        for note in notes:
            err_console.print(f"[yellow]note:[/yellow] train dpo is plain DPO: {note}")
    quiet_libraries(tqdm=quiet)  # tqdm: TRL's reference-precompute progress bar
    callbacks = [] if quiet else [rich_progress_callback()]
    out = run_hdpo(cfg, callbacks=callbacks,
                   log=None if quiet else (lambda msg: err_console.print(f"[dim]{msg}[/dim]")))
    from accelerate import PartialState

    manifest_path = out / "manifest.json"
    if PartialState().is_main_process and manifest_path.exists():
        manifest = read_json(manifest_path)
        final = manifest.get("final_eval") or {}
        print_bucket_preference_table(final.get("summary"), f"Held-out pairs after {manifest.get('method')} "
                                                            f"({manifest.get('global_steps')} steps, "
                                                            f"{manifest.get('wall_time_s')} s)")
        on_policy = manifest.get("on_policy")
        if on_policy:
            console.print(f"on-policy term: {on_policy['calls']} calls, {on_policy['seconds']} s, "
                          f"{100 * on_policy['time_share']:.1f}% of the training-step time")
        console.print(f"model written to [bold]{out}[/bold]")


_SET_HELP = "override a config key, e.g. --set training.max_steps=50"


def hdpo(config: Path = typer.Argument(..., help="HDPO config YAML (configs/train/hdpo.yaml)"),
         set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """HDPO: weighted sigmoid DPO with a global normalizer + λ · distribution regularizer (critic distances
    from the pairs file) + γ · SFT anchor, and an optional on-policy critic term. Writes an HF model folder with
    manifest.json and bucket_metrics.jsonl, and prints per-bucket held-out reward accuracy.

    Example: [bold]polyalign train hdpo configs/train/hdpo.yaml --set output_dir=runs/hdpo[/bold]
    Multi-GPU: [bold]accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m polyalign.cli train hdpo CONFIG[/bold]
    """
    _train(config, set_, quiet, plain_dpo=False)


def dpo(config: Path = typer.Argument(..., help="DPO config YAML (configs/train/dpo.yaml)"),
        set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Plain sigmoid DPO: the HDPO trainer with the regularizer, the anchor, the pair weights and the on-policy
    term forced off (a note is printed for each one the config had on).

    Example: [bold]polyalign train dpo configs/train/dpo.yaml --set output_dir=runs/dpo[/bold]
    """
    _train(config, set_, quiet, plain_dpo=True)


def register(root: typer.Typer) -> None:
    """Add `train hdpo` and `train dpo` to the `train` group (polyalign.cli.train registers the group)."""
    train_app.command("hdpo")(hdpo)
    train_app.command("dpo")(dpo)
