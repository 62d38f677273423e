"""One training run, the same for pretraining, SFT and DPO/HDPO: `run_training(run) -> Path`.

A stage (models/pretrain.py, train/sft.py, train/hdpo.py) builds its datasets, says how to build its trainer and
what its manifest adds (a `TrainingRun`); `run_training` does the rest, identically for all of them:

1. the hidden work folder next to the output (`.<name>.work`), which keeps the checkpoints: a run started again
   with the same config (same hash) resumes from its last complete checkpoint, and rows of the per-bucket log
   written after that checkpoint are dropped;
2. the process guard (launched processes that are not connected would each train alone) and the main-process
   guard around every file written;
3. the model, with LoRA adapters through PEFT when asked, merged into the base weights when saved;
4. the atomic save of the model folder: weights, tokenizer (left padding, for generation), the per-bucket log,
   TensorBoard event files and `manifest.json`.

Also here, because every stage uses them: the ChatML fallback of a tokenizer without a chat template, our
defaults for TRL configs and the check of a `training:` mapping against them, and `LoraSection`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from peft import LoraConfig
from pydantic import Field
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import StrictModel
from ..errors import ConfigError
from ..io import atomic_path, make_manifest, read_json, read_jsonl, sha256_json, sha256_tree, write_json, write_jsonl
from ..models.loading import load_causal_lm, load_tokenizer
from ..models.tiny import fix_tokenizer_config
from . import varlen_attention  # noqa: F401  (registers attn_implementation="sdpa_varlen")


class LoraSection(StrictModel):
    """LoRA adapters through PEFT (merged into the base weights when saved, so the output loads as a plain
    causal LM)."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt (PEFT syntax).")
    merge: bool = Field(True, description="Merge the adapters into the saved model.")


@dataclass
class TrainerParts:
    """What `run_training` hands to a stage's trainer builder."""

    model: Any  # the policy, in training mode, on the CPU (the Trainer places it)
    peft_config: LoraConfig | None
    work: Path  # the work folder (the trainer's output_dir)
    state: PartialState  # for the main-process guard of files the stage writes itself


@dataclass
class TrainingRun:
    """One stage's run, as `run_training` needs it. `build_trainer` runs on every process once the work folder is
    ready; `summarize(trainer, train_result)` runs on every process after training (put final evaluations there)
    and returns the manifest's own fields; `inputs()` runs on the main process and returns input hashes."""

    stage: str  # manifest stage: model.pretrain, train.sft, train.dpo, train.hdpo
    model_source: str  # checked model folder or Hub id
    output_dir: Path
    config: dict[str, Any]  # the stage config, as the manifest keeps it; with `fingerprint`, the resume key
    seed: int
    tokenizer: Any
    build_trainer: Callable[[TrainerParts], Any]
    summarize: Callable[[Any, Any], dict[str, Any]]
    inputs: Callable[[], dict[str, str]] = dict
    started: float = field(default_factory=time.time)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # more of what a checkpoint depends on
    resume: bool = True
    resume_from: str | None = None  # a checkpoint to start from when the work folder has none
    model_dtype: str = "float32"
    attn_implementation: str | None = None  # e.g. flash_attention_2; None: transformers' default (sdpa)
    lora: LoraSection | None = None
    log_file: str | None = None  # the trainer's per-bucket log in the work folder (trimmed on resume, saved)

    @property
    def config_hash(self) -> str:
        """The resume key: a work folder written for another config or model is never resumed."""
        return sha256_json({"config": self.config, "model": self.model_source, **self.fingerprint})


def run_training(run: TrainingRun, *, log: Callable[..., Any] | None = None) -> Path:
    """Train `run` (resuming an interrupted identical run) and write its model folder atomically; return it."""
    say = log or silent
    state = connected_state()
    work = work_dir(run.output_dir)
    checkpoint = resume_point(work, run, state, say)
    say("loading the model")
    attention = {"attn_implementation": run.attn_implementation} if run.attn_implementation else {}
    model = load_causal_lm(run.model_source, dtype=run.model_dtype, device="cpu", **attention)
    model.train()
    trainer = run.build_trainer(TrainerParts(model=model, peft_config=lora_config(run.lora), work=work, state=state))
    quiet_console_logs(trainer)
    prior = checkpoint_loss_total(checkpoint)
    track_loss_total(trainer, prior)
    start_step = int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0
    result = trainer.train(resume_from_checkpoint=checkpoint or run.resume_from)
    if checkpoint and prior is not None and "train_loss" in result.metrics:
        result.metrics["train_loss"] = whole_run_loss(result.metrics["train_loss"], prior, start_step,
                                                      trainer.state.global_step)
    summary = run.summarize(trainer, result)
    say("saving")
    model_out = merged_model(trainer, run.lora)
    if state.is_main_process:
        extra = {"model_source": run.model_source, **summary, "global_steps": trainer.state.global_step,
                 "train_runtime_s": result.metrics.get("train_runtime"),
                 "train_loss": result.metrics.get("train_loss"), "resumed_from": checkpoint}
        save_model_folder(run, model_out, work, extra)
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return run.output_dir


LOSS_TOTAL_FILE = "loss_total.json"


def track_loss_total(trainer: Any, prior: float | None) -> None:
    """Make every checkpoint of `trainer` record the sum of the training losses of all its steps so far
    (loss_total.json; `prior`: the sum up to the checkpoint this session resumed from), so that a resumed run can
    report the train_loss of the whole run: transformers averages over the resumed session's steps only."""
    save = trainer._save_checkpoint

    def _save_checkpoint(model: Any, trial: Any) -> None:
        save(model, trial)
        if not trainer.args.should_save or (trainer.state.global_step and prior is None and _resumed(trainer)):
            return
        folder = Path(trainer._get_output_dir(trial=trial)) / f"checkpoint-{trainer.state.global_step}"
        total = (prior or 0.0) + trainer._total_loss_scalar + float(trainer._tr_loss.item())
        write_json(folder / LOSS_TOTAL_FILE, {"step": trainer.state.global_step, "loss_total": total})

    trainer._save_checkpoint = _save_checkpoint


def _resumed(trainer: Any) -> bool:
    return bool(getattr(trainer, "_initial_global_step", 0))


def checkpoint_loss_total(checkpoint: str | None) -> float | None:
    """The loss sum a checkpoint recorded (None without a checkpoint, or one written before it was recorded)."""
    if not checkpoint or not (Path(checkpoint) / LOSS_TOTAL_FILE).exists():
        return None
    return float(read_json(Path(checkpoint) / LOSS_TOTAL_FILE)["loss_total"])


def whole_run_loss(session_loss: float, prior: float, start_step: int, global_step: int) -> float:
    """The mean training loss over every step of a resumed run, from the resumed session's mean and the loss sum
    of the steps before it."""
    return (prior + session_loss * (global_step - start_step)) / max(global_step, 1)


def silent(*args: Any, **kwargs: Any) -> None:
    """The default `log` of a stage: say nothing."""


# ---- work folder and resume -------------------------------------------------------------------------------------


def work_dir(output_dir: str | Path) -> Path:
    """The hidden work folder of an output folder: `<parent>/.<name>.work`."""
    output_dir = Path(output_dir)
    return output_dir.parent / f".{output_dir.name}.work"


def prepare_work_dir(work: Path, config_hash: str, resume: bool) -> str | None:
    """Create the work folder; return the checkpoint to resume from (only for the same config)."""
    marker = work / "run_config_hash.txt"
    if work.exists():
        same = marker.exists() and marker.read_text().strip() == config_hash
        checkpoint = last_complete_checkpoint(work) if same and resume else None
        if checkpoint:
            return checkpoint
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.write_text(config_hash + "\n")
    return None


def last_complete_checkpoint(work: str | Path) -> str | None:
    """The newest checkpoint-N folder of `work` that was written completely (has trainer_state.json)."""
    done = [p for p in Path(work).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def trim_log(path: Path, max_step: int) -> None:
    """Drop the rows of a JSONL log written after the checkpoint we resume from."""
    if path.exists():
        write_jsonl(path, [row for row in read_jsonl(path) if row.get("step", 0) <= max_step])


def resume_point(work: Path, run: TrainingRun, state: PartialState, say: Callable[..., Any]) -> str | None:
    """Prepare the work folder on the main process, then return (on every process) the checkpoint to resume."""
    checkpoint = None
    if state.is_main_process:
        checkpoint = prepare_work_dir(work, run.config_hash, run.resume)
        if checkpoint:
            say(f"resuming from {checkpoint}")
            if run.log_file:
                trim_log(work / run.log_file, int(Path(checkpoint).name.split("-")[-1]))
    state.wait_for_everyone()
    if not state.is_main_process:
        checkpoint = last_complete_checkpoint(work) if run.resume else None
    return checkpoint


def connected_state() -> PartialState:
    """The accelerate process state; a ConfigError when launched processes are not connected to each other."""
    state = PartialState()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise ConfigError(f"{launched} processes were launched but they are not connected (each would train "
                          f"alone); on CPU set ACCELERATE_USE_CPU=1 (see configs/accelerate/cpu_2proc.yaml)")
    return state


# ---- model, tokenizer, trainer ----------------------------------------------------------------------------------


def training_tokenizer(model_source: str) -> Any:
    """The tokenizer for chat training: right padding; a tokenizer without a chat template is refused (a
    substituted template would use special tokens the model never learned)."""
    return load_tokenizer(model_source, padding_side="right", chat=True)


def lora_config(lora: LoraSection | None) -> LoraConfig | None:
    """The PEFT LoraConfig of a `lora:` section (None when LoRA is off)."""
    if lora is None or not lora.enabled:
        return None
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def merged_model(trainer: Any, lora: LoraSection | None) -> Any:
    """The model to save: LoRA adapters merged into the base weights when asked, else the unwrapped model."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    return model.merge_and_unload() if lora is not None and lora.enabled and lora.merge else model


def quiet_console_logs(trainer: Any) -> None:
    """Drop transformers' stdout printer of log dicts (logs still reach report_to, our JSONL and callbacks)."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def trainer_defaults() -> dict[str, Any]:
    """Our defaults for the TRL config of SFT and DPO/HDPO (a run config's `training:` overrides them)."""
    cuda = torch.cuda.is_available()
    return {"bf16": bool(cuda and torch.cuda.is_bf16_supported()), "gradient_checkpointing": False,
            "report_to": "none", "logging_steps": 10, "save_strategy": "no", "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16, "disable_tqdm": True, "ddp_find_unused_parameters": False,
            "dataloader_pin_memory": cuda}


def check_trl_keys(training: dict[str, Any], trl_config: type, reserved: dict[str, str]) -> None:
    """Every key of a `training:` mapping must be a field of `trl_config` and not one of `reserved` (key → where it
    is set instead, e.g. "at the top level")."""
    known = {f.name for f in dataclasses.fields(trl_config) if f.init}
    for key in training:
        if key not in known:
            raise ConfigError(f"training.{key}: unknown trl.{trl_config.__name__} field (check the spelling)")
        if key in reserved:
            raise ConfigError(f"training.{key}: set '{key}' {reserved[key]} of the config, not under training")


def make_trainer_args(config_cls: type, kwargs: dict[str, Any]) -> Any:
    """`config_cls(**kwargs)`, its TypeError / ValueError as a one-line ConfigError about `training:`."""
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training: {str(exc).splitlines()[0]}") from None


# ---- the model folder -------------------------------------------------------------------------------------------


def write_model_files(folder: Path, model: Any, tokenizer: Any, work: Path, log_file: str | None) -> None:
    """Save `model` and its tokenizer (left padding, for generation) into `folder`, with the run's per-bucket log
    and TensorBoard event files from the work folder."""
    model.save_pretrained(folder)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(folder)
    fix_tokenizer_config(folder)
    if log_file and (work / log_file).exists():
        shutil.copy(work / log_file, folder / log_file)
    if (work / "runs").is_dir():  # tensorboard event files (report_to: tensorboard)
        shutil.copytree(work / "runs", folder / "runs")


def save_model_folder(run: TrainingRun, model: Any, work: Path, extra: dict[str, Any]) -> None:
    """Write the model folder of `run` atomically: model files and `manifest.json` (main process only)."""
    with atomic_path(run.output_dir) as tmp:
        write_model_files(tmp, model, run.tokenizer, work, run.log_file)
        inputs = run.inputs()
        if Path(run.model_source).is_dir():
            inputs["model"] = sha256_tree(run.model_source)
        write_json(tmp / "manifest.json", make_manifest(stage=run.stage, config=run.config, inputs=inputs,
                                                        seed=run.seed, started=run.started, extra=extra))


__all__ = ["LoraSection", "TrainerParts", "TrainingRun", "run_training", "silent", "work_dir", "prepare_work_dir",
           "last_complete_checkpoint", "trim_log", "training_tokenizer", "lora_config", "quiet_console_logs",
           "trainer_defaults", "check_trl_keys", "make_trainer_args", "write_model_files"]
