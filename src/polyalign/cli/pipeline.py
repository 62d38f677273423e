"""`polyalign run` (a whole experiment from one YAML), `polyalign demo` (the embedded default) and
`polyalign stages` (what a run would do)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from ..config import parse_override
from ..errors import ConfigError
from ..io import read_json
from ..pipeline.graph import topological_order
from ..pipeline.run import load_pipeline, run_pipeline
from ..progress import quiet_libraries
from .common import console, err_console, make_table
from .evaluate import print_comparison
from .train import rich_progress_callback

DEMO_CONFIG = Path("configs") / "pipeline" / "demo.yaml"


def _log(message: str) -> None:
    style = {"[skip]": "dim", "[run]": "bold cyan", "[resume]": "bold yellow", "[done]": "green",
             "[rebuild]": "bold magenta", "[lock]": "bold yellow"}
    for prefix, colour in style.items():
        if message.startswith(prefix):
            err_console.print(f"[{colour}]{escape(prefix)}[/]{escape(message[len(prefix):])}", highlight=False)
            return
    err_console.print(message, highlight=False, markup=False)


def _progress_callbacks() -> list:
    """A progress bar for a training stage when the log goes to a terminal (none in files and CI logs)."""
    if not err_console.is_terminal:
        return []
    return [rich_progress_callback()]


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _run(config: Path, stages: str | None, force: str | None, overrides: list[str], *, rebuild: bool = True,
         full_check: bool = False, wait: bool = False) -> None:
    quiet_libraries(tqdm=True)  # the pipeline prints its own progress; tqdm: e.g. TRL's reference log-probs

    started = time.time()
    wiring, results = run_pipeline(config, targets=_split(stages) or None, force=_split(force),
                                   overrides=parse_override(overrides or []), log=_log,
                                   trainer_callbacks=_progress_callbacks, rebuild=rebuild, full_check=full_check,
                                   wait=wait)
    rows = [[r.name, r.status, round(r.seconds, 1), str(r.out_dir)] for r in results]
    console.print(make_table("stages", ["stage", "status", "seconds", "output"], rows))
    skipped = [r.name for r in results if r.status == "cached"]
    if skipped:
        console.print(f"skipped (up to date): {', '.join(skipped)}")
    compare_dir = wiring.dir(wiring.eval_stage("compare"))
    if any(r.name == compare_dir.name for r in results):
        print_comparison(read_json(compare_dir / "comparison.json"), compare_dir)
    console.print(f"wall time {time.time() - started:.0f} s")


def run(
    config: Path = typer.Argument(..., help="Pipeline YAML (see configs/pipeline/demo.yaml)."),
    stages: str | None = typer.Option(None, help="Comma-separated stages to produce (with what they need)."),
    force: str | None = typer.Option(None, help="Comma-separated stages to rerun even if up to date."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.sub=value (repeatable)."),
    no_rebuild: bool = typer.Option(False, "--no-rebuild",
                                    help="Stop with an error when a cached artifact was modified, instead of "
                                         "rebuilding its stage."),
    verify_hashes: bool = typer.Option(False, "--verify-hashes",
                                       help="Hash every cached file (default: hash only files whose size or mtime "
                                            "changed)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for another run holding this workdir, instead of "
                                                    "exiting."),
) -> None:
    """Run an experiment: data → base → SFT / Bucket-SFT → samples → critic → pairs → DPO / HDPO → generation
    → evaluation → comparison. Stages whose inputs and settings did not change are skipped; an interrupted
    training stage resumes from its last checkpoint.

    Example: polyalign run configs/pipeline/demo.yaml --set workdir=runs/exp1 --set seed=1
    """
    _run(config, stages, force, set_, rebuild=not no_rebuild, full_check=verify_hashes, wait=wait)


def demo(
    workdir: str = typer.Option("runs/demo", help="Where the demo writes its stages."),
    config: Path = typer.Option(DEMO_CONFIG, help="The demo pipeline config."),
) -> None:
    """The embedded default, end to end on the bundled data: a tiny model built and pretrained here, then
    Base, SFT, Bucket-SFT, DPO and HDPO evaluated on one suite with one decoding config, and the comparison
    report. About 15 minutes on 2 CPU cores.

    Example: polyalign demo --workdir runs/demo
    """
    if not config.exists():
        raise ConfigError(f"{config}: demo config not found (run `polyalign demo` from the repository root, or "
                          f"pass --config)")
    started = time.time()
    _run(config, None, None, [f"workdir={workdir}"])
    report = Path(workdir) / "compare" / "report.html"
    console.print(f"[bold green]demo finished in {time.time() - started:.0f} s.[/] report: {report.resolve()}")


def stages(
    config: Path = typer.Argument(..., help="Pipeline YAML."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.sub=value (repeatable)."),
) -> None:
    """List a pipeline's stages in run order with their status (up to date or stale), without running them.

    Example: polyalign stages configs/pipeline/demo.yaml
    """
    _, pipeline = load_pipeline(config, parse_override(set_ or []), log=_log)
    status = pipeline.status()
    rows = [[s.name, status[s.name], ", ".join(s.deps), s.description] for s in topological_order(pipeline.stages)]
    console.print(make_table(f"stages of {config}", ["stage", "status", "needs", "what"], rows))


def register(app: typer.Typer) -> None:
    """Add `run`, `demo` and `stages` to the top-level app."""
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("stages")(stages)
