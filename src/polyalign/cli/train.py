"""`polyalign train ...`: supervised fine-tuning (plain or Bucket-Aware). Preference training verbs (dpo, hdpo)
register here too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import parse_override
from ..io import read_json
from ..progress import progress, quiet_libraries
from .common import console, err_console, make_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                  help="Train models: SFT / Bucket-Aware SFT (and preference training).")


def register(root: typer.Typer) -> None:
    """Add the `train` group (sft; polyalign.cli.preference adds dpo and hdpo) to the root app."""
    root.add_typer(app, name="train")


def rich_progress_callback() -> Any:
    """A transformers TrainerCallback that shows a rich progress bar with the latest loss (main process only)."""
    from transformers import TrainerCallback  # deferred: transformers costs ~5 s at CLI start (measured)

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero:
                self.bar = progress()
                self.bar.start()
                self.task = self.bar.add_task("training", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if self.bar is not None and logs and "loss" in logs:
                self.bar.update(self.task, description=f"training (loss {float(logs['loss']):.3f})")

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

    return RichProgress()


def print_bucket_loss_table(final: dict[str, Any], title: str = "Per-bucket loss (final model)") -> None:
    """Per-bucket token loss on train and val, then macro mean, spread (max - min) and worst bucket per split."""
    splits = [s for s in ("train", "val") if final.get(s)]
    if not splits:
        return
    names = sorted({b for s in splits for b in final[s]["buckets"]})
    rows = []
    for name in names:
        row: list[Any] = [name]
        for split in splits:
            bucket = final[split]["buckets"].get(name)
            row.append(bucket["loss"] if bucket else None)
        val = final.get("val", {}).get("buckets", {}).get(name) if "val" in splits else None
        row.append(val["tokens"] if val else None)
        rows.append(row)
    columns = ["bucket", *[f"{s} loss" for s in splits], "val tokens"]
    table = make_table(title, columns, rows)
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max(len(n) for n in names)
    console.print(table)
    for split in splits:
        f = final[split]
        console.print(f"{split}: macro mean {f['macro']:.4f}  spread {f['spread']:.4f}  worst "
                      f"{f['worst_bucket']} ({f['worst_loss']:.4f})  token mean {f['token_mean']:.4f}")


@app.command("sft")
def sft(config: Path = typer.Argument(..., help="SFT config YAML (configs/train/sft.yaml or bucket_sft.yaml)"),
        set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. --set training.max_steps=50"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Fine-tune a causal LM on a data directory: plain SFT (balance.enabled: false) or Bucket-Aware SFT
    (bucket-temperature sampler, per-bucket loss normalization with a global normalizer, optional DRO).
    Writes an HF model folder with manifest.json and bucket_losses.jsonl, and prints per-bucket losses.

    Example: [bold]polyalign train sft configs/train/bucket_sft.yaml --set output_dir=runs/bucket_sft[/bold]
    Multi-GPU: [bold]accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m polyalign.cli train sft CONFIG[/bold]
    """
    # deferred: train.sft imports trl, torch and accelerate, ~5-7 s at CLI start (measured)
    from accelerate import PartialState

    from ..train.sft import load_sft_config, run_sft

    cfg = load_sft_config(config, parse_override(set_) if set_ else None)
    quiet_libraries()
    callbacks = [] if quiet else [rich_progress_callback()]
    out = run_sft(cfg, callbacks=callbacks, log=None if quiet else (lambda msg: err_console.print(f"[dim]{msg}[/dim]")))
    manifest_path = out / "manifest.json"
    if PartialState().is_main_process and manifest_path.exists():
        manifest = read_json(manifest_path)
        print_bucket_loss_table(manifest.get("final_bucket_losses") or {},
                                title=f"Per-bucket loss after {manifest.get('method')} "
                                      f"({manifest.get('global_steps')} steps, {manifest.get('wall_time_s')} s)")
        console.print(f"model written to [bold]{out}[/bold]")
