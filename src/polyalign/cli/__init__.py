"""The `polyalign` command line: one verb per stage, plus `run` and `demo`.

Each verb group lives in its own module and is registered here; heavy imports (torch, transformers) happen
inside the commands so that `polyalign --help` stays instant.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import PolyAlignError
from .common import console, err_console

app = typer.Typer(name="polyalign", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="PolyAlign: align chat models to the human response distribution of each context.")


def _register() -> None:
    for name in ("data", "model", "train", "critic", "pairs"):
        try:
            module = __import__(f"{__name__}.{name}", fromlist=["app"])
        except ModuleNotFoundError as exc:  # group not built yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        app.add_typer(module.app, name=name)
    for name in ("generate", "evaluate", "pipeline"):
        try:
            module = __import__(f"{__name__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Entry point: run the app, printing PolyAlign errors without a traceback (exit status 2)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except PolyAlignError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


__all__ = ["app", "main", "console"]
