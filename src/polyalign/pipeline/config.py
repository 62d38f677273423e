"""The pipeline config (`polyalign run CONFIG.yaml`): which data, which base model, and the settings of every
stage. Stage settings either point at a stage config file (paths relative to the pipeline YAML) or hold the
settings inline; the pipeline fills in what it wires itself (model, data, output folders, seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import StrictModel, deep_update, load_yaml
from ..errors import ConfigError

METHODS = ("base", "sft", "bucket_sft", "dpo", "hdpo")
METHOD_LABELS = {"base": "Base", "sft": "SFT", "bucket_sft": "Bucket-SFT", "dpo": "DPO", "hdpo": "HDPO"}


class BaseModelSection(StrictModel):
    """The base LM: a Hugging Face causal LM (folder or hub id), or a tiny model built and pretrained here."""

    model: str | None = Field(None, description="HF causal LM folder or hub id; null builds a tiny model locally.")
    tiny: dict[str, Any] = Field(default_factory=dict,
                                 description="polyalign.models.tiny.TinyModelConfig fields (when model is null).")
    pretrain: dict[str, Any] | None = Field(
        default_factory=dict, description="polyalign.models.pretrain.PretrainConfig fields; null = no pretraining.")


class SuiteSection(StrictModel):
    """The evaluation suite drawn from the test split."""

    cap_per_bucket: int = Field(50, ge=1, description="Items per bucket at most.")
    ref_pool: int = Field(300, ge=10, description="Train human responses per bucket in the reference pool.")
    seed: int = Field(0, description="Seed of the item draw; kept apart from the training seed so that every "
                                     "seed of an experiment is scored on the same suite.")


class SamplesSection(StrictModel):
    """Policy samples on train prompts: the model side of the critic and the rejected side of the pairs."""

    per_bucket: int = Field(40, ge=1, description="Train records per bucket to sample responses for.")
    num_samples: int = Field(1, ge=1, description="Samples per record.")
    decoding: dict[str, Any] = Field(default_factory=dict,
                                     description="Overrides of the shared decoding config for these samples.")


class EvalSection(StrictModel):
    """Scoring settings."""

    featurizer: Literal["char-ngram-svd", "hidden-states"] = Field(
        "char-ngram-svd", description="Text featurizer for MAUVE and the projection plot.")
    featurizer_options: dict[str, Any] = Field(default_factory=dict, description="Featurizer options.")


class PipelineConfig(StrictModel):
    """One experiment: data → base → SFT / Bucket-SFT → samples → critic → pairs → DPO / HDPO → generation →
    evaluation → comparison."""

    name: str = Field("polyalign", description="Experiment name (shown in the report).")
    workdir: str = Field("runs/pipeline", description="Folder holding one sub-folder per stage.")
    seed: int = Field(0, description="Seed of every stage (the data split keeps the data config's own seed).")
    data: str | dict[str, Any] = Field(..., description="Data config: a YAML path or the settings inline.")
    base: BaseModelSection = Field(default_factory=BaseModelSection, description="The base LM.")
    profile: bool = Field(False, description="Profile system prompt (language, track, family) for every method.")
    sft: str | dict[str, Any] = Field(..., description="Plain SFT config (configs/train/sft.yaml).")
    bucket_sft: str | dict[str, Any] = Field(..., description="Bucket-Aware SFT config.")
    dpo: str | dict[str, Any] = Field(..., description="DPO config (initialized from SFT).")
    hdpo: str | dict[str, Any] = Field(..., description="HDPO config (initialized from Bucket-SFT).")
    critic: str | dict[str, Any] = Field(default_factory=dict, description="Critic settings (critic.yaml fields).")
    pairs: str | dict[str, Any] = Field(default_factory=dict, description="Pair settings (pairs.yaml fields).")
    samples: SamplesSection = Field(default_factory=SamplesSection, description="Policy samples on train prompts.")
    decoding: dict[str, Any] = Field(default_factory=dict,
                                     description="The one decoding config every method is evaluated with.")
    suite: SuiteSection = Field(default_factory=SuiteSection, description="Evaluation suite.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Scoring settings.")
    stages: list[str] | None = Field(None, description="Stages to produce (with what they need); null = all. "
                                                       "`polyalign stages CONFIG` lists them.")
    methods: list[Literal["base", "sft", "bucket_sft", "dpo", "hdpo"]] = Field(
        default_factory=lambda: list(METHODS), description="Methods to generate with and evaluate.")

    @model_validator(mode="after")
    def _methods_unique(self) -> PipelineConfig:
        if len(set(self.methods)) != len(self.methods) or not self.methods:
            raise ValueError("methods must be a non-empty list without repeats")
        return self


def resolve_section(value: str | dict[str, Any], base_dir: Path, what: str) -> tuple[dict[str, Any], Path | None]:
    """A stage section as a dict: inline settings as they are, or the YAML file it names (relative to the
    pipeline config). Returns (settings, the file it came from or None)."""
    if isinstance(value, dict):
        return dict(value), None
    path = Path(value)
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError(f"{what}: config file not found: {path}")
    data, _ = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data, path


def merged(settings: dict[str, Any], wired: dict[str, Any]) -> dict[str, Any]:
    """Stage settings with the values the pipeline wires (model, data, output folders, seed) on top."""
    return deep_update(settings, wired)
