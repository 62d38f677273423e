"""`polyalign generate`: batched generation with one shared decoding config (top-level verb)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config, parse_override, validate_config
from ..data.stratify import stratified_sample
from ..generate import DecodingConfig, generate_predictions, load_records_arg
from ..io import read_json
from ..models.loading import check_model_source
from ..progress import quiet_libraries
from .common import console, progress


def generate(
        model: str = typer.Option(..., "--model", help="model folder or Hub id"),
        records: str = typer.Option(..., "--records", help="DATA_DIR[:split] (default split: test) or a "
                                                          "JSONL file of records (e.g. suite/items.jsonl)"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (predictions.jsonl, manifest.json)"),
        config: Path | None = typer.Option(None, "--config", help="decoding config YAML (DecodingConfig)"),
        set_: list[str] = typer.Option([], "--set", help="override a decoding key, e.g. --set num_samples=2"),
        profile: bool = typer.Option(False, "--profile", help="profile system prompt (language, track, "
                                                             "family), as used in training"),
        limit: int | None = typer.Option(None, "--limit", help="only the first N records"),
        per_bucket: int | None = typer.Option(None, "--per-bucket", help="a seeded sample of at most N "
                                                                       "records per bucket"),
        backend: str = typer.Option("auto", "--backend", help="auto | transformers | vllm"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:i]"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Generate responses for records with the chat template, batched with left padding, seeded and
    resumable (rows already in OUT/predictions.jsonl are skipped).

    Example: [bold]polyalign generate --model runs/bucket_sft --records runs/data:test --out runs/gen/bucket_sft[/bold]

    Policy samples for the critic and pairs: [bold]polyalign generate --model runs/sft --records runs/data:train --per-bucket 30 --out runs/samples/sft[/bold]
    """
    overrides = parse_override(set_) if set_ else {}
    decoding = (load_config(config, DecodingConfig, overrides or None) if config
                else validate_config(overrides, DecodingConfig))
    check_model_source(model)
    quiet_libraries()
    items, described = load_records_arg(records)
    if per_bucket is not None:
        items = stratified_sample(items, decoding.seed, per_group=per_bucket)
    if limit is not None:
        items = items[:limit]
    path = _generate(model, items, out, decoding, described, profile=profile, backend=backend, device=device,
                     quiet=quiet)
    manifest = read_json(out / "manifest.json")
    console.print(f"{manifest['n_rows']} predictions in [bold]{path}[/bold] "
                  f"({manifest['n_generated_now']} new, {manifest['tokens_per_second']} tokens/s)")


def _generate(model: str, items: list, out: Path, decoding: DecodingConfig, described: str, *, quiet: bool,
              **options: str | bool) -> Path:
    """generate_predictions, with a progress bar unless quiet."""
    if quiet:
        return generate_predictions(model, items, out, decoding, **options)
    with progress() as bar:
        task = bar.add_task(f"generating ({described})", total=len(items))
        return generate_predictions(model, items, out, decoding, **options,
                                    on_batch=lambda done, total: bar.update(task, completed=done, total=total))


def register(app: typer.Typer) -> None:
    """Add the `generate` verb to the root app."""
    app.command("generate")(generate)
