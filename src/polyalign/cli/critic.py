"""`polyalign critic ...`: fit a critic, score a JSONL file with it, show the human-vs-human distance baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import load_config, validate_config
from ..data.build import load_records
from ..io import read_json, write_json
from .common import console, make_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                  help="The critic: distances of responses to their bucket's human support.")


def register(root: typer.Typer) -> None:
    """Add the `critic` group (fit, score, baseline) to the root app."""
    root.add_typer(app, name="critic")


def _options(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != []}


@app.command("fit")
def fit(config: Path | None = typer.Argument(None, help="critic config YAML (configs/critic/critic.yaml); "
                                                        "options below override it"),
        data: Path | None = typer.Option(None, "--data", help="data build directory"),
        predictions: list[Path] = typer.Option([], "--predictions", help="predictions.jsonl of a model on the "
                                                                         "split's prompts (repeatable)"),
        out: Path | None = typer.Option(None, "--out", "-o", help="output bundle directory"),
        method: str | None = typer.Option(None, "--method", help="learned | band | mahalanobis | knn"),
        min_auc: float | None = typer.Option(None, "--min-auc", help="refuse the critic below this held-out AUC"),
        seed: int | None = typer.Option(None, "--seed", help="seed"),
        hidden_states_model: str | None = typer.Option(None, "--hidden-states-model",
                                                       help="HF model whose mean-pooled hidden states are added"),
        ) -> None:
    """Fit a critic on human (train split) vs model responses, print its held-out AUC per language and track,
    and write the bundle.

    Example: [bold]polyalign critic fit --data runs/data --predictions runs/samples/sft/predictions.jsonl
    --out runs/critic[/bold]
    """
    # Lazy on purpose, as in every critic verb: polyalign.critic.* import torch and sklearn (1.2-2.3 s measured).
    from ..critic.fit import CriticConfig, fit_critic

    overrides = _options(data=str(data) if data else None, predictions=[str(p) for p in predictions],
                         out=str(out) if out else None, method=method, min_auc=min_auc, seed=seed,
                         hidden_states_model=hidden_states_model)
    cfg = load_config(config, CriticConfig, overrides) if config else validate_config(overrides, CriticConfig)
    with console.status("fitting the critic"):
        bundle = fit_critic(cfg)
    metrics = read_json(bundle / "metrics.json")
    print_fit_metrics(metrics)
    if (bundle / "baseline.json").exists():
        print_baseline(read_json(bundle / "baseline.json"))
    console.print(f"critic bundle: {bundle}")


def print_fit_metrics(metrics: dict[str, Any]) -> None:
    """Held-out AUC overall, per language and per track; score spread; verdict."""
    rows: list[list[Any]] = [["all", "", metrics["heldout_auc"], metrics["n_heldout"]],
                             ["within bucket (mean)", "", metrics.get("within_bucket_auc"), ""]]
    for name in ("language", "track"):
        for group, v in metrics[f"auc_by_{name}"].items():
            rows.append([name, group, v["auc"], v["n"]])
    for method, auc in (metrics.get("closed_form_auc") or {}).items():
        rows.append(["closed form", method, auc, ""])
    console.print(make_table(f"Critic ({metrics['method']}): held-out AUC, human vs model",
                             ["group", "value", "AUC", "n"], rows))
    h, m = metrics["human_scores"], metrics["model_scores"]
    console.print(f"distance: human median {h.get('q50', float('nan')):.3g} (q90 {h.get('q90', float('nan')):.3g}), "
                  f"model median {m.get('q50', float('nan')):.3g}; held-out score std {metrics['score_std']:.3g}")
    if metrics.get("weakness"):
        console.print(f"[bold red]collapse check FAILED[/bold red]: {metrics['weakness']} — `critic score` and "
                      "`pairs build` will refuse this critic unless --allow-weak")
    else:
        console.print(f"[green]collapse check passed[/green] (AUC >= {metrics['min_auc']})")


def print_baseline(baseline: dict[str, Any]) -> None:
    """Pooled human-vs-human distance quantiles per method."""
    rows = []
    for method, v in baseline.items():
        p = v["pooled"]
        rows.append([method, p.get("n", 0), p.get("q10"), p.get("q50"), p.get("q90"), p.get("q99"), v["skipped"]])
    console.print(make_table("Human baseline: held-out (val) humans vs train references",
                             ["distance", "n", "q10", "q50", "q90", "q99", "skipped"], rows))


@app.command("score")
def score(critic: Path = typer.Option(..., "--critic", help="critic bundle directory"),
          input_file: Path = typer.Option(..., "--input", help="JSONL rows with text, language and bucket_id"),
          out: Path = typer.Option(..., "--out", "-o", help="output JSONL (the input rows plus the distance)"),
          text_field: str = typer.Option("prediction", "--text-field", help="field holding the text"),
          score_field: str = typer.Option("d", "--score-field", help="field the distance is written to"),
          min_auc: float = typer.Option(0.75, "--min-auc", help="refuse a critic below this held-out AUC"),
          allow_weak: bool = typer.Option(False, "--allow-weak", help="use a weak or collapsed critic anyway"),
          unknown_bucket: str = typer.Option("error", "--unknown-bucket",
                                             help="error | pooled: what to do with buckets the critic has not seen"),
          ) -> None:
    """Add each row's distance to its bucket's human support (refuses a collapsed critic).

    Example: [bold]polyalign critic score --critic runs/critic --input runs/dpo/predictions.jsonl
    --out runs/dpo/scored.jsonl[/bold]
    """
    from ..critic.model import load_critic
    from ..critic.score import score_jsonl

    loaded = load_critic(critic, min_auc=min_auc, allow_weak=allow_weak)
    summary = score_jsonl(loaded, input_file, out, text_field=text_field, score_field=score_field,
                          unknown=unknown_bucket, allow_weak=allow_weak)
    console.print(make_table(f"Distances ({loaded.method} critic)", ["n", "mean", "q10", "q50", "q90", "q99"],
                             [[summary.get(k) for k in ("n", "mean", "q10", "q50", "q90", "q99")]]))
    console.print(f"scored rows: {out}")


@app.command("baseline")
def baseline(data: Path = typer.Option(..., "--data", help="data build directory"),
             k: int = typer.Option(10, "--k", help="k of the k-NN distance"),
             out: Path | None = typer.Option(None, "--out", "-o", help="also write the distributions as JSON"),
             buckets: bool = typer.Option(False, "--buckets", help="print the per-bucket table too"),
             ) -> None:
    """Print each closed-form distance's distribution for held-out human responses (val split vs train
    references), pooled (and per bucket), so that a model's distance can be read against it.

    Example: [bold]polyalign critic baseline --data runs/data --out runs/critic_baseline.json[/bold]
    """
    from ..critic.fit import compute_human_baseline, load_bucket_stats, load_split_features

    stats = load_bucket_stats(data)
    records = load_records(data, "train")
    result = compute_human_baseline(data, stats, records, load_split_features(data, "train", records), k=k)
    print_baseline(result)
    if buckets:
        names = list(result)
        all_buckets = sorted({b for v in result.values() for b in v["buckets"]})
        rows = [[b, *(result[m]["buckets"].get(b, {}).get(q) for m in names for q in ("q50", "q90"))]
                for b in all_buckets]
        console.print(make_table("Per bucket", ["bucket", *(f"{m} {q}" for m in names for q in ("q50", "q90"))],
                                 rows))
    if out:
        write_json(out, result)
        console.print(f"baseline: {out}")
