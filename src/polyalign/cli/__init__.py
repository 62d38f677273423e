"""The `polyalign` command line: one verb per stage, plus `run` and `demo`.

Every verb module (`VERB_MODULES`) has one `register(app)` function that adds its verbs (a group such as
`data ...`, or top-level verbs such as `suite`) to the root app; a module that fails to import stops the CLI
with its error instead of silently losing its verbs. Heavy libraries (torch, transformers, scipy, sklearn) are
imported inside the commands so that `polyalign --help` stays fast (see each module's imports).
"""

from __future__ import annotations

import os
import sys

import typer
from rich.text import Text

from ..errors import PolyAlignError
from ..io import package_versions
from . import critic, data, evaluate, generate, judge, model, pairs, pipeline, preference, train
from .common import console, err_console

app = typer.Typer(name="polyalign", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  pretty_exceptions_show_locals=False,
                  help="PolyAlign: align chat models to the human response distribution of each context.")

#: The verb modules, in registration order (`preference` adds `train dpo` / `train hdpo`, so it follows `train`).
VERB_MODULES = (data, model, train, critic, pairs, preference, generate, evaluate, judge, pipeline)


@app.callback()
def _root() -> None:
    """PolyAlign: align chat models to the human response distribution of each context."""


@app.command()
def version() -> None:
    """Print the versions of PolyAlign and the packages that determine results."""
    for name, ver in package_versions().items():
        console.print(f"{name} {ver}")


for _module in VERB_MODULES:
    _module.register(app)


def main() -> None:
    """Entry point: run the app, printing PolyAlign errors without a traceback (exit status 2)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except PolyAlignError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(2)


__all__ = ["app", "main", "console", "VERB_MODULES"]
