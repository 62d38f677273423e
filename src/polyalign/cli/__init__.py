"""The `polyalign` command line: one verb per stage, plus `run` and `demo`.

Each verb group lives in its own module and is registered here; heavy imports (torch, transformers) happen
inside the commands so that `polyalign --help` stays instant.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.text import Text

from ..errors import PolyAlignError
from .common import console, err_console

app = typer.Typer(name="polyalign", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  pretty_exceptions_show_locals=False,
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
    try:  # adds `train dpo` / `train hdpo` to the train group
        __import__(f"{__name__}.preference")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.preference":
            raise
    for name in ("generate", "evaluate", "pipeline"):
        try:
            module = __import__(f"{__name__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(app)


@app.callback()
def _root() -> None:
    """PolyAlign: align chat models to the human response distribution of each context."""


@app.command()
def version() -> None:
    """Print the versions of PolyAlign and the packages that determine results."""
    from ..io import package_versions

    for name, ver in package_versions().items():
        console.print(f"{name} {ver}")


_register()


def main() -> None:
    """Entry point: run the app, printing PolyAlign errors without a traceback (exit status 2)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except PolyAlignError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(2)


__all__ = ["app", "main", "console"]
