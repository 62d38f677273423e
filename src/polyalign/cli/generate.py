"""`polyalign generate`: batched generation with one shared decoding config (top-level verb)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config, parse_override, validate_config
from ..data.stratify import stratified_sample
from ..endpoint.config import endpoint_from_options
from ..endpoint.params import request_plan
from ..errors import InputError
from ..generate import DecodingConfig, generate_predictions, load_records_arg
from ..io import read_json
from ..models.loading import check_model_source
from ..progress import quiet_libraries
from .common import console, progress


def generate(
        model: str | None = typer.Option(None, "--model", help="model folder or Hub id (or --endpoint)"),
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
        endpoint: str | None = typer.Option(None, "--endpoint", help="an OpenAI-compatible server instead of "
                                            "--model: http://host:port (see docs/endpoints.md)"),
        model_name: str | None = typer.Option(None, "--model-name", help="the served model's name (with "
                                              "--endpoint)"),
        endpoint_config: Path | None = typer.Option(None, "--endpoint-config", help="EndpointConfig YAML "
                                                    "(concurrency, retries, timeouts, API key variable)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Generate responses for records with the chat template, batched with left padding, seeded and
    resumable (rows already in OUT/predictions.jsonl are skipped).

    Example: [bold]polyalign generate --model runs/bucket_sft --records runs/data:test --out runs/gen/bucket_sft[/bold]

    Policy samples for the critic and pairs: [bold]polyalign generate --model runs/sft --records runs/data:train --per-bucket 30 --out runs/samples/sft[/bold]

    A served model: [bold]polyalign generate --endpoint http://localhost:8000 --model-name my-model --records runs/suite/items.jsonl --out runs/gen/served[/bold]
    (API key from $POLYALIGN_API_KEY or $OPENAI_API_KEY; resumable; see docs/endpoints.md)
    """
    overrides = parse_override(set_) if set_ else {}
    decoding = (load_config(config, DecodingConfig, overrides or None) if config
                else validate_config(overrides, DecodingConfig))
    served = endpoint_from_options(endpoint, model_name, str(endpoint_config) if endpoint_config else None)
    if (model is None) == (served is None):
        raise InputError("give exactly one of --model PATH or --endpoint URL --model-name NAME")
    if served is not None:
        request_plan(decoding, served)  # refuse a decoding the endpoint cannot honour before loading records
    else:
        check_model_source(model)
    quiet_libraries()
    items, described = load_records_arg(records)
    if per_bucket is not None:
        items = stratified_sample(items, decoding.seed, per_group=per_bucket)
    if limit is not None:
        items = items[:limit]
    if served is not None:
        path = _generate_served(served, items, out, decoding, described, profile=profile, quiet=quiet)
    else:
        path = _generate(model, items, out, decoding, described, profile=profile, backend=backend, device=device,
                         quiet=quiet)
    manifest = read_json(out / "manifest.json")
    console.print(f"{manifest['n_rows']} predictions in [bold]{path}[/bold] "
                  f"({manifest['n_generated_now']} new, {manifest['tokens_per_second']} tokens/s)")
    if served is not None:
        print_endpoint_report(manifest["endpoint_report"])


def print_endpoint_report(report: dict) -> None:
    """One line: requests, retries by reason, finishes, and what the server's answers cannot show."""
    retries = ", ".join(f"{k} {v}" for k, v in report["retries"].items()) or "none"
    console.print(f"endpoint: {report['requests']} requests, retries: {retries}; finish: "
                  f"{report['finish']['stop']} stop, {report['finish']['length']} length; not checkable in the "
                  f"answers: {', '.join(report['unverified']) or 'nothing'}")


def _generate_served(served, items: list, out: Path, decoding: DecodingConfig, described: str, *, quiet: bool,
                     profile: bool) -> Path:
    """generate_predictions_endpoint, with a progress bar unless quiet."""
    from ..endpoint.generate import generate_predictions_endpoint

    if quiet:
        return generate_predictions_endpoint(served, items, out, decoding, profile=profile)
    with progress() as bar:
        task = bar.add_task(f"generating via {served.model_name} ({described})", total=len(items))
        return generate_predictions_endpoint(served, items, out, decoding, profile=profile,
                                             on_item=lambda done, total: bar.update(task, completed=done,
                                                                                    total=total))


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
