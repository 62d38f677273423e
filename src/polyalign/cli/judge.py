"""`polyalign judge`: a blind LLM judge over served judge models (top-level verb)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import parse_override
from ..errors import InputError
from .common import console, make_table, progress


def judge(
        suite_dir: Path = typer.Option(..., "--suite", help="the evaluation suite the predictions answer"),
        method: list[str] = typer.Option(..., "--method", help="NAME=PREDICTIONS.jsonl (repeatable); names stay "
                                         "out of every judge prompt"),
        endpoint: list[str] = typer.Option(..., "--endpoint", help="a judge server URL (repeat for a second "
                                           "judge; agreement is reported)"),
        model_name: list[str] = typer.Option(..., "--model-name", help="the judge model's served name, one per "
                                             "--endpoint"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (judgments.jsonl, summary.json, "
                                 "report.md)"),
        config: Path | None = typer.Option(None, "--config", help="JudgeConfig YAML (default "
                                           "configs/judge/judge.yaml)"),
        set_: list[str] = typer.Option([], "--set", help="override a judge config key, e.g. --set mode=pairwise"),
        no_reference: bool = typer.Option(False, "--no-reference", help="the variant without the human reference"),
        endpoint_config: Path | None = typer.Option(None, "--endpoint-config", help="EndpointConfig YAML for "
                                                    "every judge (concurrency, retries, API key variable)"),
        per_bucket: int | None = typer.Option(None, "--per-bucket", help="judge at most N items per bucket"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Judge methods' predictions blind with one or two served judge models: eight rubric dimensions
    (configs/judge/rubric.yaml), composites per bucket and context bucket with bootstrap CIs, counted answer
    failures, agreement between two judges. See docs/judge.md.

    Example: [bold]polyalign judge --suite runs/suite --method sft=runs/gen/sft/predictions.jsonl --method hdpo=runs/gen/hdpo/predictions.jsonl --endpoint http://localhost:8000 --model-name judge --out runs/judge[/bold]
    """
    from ..endpoint.config import endpoint_from_options
    from ..judge.run import load_judge_config, run_judge
    from ..judge.summary import composite_rows

    if len(endpoint) != len(model_name):
        raise InputError("give one --model-name per --endpoint")
    methods = {}
    for spec in method:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--method {spec!r}: expected NAME=PREDICTIONS.jsonl")
        if name in methods:
            raise InputError(f"--method {name} given twice")
        methods[name] = path
    overrides = parse_override(set_) if set_ else {}
    if no_reference:
        overrides["with_reference"] = False
    judge_config, rubric = load_judge_config(config, overrides or None)
    judges = [endpoint_from_options(u, n, str(endpoint_config) if endpoint_config else None)
              for u, n in zip(endpoint, model_name)]
    if quiet:
        summary = run_judge(judges, methods, suite_dir, out, judge_config, rubric, per_bucket=per_bucket)
    else:
        with progress(transient=True) as bar:
            task = bar.add_task("judging", total=None)
            summary = run_judge(judges, methods, suite_dir, out, judge_config, rubric, per_bucket=per_bucket,
                                on_done=lambda n: bar.update(task, completed=n))
    for j, result in enumerate(summary["per_judge"]):
        name = summary["judges"][j]["model_name"]
        if judge_config.mode == "pointwise":
            header, rows = composite_rows(summary, j)
            console.print(make_table(f"judge {j} ({name}): composites 0..100, mean [95% CI], all items", header,
                                     rows))
        else:
            rows = [[k, c["a_wins"], c["b_wins"], c["ties"], c["failed"]] for k, c in result["pairs"].items()]
            console.print(make_table(f"judge {j} ({name}): pairwise", ["pair", "a wins", "b wins", "ties",
                                                                       "failed"], rows))
    for a in summary["agreement"]:
        console.print(f"agreement of judges {a['judges']}: " + ", ".join(f"{k} {v}" for k, v in a.items()
                                                                          if k != "judges"))
    console.print(f"report: {out / 'report.md'}")


def register(app: typer.Typer) -> None:
    """Add the `judge` verb to the root app."""
    app.command("judge")(judge)
