"""Progress display and library output, shared by the library and the CLI: the rich progress bar (on stderr) and
one switch that quiets the progress bars, info logs and known-harmless warnings of datasets/transformers."""

from __future__ import annotations

import os
import warnings

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

#: The console progress bars and log lines are printed on (stderr, so that stdout stays the results).
err_console = Console(stderr=True)


def progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, elapsed and remaining time, on stderr."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=transient)


def quiet_libraries(*, tqdm: bool = False) -> None:
    """Silence the progress bars and info logs of datasets/transformers and known-harmless warnings (our own
    progress display replaces them). tqdm=True also turns off every tqdm bar (e.g. TRL's reference log-prob
    precompute) and datasets' bars through the environment, unless the variables are already set."""
    if tqdm:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    # Lazy on purpose: datasets and transformers take ~0.5 s each to import, and this module is imported by
    # the data build and by `polyalign --help`, which need neither.
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated.*")
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
