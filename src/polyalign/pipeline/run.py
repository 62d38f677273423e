"""`polyalign run CONFIG.yaml`: load a pipeline config, check it, and run its stage graph."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import load_pipeline_config
from .graph import Pipeline, StageResult
from .stages import Wiring, build_stages, unknown_stage_error, unlisted_methods


def load_pipeline(config_path: str | Path, overrides: dict[str, Any] | None = None,
                  log: Callable[[str], None] = print,
                  trainer_callbacks: Callable[[], list[Any]] = list) -> tuple[Wiring, Pipeline]:
    """Validate the config and every stage's settings (before any work) and build the pipeline."""
    config_path = Path(config_path)
    config = load_pipeline_config(config_path, overrides)
    wiring = Wiring(config, config_path)
    wiring.preflight()
    return wiring, Pipeline(build_stages(wiring), wiring.root, log=log, trainer_callbacks=trainer_callbacks)


def run_pipeline(config_path: str | Path, *, targets: Iterable[str] | None = None, force: Iterable[str] = (),
                 overrides: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                 trainer_callbacks: Callable[[], list[Any]] = list, rebuild: bool = True, full_check: bool = False,
                 wait: bool = False) -> tuple[Wiring, list[StageResult]]:
    """Run (or skip, when up to date) the stages needed for `targets` (all by default). `trainer_callbacks`
    makes fresh transformers TrainerCallbacks for each training stage (e.g. a progress bar). A cached stage whose
    files were modified is rebuilt (`rebuild=False`: IntegrityError instead); `full_check` hashes every cached
    file; `wait` queues behind another run holding the work folder (else LockedError)."""
    wiring, pipeline = load_pipeline(config_path, overrides, log, trainer_callbacks)
    targets = list(targets or []) or wiring.config.stages
    known = [s.name for s in pipeline.stages]
    asked = list(targets or []) + list(force)
    unknown = [t for t in asked if t not in known]
    if unknown:
        raise unknown_stage_error(unknown, known, unlisted_methods(wiring.config, unknown))
    return wiring, pipeline.run(list(targets) if targets else None, force=force, rebuild=rebuild,
                                full_check=full_check, wait=wait)


def finished_pipeline(config_path: str | Path, overrides: dict[str, Any] | None = None,
                      targets: Iterable[str] | Callable[[Wiring], Iterable[str]] | None = None
                      ) -> tuple[Wiring, list[Path]]:
    """The wiring and the stage folders of a work folder whose selected stages (all by default; `targets` may
    be a function of the wiring) and their dependencies are all up to date, found without running anything or
    taking the lock (another run may hold it for other stages); ConfigError naming the stages that are not."""
    wiring, pipeline = load_pipeline(config_path, overrides, log=lambda _: None)
    if callable(targets):
        targets = targets(wiring)
    status = pipeline.status(list(targets or []) or wiring.config.stages)
    behind = [f"{name} ({state if pipeline.record(name) else 'not built'})" for name, state in status.items()
              if state != "cached"]
    if behind:
        raise ConfigError(f"{wiring.root}: stages not up to date: {', '.join(behind)}; run the pipeline to build "
                          "them")
    return wiring, [pipeline.out_dir(name) for name in status]
