"""`polyalign suite`, `polyalign eval` and `polyalign compare`: the evaluation verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from .common import console, make_table


def _headline_table(result: dict[str, Any], title: str):
    from ..eval.registry import load_all
    from ..eval.report import HEADLINE_METRICS, fmt, group_keys

    registry = load_all()
    groups = group_keys(result["buckets"])
    rows = []
    for name in HEADLINE_METRICS:
        block = result["metrics"].get(name)
        if not block:
            continue
        model, ceiling = block["model"], block.get("ceiling")
        rows.append([name, registry[name].arrow, fmt(model.get("headline")),
                     fmt(ceiling.get("headline")) if ceiling else "–"]
                    + [fmt(model.get(g, {}).get(k, {}).get("headline")) for g, k in groups])
    return make_table(title, ["metric", "dir", "model", "human ceiling", *[k for _, k in groups]], rows)


def suite(
    data: Path = typer.Option(..., "--data", help="A data directory from `polyalign data build`."),
    out: Path = typer.Option(..., "--out", help="Where to write the suite directory."),
    cap_per_bucket: int = typer.Option(50, help="Maximum test items per bucket (seeded sample)."),
    seed: int = typer.Option(0, help="Seed of the per-bucket samples."),
    ref_pool: int = typer.Option(300, help="Maximum train responses per bucket in the human reference pool."),
    min_pool: int = typer.Option(20, help="Buckets with fewer train responses are dropped (and reported)."),
) -> None:
    """Build the evaluation suite: bucket-stratified TEST items plus each bucket's TRAIN human reference pool.

    Example: polyalign suite --data runs/data --out runs/suite --cap-per-bucket 50 --ref-pool 300
    """
    from ..eval.suite import build_suite, load_suite

    path = build_suite(data, out, cap_per_bucket=cap_per_bucket, seed=seed, ref_pool=ref_pool, min_pool=min_pool)
    loaded = load_suite(path)
    counts = loaded.manifest.get("buckets", {})
    rows = [[b, c["language"], c["track"], c["family"], c["items"], c["pool"]] for b, c in sorted(counts.items())]
    console.print(make_table(f"suite {loaded.version}: {len(loaded.items)} items, {len(loaded.pool)} pool responses",
                             ["bucket", "lang", "track", "family", "items", "pool"], rows))
    dropped = loaded.manifest.get("dropped_buckets", {})
    for bucket, why in sorted(dropped.items()):
        console.print(f"[yellow]dropped[/] {bucket}: {why['reason']} (test {why['test']}, train {why['train']})")
    console.print(f"suite written to {path}")


def eval_command(
    suite_dir: Path = typer.Option(..., "--suite", help="A suite directory from `polyalign suite`."),
    out: Path = typer.Option(..., "--out", help="Where to write metrics.json, report.md and report.html."),
    predictions: Path | None = typer.Option(None, "--predictions", help="predictions.jsonl to score."),
    model: str | None = typer.Option(None, "--model", help="A model folder or hub id: generate, then score."),
    decoding: Path | None = typer.Option(None, "--decoding", help="Decoding config YAML (with --model)."),
    profile: bool = typer.Option(False, "--profile/--no-profile", help="Profile system prompt (with --model)."),
    featurizer: str = typer.Option("char-ngram-svd", help="MAUVE featurizer: char-ngram-svd | hidden-states."),
    featurizer_model: str | None = typer.Option(None, help="Model for --featurizer hidden-states."),
    seed: int = typer.Option(0, help="Seed of every sampled metric."),
    sample: int | None = typer.Option(None, help="Which sample index to score (default: the lowest)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Score the items that have predictions "
                                       "and report the missing ones instead of failing."),
    name: str | None = typer.Option(None, help="Method name in reports (default: the --out folder name)."),
) -> None:
    """Score a method on a suite: utility, diversity, naturalness, faithfulness, multi-turn, trade-off.

    Examples:
      polyalign eval --predictions runs/sft/predictions.jsonl --suite runs/suite --out runs/eval/sft
      polyalign eval --model runs/models/sft --suite runs/suite --out runs/eval/sft --decoding configs/decoding.yaml
    """
    from ..eval.runner import evaluate

    if (predictions is None) == (model is None):
        raise InputError("give exactly one of --predictions FILE or --model PATH")
    if decoding is not None and model is None:
        raise InputError("--decoding only applies with --model", field="decoding")
    if not (suite_dir / "manifest.json").exists():
        raise InputError("not an evaluation suite (no manifest.json; build one with `polyalign suite`)",
                         file=suite_dir)
    options: dict[str, Any] = {}
    if featurizer == "hidden-states":
        if not featurizer_model:
            raise InputError("--featurizer hidden-states needs --featurizer-model PATH", field="featurizer-model")
        options["model"] = featurizer_model
    if model is not None:
        predictions = _generate(model, suite_dir, out, decoding, profile)
    result = evaluate(predictions, suite_dir, out, featurizer=featurizer, featurizer_options=options, seed=seed,
                      sample=sample, allow_missing=allow_missing, name=name, progress=True)
    gaps = result["metadata"]["gaps"]
    console.print(_headline_table(result, f"{result['metadata']['name']} on suite {result['metadata']['suite_version']}"
                                  f" ({gaps['scored']} items scored, {gaps['missing']} missing, "
                                  f"{gaps['empty_predictions']} empty)"))
    console.print(f"report: {out / 'report.html'}")


def _generate(model: str, suite_dir: Path, out: Path, decoding: Path | None, profile: bool) -> Path:
    """Generate predictions for the suite's items with the shared decoding config (resumable)."""
    from ..config import load_config
    from ..eval.suite import load_suite
    from ..generate import DecodingConfig, generate_predictions
    from .common import progress

    config = load_config(decoding, DecodingConfig) if decoding is not None else DecodingConfig()
    loaded = load_suite(suite_dir)
    with progress(transient=True) as bar:
        task = bar.add_task("generating", total=len(loaded.items))
        path = generate_predictions(model, loaded.items, out / "generation", config, profile=profile,
                                    on_batch=lambda done, total: bar.update(task, completed=done, total=total))
    return Path(path)


def compare(
    runs: list[Path] = typer.Argument(..., help="Evaluation run folders (each with metrics.json)."),
    out: Path = typer.Option(..., "--out", help="Where to write the comparison report."),
    names: str | None = typer.Option(None, help="Comma-separated method names, one per run."),
) -> None:
    """Put several methods scored on the same suite in one table and one report.

    Example: polyalign compare runs/eval/base runs/eval/sft runs/eval/bsft runs/eval/dpo runs/eval/hdpo
             --names base,SFT,Bucket-SFT,DPO,HDPO --out runs/compare
    """
    from ..eval.compare import compare_runs

    result = compare_runs(runs, out, names=names.split(",") if names else None)
    print_comparison(result, out)


def print_comparison(result: dict[str, Any], out: Path) -> None:
    """Print a comparison (from compare_runs) as one table and the path of its report."""
    from ..eval.compare import table_rows

    header, rows = table_rows(result["tables"]["overall"], result["metrics"])
    # printed transposed (one row per metric) so that five methods fit a terminal; the reports are method × metric
    columns = [row[0] for row in rows]
    transposed = [[header[j]] + [row[j] for row in rows] for j in range(1, len(header))]
    console.print(make_table(f"comparison on suite {result['suite_version']} (* = best)", ["metric", *columns],
                             transposed))
    console.print(f"report: {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add the `suite`, `eval` and `compare` verbs to the top-level app."""
    app.command("suite")(suite)
    app.command("eval")(eval_command)
    app.command("compare")(compare)
