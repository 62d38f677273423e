"""The CLI's verb registration: every verb module registers through `register(app)`, every verb is there, and a
verb module that cannot be imported stops the CLI with its error instead of silently losing its verbs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

import polyalign
from polyalign.cli import VERB_MODULES, app

SRC = Path(polyalign.__file__).resolve().parents[1]
TOP_LEVEL = {"version", "generate", "suite", "eval", "judge", "compare", "run", "demo", "stages"}
GROUPS = {"data": {"build", "show"}, "model": {"init-tiny", "pretrain", "import"}, "train": {"sft", "dpo", "hdpo"},
          "critic": {"fit", "score", "baseline"}, "pairs": {"build"}}


def test_every_verb_is_registered() -> None:
    root = typer.main.get_command(app)
    assert set(root.commands) == TOP_LEVEL | set(GROUPS)
    for group, verbs in GROUPS.items():
        assert set(root.commands[group].commands) == verbs, group


def test_every_verb_module_has_one_register_function() -> None:
    for module in VERB_MODULES:
        assert callable(getattr(module, "register", None)), module.__name__


def _run_cli_with(setup: str, *args: str) -> subprocess.CompletedProcess:
    """Run `polyalign ARGS` in a fresh interpreter after `setup` (Python code run before the CLI is imported)."""
    code = f"import sys\n{setup}\nfrom polyalign.cli import main\nsys.argv = ['polyalign', *{list(args)!r}]\nmain()\n"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_a_missing_verb_module_fails_loudly() -> None:
    """A renamed or deleted verb module used to be skipped (its verbs vanished from --help); now it is an error."""
    result = _run_cli_with("sys.modules['polyalign.cli.pairs'] = None  # as if cli/pairs.py were renamed", "--help")
    assert result.returncode != 0
    assert "polyalign.cli.pairs" in result.stderr
    assert "Usage" not in result.stdout


def test_a_verb_module_that_breaks_on_import_fails_loudly() -> None:
    setup = ("import importlib.abc, importlib.util\n"
             "class Broken(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'polyalign.cli.critic':\n"
             "            raise ModuleNotFoundError(\"No module named 'polyalign.critic.renamed'\", "
             "name='polyalign.critic.renamed')\n"
             "sys.meta_path.insert(0, Broken())")
    result = _run_cli_with(setup, "data", "--help")
    assert result.returncode != 0
    assert "polyalign.critic.renamed" in result.stderr


def test_the_cli_runs_after_a_clean_import() -> None:
    result = _run_cli_with("", "--help")
    assert result.returncode == 0, result.stderr
    assert "pairs" in result.stdout and "suite" in result.stdout


def test_starting_the_cli_does_not_load_torch():
    """`polyalign --help` and every verb's parsing stay fast: torch, transformers and trl load only in the verb
    bodies that need them."""
    import subprocess
    import sys

    code = "import sys, polyalign.cli; print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
