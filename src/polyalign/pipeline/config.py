"""The pipeline config (`polyalign run CONFIG.yaml`): which data, which base model, and the settings of every
stage. Stage settings either point at a stage config file (paths relative to the pipeline YAML) or hold the
settings inline; the pipeline fills in what it wires itself (model, data, output folders, seed).

The preference methods are declared in `preference:` (name -> init, pairs, trainer config, loss overrides);
`methods:` picks the ones that are trained, generated with and evaluated. A config may `extends:` another
pipeline config in its folder and override some of its keys (configs/pipeline/ladder.yaml extends demo.yaml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import StrictModel, deep_update, load_yaml, read_yaml_extends, validate_config
from ..errors import ConfigError
from ..eval.views import DEFAULT_CONTEXT_KEY, validate_context_key

BASE_METHODS = ("base", "sft", "bucket_sft")
POLICIES = ("sft", "bucket_sft")  # the SFT policies: inits and sample sources of the preference methods
METHODS = ("base", "sft", "bucket_sft", "dpo", "hdpo")  # the default `methods:`
METHOD_LABELS = {"base": "Base", "sft": "SFT", "bucket_sft": "Bucket-SFT", "dpo": "DPO", "hdpo": "HDPO",
                 "dpo_bsft": "DPO (B-SFT)", "dpo_w_bsft": "+w (B-SFT)", "dpo_wr_bsft": "+w+reg (B-SFT)",
                 "hdpo_sft": "HDPO (SFT)"}
STAGE_NAMES = ("data", "base", "suite", "critic", "compare")
STAGE_PREFIXES = ("samples_", "pairs_", "critic_", "rounds_", "gen_", "eval_", "val_")
Policy = Literal["sft", "bucket_sft"]


class PreferenceMethod(StrictModel):
    """One preference-trained method: the policy it starts from, the pairs it trains on, and its loss."""

    init: Policy = Field(..., description="Policy init and frozen reference: the SFT or the Bucket-SFT model.")
    pairs: Policy = Field(..., description="Train on pairs_<policy>: pairs whose rejected side are that policy's "
                                           "samples (one pairs stage per policy, shared by every method).")
    trainer: Literal["dpo", "hdpo"] = Field(..., description="The trainer config it starts from: this file's "
                                                             "`dpo:` or `hdpo:` section.")
    loss: dict[str, Any] = Field(default_factory=dict,
                                 description="Overrides of that config's `loss:` (e.g. use_weights, reg_lambda, "
                                             "anchor_gamma); plain DPO is every term off.")
    on_policy: dict[str, Any] = Field(default_factory=dict,
                                      description="Overrides of that config's `on_policy:` (e.g. enabled, "
                                                  "every_n_steps); its critic is wired to the round's critic.")
    label: str | None = Field(None, description="Name in the reports (default: METHOD_LABELS, else the name).")
    rounds: int = Field(1, ge=1, description="Rounds (docs/hdpo.md, Rounds). 1: train once on pairs_<pairs>. "
                                             "k >= 2: sample the previous round's model on train prompts, refit "
                                             "the critic, rebuild the pairs (rejected = those samples) and train "
                                             "from that model (also the reference). The last round keeps the "
                                             "method's name; round k < K is the stage <name>_r<k>.")
    critic: bool = Field(True, description="false: iterated SPIN, no critic at all: pairs human > policy sample "
                                           "only (distances 0, weights 1), built in pairs_<name>_r<k> for every "
                                           "round; the loss must be plain DPO.")
    replay: int | None = Field(None, ge=0, description="Rounds >= 2: how many earlier rounds' samples join the "
                                                       "current ones on the model side of the critic refit "
                                                       "(null: all earlier rounds; 0: the current samples only).")
    cross_fit: int = Field(2, ge=1, description="Rounds >= 2: folds (by conversation) of the refit critic; a "
                                                "pair's distances come from the fold critic that saw neither its "
                                                "conversation nor its texts, a new text gets the max over the "
                                                "folds. 1: one critic, in-sample distances (as round 1).")
    round_critic: dict[str, Any] = Field(
        default_factory=dict, description="Rounds >= 2: overrides of the `critic:` settings for the refit critics "
                                          "critic_<name>_r<k> only (e.g. min_auc, max_epochs); round 1 keeps the "
                                          "shared critic's.")

    def round_names(self, name: str) -> list[str]:
        """The training-stage names of rounds 1..K: <name>_r<k> for k < K, then <name>."""
        return [f"{name}_r{k}" for k in range(1, self.rounds)] + [name]


def default_preference() -> dict[str, PreferenceMethod]:
    """DPO from SFT on pairs of SFT samples, HDPO from Bucket-SFT on pairs of Bucket-SFT samples."""
    return {"dpo": PreferenceMethod(init="sft", pairs="sft", trainer="dpo"),
            "hdpo": PreferenceMethod(init="bucket_sft", pairs="bucket_sft", trainer="hdpo")}


class BaseModelSection(StrictModel):
    """The base LM: a Hugging Face causal LM (folder or hub id), or a tiny model built and pretrained here."""

    model: str | None = Field(None, description="HF causal LM folder or hub id; null builds a tiny model locally.")
    tiny: dict[str, Any] = Field(default_factory=dict,
                                 description="polyalign.models.tiny.TinyModelConfig fields (when model is null).")
    pretrain: dict[str, Any] | None = Field(
        default_factory=dict, description="polyalign.models.pretrain.PretrainConfig fields; null = no pretraining.")


class SuiteSection(StrictModel):
    """The evaluation suite drawn from the test split (or the validation split, for choosing settings)."""

    split: Literal["test", "val"] = Field(
        "test", description="Where the suite items come from. `val` builds the validation suite under its own "
                            "stage names (val_suite, val_gen_<method>, val_eval_<method>, val_compare) next to "
                            "the test ones in the same work folder, so that settings are chosen on it and the "
                            "test split is touched once, at the end.")
    cap_per_bucket: int = Field(50, ge=1, description="Items per context group at most (drawn uniformly in it).")
    ref_pool: int = Field(300, ge=10, description="Train human responses per context group in the reference pool.")
    context_key: list[str] = Field(default_factory=lambda: list(DEFAULT_CONTEXT_KEY),
                                   description="Record fields known before the response that define the context "
                                               "groups of the headline view (never a property of the response).")

    @field_validator("context_key")
    @classmethod
    def _observable_key(cls, value: list[str]) -> list[str]:
        """Only fields of the context (polyalign.eval.views)."""
        try:
            return list(validate_context_key(value))
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("error: ")) from None
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
    """One experiment: data → base → SFT / Bucket-SFT → samples → critic → pairs → the preference methods
    (DPO / HDPO and their ablations) → generation → evaluation → comparison."""

    name: str = Field("polyalign", description="Experiment name (shown in the report).")
    workdir: str = Field("runs/pipeline", description="Folder holding one sub-folder per stage.")
    seed: int = Field(0, description="Seed of every stage (the data split keeps the data config's own seed).")
    data: str | dict[str, Any] = Field(..., description="Data config: a YAML path or the settings inline.")
    base: BaseModelSection = Field(default_factory=BaseModelSection, description="The base LM.")
    profile: bool = Field(False, description="Profile system prompt (language, track, family) for every method.")
    sft: str | dict[str, Any] = Field(..., description="Plain SFT config (configs/train/sft.yaml).")
    bucket_sft: str | dict[str, Any] = Field(..., description="Bucket-Aware SFT config.")
    dpo: str | dict[str, Any] = Field(..., description="Plain-DPO trainer config (configs/train/dpo.yaml): its "
                                                       "loss must have every HDPO term off.")
    hdpo: str | dict[str, Any] = Field(..., description="HDPO trainer config (configs/train/hdpo.yaml).")
    preference: dict[str, PreferenceMethod] = Field(
        default_factory=default_preference,
        description="Preference methods by name: init, pairs, trainer config and loss overrides.")
    critic: str | dict[str, Any] = Field(default_factory=dict, description="Critic settings (critic.yaml fields).")
    pairs: str | dict[str, Any] = Field(default_factory=dict, description="Pair settings (pairs.yaml fields).")
    samples: SamplesSection = Field(default_factory=SamplesSection, description="Policy samples on train prompts.")
    decoding: dict[str, Any] = Field(default_factory=dict,
                                     description="The one decoding config every method is evaluated with.")
    suite: SuiteSection = Field(default_factory=SuiteSection, description="Evaluation suite.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Scoring settings.")
    stages: list[str] | None = Field(None, description="Stages to produce (with what they need); null = all. "
                                                       "`polyalign stages CONFIG` lists them.")
    methods: list[str] = Field(default_factory=lambda: list(METHODS),
                               description="Methods to train, generate with and evaluate: base, sft, bucket_sft "
                                           "and names of `preference:`. Only their stages are built.")
    contrasts: list[str] | None = Field(None, description="Paired tests in the comparison, 'a:b' method names; "
                                                          "those with a method not in `methods:` are left out "
                                                          "(null: each method against the one before it).")

    @model_validator(mode="after")
    def _check_methods(self) -> PipelineConfig:
        for name in self.preference:
            check_method_name(name)
        rounds = [r for name, spec in self.preference.items() for r in spec.round_names(name)[:-1]]
        taken = [r for r in rounds if r in self.preference or rounds.count(r) > 1]
        if taken:
            raise ValueError(f"round stage name(s) {sorted(set(taken))} are also preference method names or "
                             f"rounds of two methods; rename one")
        if len(set(self.methods)) != len(self.methods) or not self.methods:
            raise ValueError("methods must be a non-empty list without repeats")
        known = [*BASE_METHODS, *self.preference, *rounds]
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(known)} (declare preference methods "
                             f"under `preference:`)")
        labels = [self.label(m) for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two methods share a label: {labels}")
        for contrast in self.contrasts or []:
            parts = contrast.split(":")
            if len(parts) != 2 or any(p not in known for p in parts):
                raise ValueError(f"contrast {contrast!r}: give 'a:b' with two declared methods ({', '.join(known)})")
        return self

    def listed_contrasts(self) -> list[tuple[str, str]] | None:
        """The contrasts whose two methods are both listed in `methods:` (null: compare's default)."""
        if not self.contrasts:
            return None
        pairs = [tuple(c.split(":")) for c in self.contrasts]
        return [(a, b) for a, b in pairs if a in self.methods and b in self.methods]

    def contrast_labels(self) -> list[str] | None:
        """The listed contrasts with method labels (as compare names the methods)."""
        pairs = self.listed_contrasts()
        return None if pairs is None else [f"{self.label(a)}:{self.label(b)}" for a, b in pairs]

    def label(self, method: str) -> str:
        """The readable name of a method in logs and reports (an earlier round: the method's label + r<k>)."""
        found = self.round_of(method)
        if found and found[1] < self.preference[found[0]].rounds:
            return f"{self.label(found[0])} r{found[1]}"
        spec = self.preference.get(method)
        return (spec.label if spec and spec.label else None) or METHOD_LABELS.get(method, method)

    def round_of(self, name: str) -> tuple[str, int] | None:
        """(preference method, round) of a training-stage name (a method is its last round); None otherwise."""
        for method, spec in self.preference.items():
            names = spec.round_names(method)
            if name in names:
                return method, names.index(name) + 1
        return None

    def preference_methods(self) -> list[str]:
        """The preference methods with a listed round (the method itself or an earlier round), in `methods:`
        order."""
        found = [self.round_of(m) for m in self.methods]
        return list(dict.fromkeys(f[0] for f in found if f is not None))

    def rounds_needed(self, method: str) -> int:
        """The last round of `method` that a listed method needs (its own K when the method is listed)."""
        return max(f[1] for f in map(self.round_of, self.methods) if f is not None and f[0] == method)


def check_method_name(name: str) -> None:
    """A preference method name is a lowercase identifier that no stage name can be confused with."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"preference method name {name!r}: use lowercase letters, digits and _")
    if name in BASE_METHODS or name in STAGE_NAMES or name.startswith(STAGE_PREFIXES):
        raise ValueError(f"preference method name {name!r} is taken by a stage; pick another name")


def load_pipeline_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load and validate a pipeline YAML (with what it extends, then the overrides on top)."""
    path = Path(path)
    data = read_yaml_extends(path, "pipeline YAML")
    if overrides:
        data = deep_update(inline_overridden_sections(data, overrides, path.parent), overrides)
    _, lines = load_yaml(path)
    return validate_config(data, PipelineConfig, file=path, lines=lines)


STAGE_SECTIONS = ("sft", "bucket_sft", "dpo", "hdpo", "critic", "pairs")


def inline_overridden_sections(data: dict[str, Any], overrides: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`data` with every section that names a file and gets overridden keys (`--set sft.training.max_steps=9`)
    replaced by that file's settings, so that the override lands on them instead of replacing the file name.
    A data file's relative source paths are made absolute first (they are relative to its own folder)."""
    data = dict(data)
    for name in (*STAGE_SECTIONS, "data"):
        if not (isinstance(overrides.get(name), dict) and isinstance(data.get(name), str)):
            continue
        settings, file = resolve_section(data[name], base_dir, name)
        if name == "data":
            for source in settings.get("sources") or []:
                raw = Path(str(source.get("path", ""))).expanduser()
                if isinstance(source, dict) and not raw.is_absolute() and (file.parent / raw).exists():
                    source["path"] = str((file.parent / raw).resolve())
        data[name] = settings
    return data


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
    return read_yaml_extends(path, what), path


def merged(settings: dict[str, Any], wired: dict[str, Any]) -> dict[str, Any]:
    """Stage settings with the values the pipeline wires (model, data, output folders, seed) on top."""
    return deep_update(settings, wired)
