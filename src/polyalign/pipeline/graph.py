"""A small stage graph: run stages in dependency order, skip the ones whose inputs did not change, and resume
the one that was interrupted.

Each stage writes into its own work directory. The cache key of a stage is a hash of its name, its config, the
keys of the stages it depends on and the hashes of its external inputs (files). A stage whose output directory
holds a stage record (``stage.json``, next to the artifact's own manifest.json) with the same key is skipped. A stage runs in ``<root>/.<name>.partial``; when it finishes the
directory is renamed to ``<root>/<name>``. A resumable stage (training) keeps its partial directory across a kill
when the key is unchanged, so it can continue from its last checkpoint; a non-resumable stage starts clean.

stage.json also records the size, mtime and SHA-256 of every file the stage wrote, and the contents digest of
each dependency it read: a cached stage whose files changed is rebuilt (or refused), and one whose dependency
was rebuilt with other contents runs again. A run holds the work folder's lock (pipeline/lock.py); a failed
write removes the stage's partial folder and leaves the cached stages alone, as does a stage that refuses its own
result (RefusedError: a refit critic below its AUC gate). See docs/faults.md.

A stage marked `reusable` (the preference trainings) that is about to run looks for a twin first: another stage
folder of the same work folder, intact, whose record's key is what this stage's key would be under the twin's
name (same settings, same dependency keys, same inputs; e.g. round 1 of a method in rounds and the one-round
method it repeats). Its files are copied instead of training again, and the record names it (`reused_from`);
a forced stage always runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import ConfigError, IntegrityError, RefusedError, WriteError
from ..io import make_manifest, read_json, remove_atomic_leftovers, replace_path, sha256_file, sha256_json, write_failure, write_json
from .integrity import check_files, file_table, table_digest
from .lock import WorkdirLock

STAGE_RECORD = "stage.json"
KEY_FILE = ".stage_key"
# Not covered by the file hashes: the stage record itself, and cache/ (a derived cache that later stages add to a
# folder, e.g. the evaluation's human-side cache in the suite; its reader checks its key and recomputes a bad one).
UNHASHED = (STAGE_RECORD, "cache")


def stage_key(name: str, contents: dict[str, Any]) -> str:
    """The cache key of stage `name` with key contents `contents` (Pipeline.key_contents)."""
    return sha256_json({"stage": name, **contents})


@dataclass
class StageContext:
    """What a running stage sees: its work directory, the output directories of its dependencies, and whether it
    resumes an interrupted run."""

    name: str
    work_dir: Path
    deps: dict[str, Path]
    config: Any
    resuming: bool
    log: Callable[[str], None]
    trainer_callbacks: Callable[[], list[Any]] = list  # fresh transformers callbacks for a training stage


@dataclass
class Stage:
    """One node of the graph: its name, the stages it reads (`deps`), its settings (`config`, part of the cache
    key), the files it reads (`inputs`), what it writes (`output`: the artifact class of its folder, whose
    summary() is stored in stage.json) and `run(ctx)`, which writes that artifact into `ctx.work_dir`."""

    name: str
    run: Callable[[StageContext], Any]
    deps: tuple[str, ...] = ()
    config: Any = None
    inputs: tuple[Path, ...] = ()
    resumable: bool = False
    description: str = ""
    output: Callable[[Path], Any] | None = None
    reusable: bool = False  # may copy an intact twin's output instead of running (see the module docstring)


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "cached" | "resumed" | "reused"
    seconds: float
    out_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def topological_order(stages: Sequence[Stage]) -> list[Stage]:
    """Stages sorted so that every stage comes after its dependencies; errors on unknown deps or cycles."""
    by_name = {s.name: s for s in stages}
    if len(by_name) != len(stages):
        raise ConfigError("two stages share a name")
    for s in stages:
        for d in s.deps:
            if d not in by_name:
                raise ConfigError(f"stage '{s.name}' depends on unknown stage '{d}'")
    order: list[Stage] = []
    state: dict[str, int] = {}

    def visit(s: Stage, chain: tuple[str, ...]) -> None:
        if state.get(s.name) == 2:
            return
        if state.get(s.name) == 1:
            raise ConfigError(f"stage cycle: {' -> '.join(chain + (s.name,))}")
        state[s.name] = 1
        for d in s.deps:
            visit(by_name[d], chain + (s.name,))
        state[s.name] = 2
        order.append(s)

    for s in stages:
        visit(s, ())
    return order


def select(stages: Sequence[Stage], targets: Iterable[str] | None) -> list[Stage]:
    """The stages needed to produce `targets` (all stages when None), in dependency order."""
    ordered = topological_order(stages)
    if targets is None:
        return ordered
    by_name = {s.name: s for s in stages}
    targets = list(targets)
    unknown = [t for t in targets if t not in by_name]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; known stages: {', '.join(by_name)}")
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(by_name[name].deps)
    return [s for s in ordered if s.name in needed]


class Pipeline:
    """Runs a list of stages under one root directory with caching and resume."""

    def __init__(self, stages: Sequence[Stage], root: str | Path, log: Callable[[str], None] = print,
                 trainer_callbacks: Callable[[], list[Any]] = list):
        self.stages = list(stages)
        self.root = Path(root)
        self.log = log
        self.trainer_callbacks = trainer_callbacks
        topological_order(self.stages)  # validate early

    def out_dir(self, name: str) -> Path:
        return self.root / name

    def partial_dir(self, name: str) -> Path:
        return self.root / f".{name}.partial"

    def key_contents(self, stages: Sequence[Stage] | None = None) -> dict[str, dict[str, Any]]:
        """What each stage's cache key hashes besides its name: its config, its dependencies' keys and its input
        files' hashes."""
        contents: dict[str, dict[str, Any]] = {}
        keys: dict[str, str] = {}
        file_hashes: dict[Path, str] = {}
        for s in topological_order(stages or self.stages):
            inputs = {}
            for p in s.inputs:
                p = Path(p)
                if p not in file_hashes:
                    file_hashes[p] = sha256_file(p) if p.is_file() else sha256_json(str(p))
                inputs[str(p)] = file_hashes[p]
            contents[s.name] = {"config": s.config, "deps": {d: keys[d] for d in s.deps}, "inputs": inputs}
            keys[s.name] = stage_key(s.name, contents[s.name])
        return contents

    def keys(self, stages: Sequence[Stage] | None = None) -> dict[str, str]:
        """The cache key of every stage (a hash of its name, config, dependency keys and input file hashes)."""
        return {name: stage_key(name, c) for name, c in self.key_contents(stages).items()}

    def find_twin(self, stage: Stage, contents: dict[str, Any]) -> str | None:
        """Another finished stage of this work folder whose key is `stage`'s key contents under its own name
        (same settings, dependency keys and inputs), its files and its dependencies' contents unchanged since it
        was written; None when there is none."""
        if not self.root.is_dir():
            return None
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            record = self.record(folder.name) if folder.name != stage.name else None
            if not record or record.get("cache_key") != stage_key(folder.name, contents):
                continue
            if record.get("files") is None or check_files(folder, record["files"], exclude=UNHASHED):
                continue
            digests = record.get("dep_digests") or {}
            if all(digests.get(d) == table_digest((self.record(d) or {}).get("files")) for d in stage.deps):
                return folder.name
        return None

    def record(self, name: str) -> dict[str, Any] | None:
        """The stage record (stage.json) of a finished stage, or None when there is none or it is unreadable."""
        path = self.out_dir(name) / STAGE_RECORD
        if not path.exists():
            return None
        try:
            record = read_json(path)
        except Exception:
            return None
        return record if isinstance(record, dict) else None

    def cached_key(self, name: str) -> str | None:
        record = self.record(name)
        return record.get("cache_key") if record else None

    def check_cached(self, stage: Stage, key: str, *, full: bool = False) -> tuple[str, list[str]]:
        """('cached', []) when the stage's folder is up to date and intact; ('stale', reasons) when its key or a
        dependency's contents changed; ('modified', one line per file) when its files differ from the hashes it
        recorded. Records written before hashes were recorded are trusted."""
        record = self.record(stage.name)
        path = self.out_dir(stage.name) / STAGE_RECORD
        if record is None and path.exists():
            return "modified", [f"{path}: unreadable (not the stage record it wrote)"]
        if record is None or record.get("cache_key") != key:
            return "stale", []
        files = record.get("files")
        if files is not None:
            problems = check_files(self.out_dir(stage.name), files, full=full, exclude=UNHASHED)
            if problems:
                return "modified", problems
        for dep, digest in (record.get("dep_digests") or {}).items():
            dep_record = self.record(dep)
            current = table_digest(dep_record.get("files")) if dep_record else None
            if digest and current and digest != current:
                return "stale", [f"stage '{dep}' was rebuilt with different contents since {stage.name} used it"]
        return "cached", []

    def status(self, targets: Iterable[str] | None = None) -> dict[str, str]:
        """For each selected stage: 'cached' if its output is up to date, 'modified' if its files changed after
        it was written, else 'stale'."""
        stages = select(self.stages, targets)
        keys = self.keys(self.stages)
        return {s.name: self.check_cached(s, keys[s.name])[0] for s in stages}

    def run(self, targets: Iterable[str] | None = None, force: Iterable[str] = (), *, rebuild: bool = True,
            full_check: bool = False, wait: bool = False) -> list[StageResult]:
        """Run the selected stages in order under the work folder's lock; skip up-to-date ones; rebuild a stage
        whose files were modified after it was cached (or raise IntegrityError when `rebuild` is False); return
        what happened to each. `full_check` hashes every cached file instead of trusting size and mtime."""
        stages = select(self.stages, targets)
        force = set(force)
        unknown = force - {s.name for s in self.stages}
        if unknown:
            raise ConfigError(f"unknown stage(s) to force: {sorted(unknown)}")
        contents = self.key_contents(self.stages)
        with WorkdirLock(self.root, wait=wait, log=self.log):
            return self._run_locked(stages, contents, force, rebuild, full_check)

    def _run_locked(self, stages: Sequence[Stage], contents: dict[str, dict[str, Any]], force: set[str],
                    rebuild: bool, full_check: bool) -> list[StageResult]:
        for aside in self.root.glob(".*.old"):  # a kill between moving an old folder aside and the new one in
            shutil.rmtree(aside, ignore_errors=True)
        results: list[StageResult] = []
        started = time.time()
        for position, stage in enumerate(stages, start=1):
            out = self.out_dir(stage.name)
            key = stage_key(stage.name, contents[stage.name])
            if stage.name not in force:
                state, problems = self.check_cached(stage, key, full=full_check)
                if state == "cached":
                    self.log(f"[skip] {stage.name}: up to date ({out})")
                    results.append(StageResult(stage.name, "cached", 0.0, out))
                    continue
                if state == "modified" and not rebuild:
                    raise IntegrityError(f"stage '{stage.name}': its cached artifact was modified after it was "
                                         f"written: {'; '.join(problems)} (--no-rebuild: not rebuilt; rerun without "
                                         f"it to rebuild the stage)")
                if problems:
                    self.log(f"[rebuild] {stage.name}: {'; '.join(problems)}")
            reusable = stage.reusable and stage.name not in force  # --force always runs
            twin = self.find_twin(stage, contents[stage.name]) if reusable else None
            results.append(self._run_stage(stage, key, f"{position}/{len(stages)}", started, twin=twin))
        return results

    def _run_stage(self, stage: Stage, key: str, position: str, run_started: float, *,
                   twin: str | None = None) -> StageResult:
        partial = self.partial_dir(stage.name)
        with faults.in_stage(stage.name):
            try:
                return self._run_stage_body(stage, key, position, run_started, twin=twin)
            except RefusedError:  # the stage refused its own result: keep nothing of it
                shutil.rmtree(partial, ignore_errors=True)
                raise
            except Exception as exc:
                failure = write_failure(exc)
                if failure is None:
                    raise
                shutil.rmtree(partial, ignore_errors=True)
                reason, name = failure
                path = exc.path if isinstance(exc, WriteError) else (name or partial)
                raise WriteError(path, reason, note=f"stage '{stage.name}' stopped, its partial output {partial} "
                                 f"was removed, the cached stages are unchanged") from exc

    def _run_stage_body(self, stage: Stage, key: str, position: str, run_started: float, *,
                        twin: str | None = None) -> StageResult:
        """Run `stage` into its partial folder (resuming it when allowed; copying `twin`'s output instead, when
        given), record it and move it into place."""
        out = self.out_dir(stage.name)
        partial = self.partial_dir(stage.name)
        resuming = False
        if twin and partial.exists():  # a copy of the finished twin beats resuming an interrupted run
            shutil.rmtree(partial)
        if partial.exists():
            key_file = partial / KEY_FILE
            same = key_file.exists() and key_file.read_text().strip() == key
            if stage.resumable and same:
                resuming = True
                remove_atomic_leftovers(partial)
            else:
                shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        # a copy cut short is never resumed as a training run: its key file says it was a copy
        (partial / KEY_FILE).write_text(f"copy of {twin}: {key}" if twin else key)
        faults.point("begin")
        verb = "reuse" if twin else "resume" if resuming else "run"
        self.log(f"[{verb}] {stage.name} ({position})" + (f": {stage.description}" if stage.description else "")
                 + (f"\n  same settings, dependencies and inputs as '{twin}': copying its output" if twin else ""))
        started = time.time()
        callbacks = self.trainer_callbacks
        ctx = StageContext(name=stage.name, work_dir=partial, deps={d: self.out_dir(d) for d in stage.deps},
                           config=stage.config, resuming=resuming, log=self.log,
                           trainer_callbacks=lambda: [*callbacks(), *faults.trainer_callbacks()])
        if twin:
            shutil.copytree(self.out_dir(twin), partial, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(STAGE_RECORD))
            returned = None
        else:
            returned = stage.run(ctx)
        faults.point("body")
        summary = stage.output(partial).summary() if stage.output is not None else (returned or {})
        (partial / KEY_FILE).unlink(missing_ok=True)
        dep_digests = {d: table_digest((self.record(d) or {}).get("files")) for d in stage.deps}
        write_json(partial / STAGE_RECORD, make_manifest(
            stage=stage.name, config=stage.config, started=started, inputs={d: str(p) for d, p in ctx.deps.items()},
            extra={"cache_key": key, "summary": summary, "resumed": resuming, "reused_from": twin,
                   "files": file_table(partial, exclude=UNHASHED), "dep_digests": dep_digests}))
        faults.point("recorded")
        faults.point("rename")
        replace_path(partial, out)
        faults.point("renamed")
        seconds = time.time() - started
        self.log(f"[done] {stage.name} in {seconds:.1f}s ({position}; {(time.time() - run_started) / 60:.1f} min "
                 "since the run started)")
        return StageResult(stage.name, "reused" if twin else "resumed" if resuming else "ran", seconds, out, summary)
