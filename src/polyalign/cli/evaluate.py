"""`polyalign suite`, `polyalign eval` and `polyalign compare`: the evaluation verbs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import load_config
from ..errors import InputError
from ..eval.suite import build_suite, load_suite
from ..eval.views import DEFAULT_CONTEXT_KEY
from ..generate import DecodingConfig, generate_predictions
from .common import console, make_table, progress

# The scoring modules (polyalign.eval.headline, headline_report, contrasts, runner, compare) are imported inside
# the verbs on purpose: they pull in scipy, sklearn and matplotlib (1.2-3.1 s measured; `polyalign --help` took
# 1.7 s when eval.headline was imported here, 0.5 s without).


def _headline_table(result: dict[str, Any], title: str):
    """The context view's headline numbers with CIs, next to the held-out and same-prompt humans."""
    from ..eval.contrasts import headline_tables
    from ..eval.headline import HEADLINE_METRICS
    from ..eval.headline_report import table_for

    runs = {result["metadata"]["name"]: result}
    tables = headline_tables(runs, "context")
    same = (tables["same_prompt_items"] or {}).get("overall") or {}
    header, rows = table_for({**tables["all_items"]["overall"],
                              **{f"{k} (same-prompt items)": v for k, v in same.items()}}, HEADLINE_METRICS)
    transposed = [[header[j]] + [row[j] for row in rows] for j in range(1, len(header))]
    return make_table(title, ["metric (context view)", *[row[0] for row in rows]], transposed)


def suite(
    data: Path = typer.Option(..., "--data", help="A data directory from `polyalign data build`."),
    out: Path = typer.Option(..., "--out", help="Where to write the suite directory."),
    cap_per_bucket: int = typer.Option(50, help="Maximum test items per context group (seeded sample)."),
    seed: int = typer.Option(0, help="Seed of the per-group samples (and of the bootstrap draws)."),
    ref_pool: int = typer.Option(300, help="Maximum train responses per context group in the reference pool."),
    min_pool: int = typer.Option(20, help="Groups with fewer train responses are dropped (and reported)."),
    context_key: str = typer.Option("|".join(DEFAULT_CONTEXT_KEY), help="Record fields known before the "
                                    "response, '|'-separated: the groups items and pools are drawn in."),
    split: str = typer.Option("test", help="Split of the items: test, or val to choose settings."),
) -> None:
    """Build the evaluation suite: TEST items and TRAIN human reference pools, drawn per context group.

    Example: polyalign suite --data runs/data --out runs/suite --cap-per-bucket 50 --ref-pool 300
    """
    path = build_suite(data, out, cap_per_bucket=cap_per_bucket, seed=seed, ref_pool=ref_pool, min_pool=min_pool,
                       context_key=context_key.split("|"), split=split)
    loaded = load_suite(path)
    counts = loaded.manifest.get("groups", {})
    rows = [[g, c["items"], c["pool"], c["items_with_alternatives"],
             ", ".join(f"{b.split('|')[-1]} {n}" for b, n in c["items_by_bucket"].items())]
            for g, c in sorted(counts.items())]
    console.print(make_table(f"suite {loaded.version}: {len(loaded.items)} items, {len(loaded.pool)} pool responses",
                             ["context group", "items", "pool", "same-prompt", "items per length bin"], rows))
    dropped = loaded.manifest.get("dropped_groups", {})
    for bucket, why in sorted(dropped.items()):
        console.print(f"[yellow]dropped[/] {bucket}: {why['reason']} (test {why['test']}, train {why['train']})")
    console.print(f"suite written to {path}")


def eval_command(
    suite_dir: Path = typer.Option(..., "--suite", help="A suite directory from `polyalign suite`."),
    out: Path = typer.Option(..., "--out", help="Where to write metrics.json, report.md and report.html."),
    predictions: Path | None = typer.Option(None, "--predictions", help="predictions.jsonl to score."),
    model: str | None = typer.Option(None, "--model", help="A model folder or hub id: generate, then score."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="An OpenAI-compatible server: generate "
                                        "through it, then score (see docs/endpoints.md)."),
    model_name: str | None = typer.Option(None, "--model-name", help="The served model's name (with --endpoint)."),
    endpoint_config: Path | None = typer.Option(None, "--endpoint-config", help="EndpointConfig YAML (with "
                                                "--endpoint)."),
    decoding: Path | None = typer.Option(None, "--decoding", help="Decoding config YAML (with --model or "
                                         "--endpoint)."),
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
      polyalign eval --endpoint http://localhost:8000 --model-name my-model --suite runs/suite --out runs/eval/served
    """
    from ..endpoint.config import endpoint_from_options
    from ..eval.runner import evaluate

    served = endpoint_from_options(endpoint, model_name, str(endpoint_config) if endpoint_config else None)
    if sum(x is not None for x in (predictions, model, served)) != 1:
        raise InputError("give exactly one of --predictions FILE, --model PATH or --endpoint URL --model-name NAME")
    if decoding is not None and model is None and served is None:
        raise InputError("--decoding only applies with --model or --endpoint", field="decoding")
    if not (suite_dir / "manifest.json").exists():
        raise InputError("not an evaluation suite (no manifest.json; build one with `polyalign suite`)",
                         file=suite_dir)
    options: dict[str, Any] = {}
    if featurizer == "hidden-states":
        if not featurizer_model:
            raise InputError("--featurizer hidden-states needs --featurizer-model PATH", field="featurizer-model")
        options["model"] = featurizer_model
    if model is not None or served is not None:
        predictions = _generate(model or served, suite_dir, out, decoding, profile)
    result = evaluate(predictions, suite_dir, out, featurizer=featurizer, featurizer_options=options, seed=seed,
                      sample=sample, allow_missing=allow_missing, name=name, progress=True)
    gaps = result["metadata"]["gaps"]
    console.print(_headline_table(result, f"{result['metadata']['name']} on suite {result['metadata']['suite_version']}"
                                  f" ({gaps['scored']} items scored, {gaps['missing']} missing, "
                                  f"{gaps['empty_predictions']} empty)"))
    console.print(f"report: {out / 'report.html'}")


def _generate(model: Any, suite_dir: Path, out: Path, decoding: Path | None, profile: bool) -> Path:
    """Generate predictions for the suite's items with the shared decoding config (resumable), with a local
    model (a path) or an EndpointConfig."""
    from ..endpoint.config import EndpointConfig
    from ..endpoint.generate import generate_predictions_endpoint
    from ..endpoint.params import request_plan

    config = load_config(decoding, DecodingConfig) if decoding is not None else DecodingConfig()
    if isinstance(model, EndpointConfig):
        request_plan(config, model)
    loaded = load_suite(suite_dir)
    with progress(transient=True) as bar:
        task = bar.add_task("generating", total=len(loaded.items))
        update = (lambda done, total: bar.update(task, completed=done, total=total))
        if isinstance(model, EndpointConfig):
            path = generate_predictions_endpoint(model, loaded.items, out / "generation", config, profile=profile,
                                                 on_item=update)
        else:
            path = generate_predictions(model, loaded.items, out / "generation", config, profile=profile,
                                        on_batch=update)
    return Path(path)


def compare(
    runs: list[Path] = typer.Argument(..., help="Evaluation run folders (each with metrics.json)."),
    out: Path = typer.Option(..., "--out", help="Where to write the comparison report."),
    names: str | None = typer.Option(None, help="Comma-separated method names, one per run."),
    contrast: list[str] = typer.Option([], "--contrast", help="A paired test 'A:B' (method names; repeatable). "
                                       "Default: each method against the one before it."),
    rounds: list[str] = typer.Option([], "--rounds", help="NAME=FOLDER: a multi-round method's per-round table "
                                     "(a pipeline's rounds_<method> folder) shown in the report (repeatable)."),
) -> None:
    """Put several methods scored on the same suite in one report: the context view with CIs and ceilings, paired
    tests with Holm's correction, the oracle-length view, every metric, and the per-round tables of multi-round
    methods (--rounds).

    Example: polyalign compare runs/eval/base runs/eval/sft runs/eval/bsft runs/eval/dpo runs/eval/hdpo
             --names base,SFT,Bucket-SFT,DPO,HDPO --contrast Bucket-SFT:SFT --contrast HDPO:DPO --out runs/compare
    """
    from ..eval.compare import compare_runs

    tables = {}
    for item in rounds:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"--rounds {item!r}: give NAME=FOLDER (a method name and its rounds_<method> folder)",
                             field="rounds")
        tables[name] = Path(folder)
    result = compare_runs(runs, out, names=names.split(",") if names else None, contrasts=contrast or None,
                          rounds=tables)
    print_comparison(result, out)


def print_comparison(result: dict[str, Any], out: Path) -> None:
    """Print a comparison's headline (context view, all groups, with CIs), its significant tests and the report
    path."""
    from ..eval.headline import HEADLINE_METRICS
    from ..eval.headline_report import table_for

    view = result["headline"]["context"]
    header, rows = table_for(view["tables"]["all_items"]["overall"], HEADLINE_METRICS)
    # printed transposed (one row per metric) so that the methods fit a terminal; the reports are method × metric
    transposed = [[header[j]] + [row[j] for row in rows] for j in range(1, len(header))]
    console.print(make_table(f"comparison on suite {result['suite_version']} (context view, value [95% CI])",
                             ["metric", *[row[0] for row in rows]], transposed))
    tests = view["tests"].get("overall", [])
    significant = [t for t in tests if t["significant"]]
    console.print(f"paired tests: {len(significant)} of {len(tests)} significant after Holm's correction"
                  + "".join(f"\n  {t['a']} − {t['b']} {t['metric']}: {t['diff']:+.3f} (p_holm {t['p_holm']:.3g})"
                            for t in significant))
    console.print(f"report: {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add the `suite`, `eval` and `compare` verbs to the top-level app."""
    app.command("suite")(suite)
    app.command("eval")(eval_command)
    app.command("compare")(compare)
