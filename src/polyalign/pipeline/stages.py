"""The stages of a PolyAlign experiment, wired from a PipelineConfig.

```
data ─▶ base ─▶ sft ────────▶ samples_sft ─────────┐
   │         └▶ bucket_sft ─▶ samples_bucket_sft ──┴▶ critic ─▶ pairs_dpo ─▶ dpo
   │                                                        └▶ pairs_hdpo ─▶ hdpo
   └▶ suite ─▶ gen_<method> ─▶ eval_<method> ─▶ compare      (method ∈ base, sft, bucket_sft, dpo, hdpo)
```

Every stage calls the same importable function as its CLI verb; this module only wires folders and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.stratify import stratified_records
from ..errors import ConfigError, PolyAlignError
from ..io import read_json, write_json
from .config import METHOD_LABELS, PipelineConfig, merged, resolve_section
from .graph import Stage, StageContext

TRAINED = ("sft", "bucket_sft", "dpo", "hdpo")


class Wiring:
    """Resolved settings and folder layout of one pipeline config."""

    def __init__(self, config: PipelineConfig, config_path: Path | None):
        from ..data.sources import DataConfig, load_data_config, resolve_paths
        from ..config import validate_config

        self.config = config
        self.base_dir = (config_path.parent if config_path else Path.cwd()).resolve()
        self.root = Path(config.workdir)
        if isinstance(config.data, str):
            path = Path(config.data)
            self.data_config = load_data_config(path if path.is_absolute() else self.base_dir / path)
        else:
            self.data_config = resolve_paths(validate_config(config.data, DataConfig, prefix=("data",)),
                                             self.base_dir)
        self.sections: dict[str, dict[str, Any]] = {}
        for name in ("sft", "bucket_sft", "dpo", "hdpo", "critic", "pairs"):
            self.sections[name], _ = resolve_section(getattr(config, name), self.base_dir, name)

    def dir(self, stage: str) -> Path:
        return self.root / stage

    def model_path(self, method: str) -> str:
        """Where a method's model lives (a folder, or the hub id of an external base model)."""
        if method == "base":
            if self.config.base.model:
                return self.config.base.model
            return str(self.dir("base") / "model")
        return str(self.dir(method) / "model")

    def decoding(self, extra: dict[str, Any] | None = None) -> Any:
        from ..config import validate_config
        from ..generate import DecodingConfig

        settings = {"seed": self.config.seed, **self.config.decoding, **(extra or {})}
        return validate_config(settings, DecodingConfig, prefix=("decoding",))

    # -- validation before any work -----------------------------------------------------------------------------

    def sft_config(self, method: str, work: Path | None = None) -> Any:
        from ..config import validate_config
        from ..train.sft import SFTRunConfig, check_training_keys

        wired = {"model": self.model_path("base"), "data": str(self.dir("data")),
                 "output_dir": str((work or self.dir(method)) / "model"), "seed": self.config.seed,
                 "profile": self.config.profile}
        config = validate_config(merged(self.sections[method], wired), SFTRunConfig, prefix=(method,))
        check_training_keys(config)
        return config

    def preference_config(self, method: str, work: Path | None = None) -> Any:
        from ..config import validate_config
        from ..train.hdpo import HDPORunConfig, check_training_keys

        init = "sft" if method == "dpo" else "bucket_sft"
        wired = {"model": self.model_path(init), "pairs": str(self.dir(f"pairs_{method}") / "pairs.jsonl"),
                 "output_dir": str((work or self.dir(method)) / "model"), "seed": self.config.seed}
        config = validate_config(merged(self.sections[method], wired), HDPORunConfig, prefix=(method,))
        check_training_keys(config)
        return config

    def preflight(self) -> None:
        """Check every stage's settings and the base model before any work starts."""
        from ..models.tiny import TinyModelConfig
        from ..models.pretrain import PretrainConfig
        from ..config import validate_config

        base = self.config.base
        if base.model:
            check_loadable_model(base.model)
        else:
            validate_config(base.tiny, TinyModelConfig, prefix=("base", "tiny"))
            if base.pretrain is not None:
                validate_config(base.pretrain, PretrainConfig, prefix=("base", "pretrain"))
        for method in ("sft", "bucket_sft"):
            self.sft_config(method)
        for method in ("dpo", "hdpo"):
            self.preference_config(method)
        self.decoding()
        self.decoding(self.config.samples.decoding)
        self.critic_config()
        self.pairs_config("dpo")

    def critic_config(self, work: Path | None = None) -> Any:
        from ..config import validate_config
        from ..critic.fit import CriticConfig

        wired = {"data": str(self.dir("data")), "out": str(work or self.dir("critic")), "seed": self.config.seed,
                 "predictions": [str(self.dir(f"samples_{m}") / "predictions.jsonl") for m in ("sft", "bucket_sft")]}
        return validate_config(merged(self.sections["critic"], wired), CriticConfig, prefix=("critic",))

    def pairs_config(self, method: str, work: Path | None = None) -> Any:
        from ..config import validate_config
        from ..pairs import PairsConfig

        policy = "sft" if method == "dpo" else "bucket_sft"
        wired = {"data": str(self.dir("data")), "critic": str(self.dir("critic")),
                 "out": str(work or self.dir(f"pairs_{method}")), "seed": self.config.seed,
                 "profile": self.config.profile,
                 "predictions": [str(self.dir(f"samples_{policy}") / "predictions.jsonl")]}
        return validate_config(merged(self.sections["pairs"], wired), PairsConfig, prefix=("pairs",))


def check_loadable_model(model: str) -> None:
    """Raise PolyAlignError unless `model` is a local HF model folder or a hub id whose config can be loaded."""
    from ..models.loading import check_model_source

    source = check_model_source(model)
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's to fix
        raise PolyAlignError(f"base model '{model}' cannot be loaded: {str(exc).splitlines()[0]}") from None


# -- stage bodies -------------------------------------------------------------------------------------------------


def _data(w: Wiring):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..data.build import build_dataset

        summary = build_dataset(w.data_config, ctx.work_dir, progress=False)
        return {k: summary[k] for k in ("n_records", "n_buckets") if k in summary}
    return run


def _base(w: Wiring):
    def run(ctx: StageContext) -> dict[str, Any]:
        base = w.config.base
        if base.model:
            write_json(ctx.work_dir / "base.json", {"model": base.model})
            return {"model": base.model}
        from ..data.build import load_records
        from ..models.pretrain import PretrainConfig, pretrain
        from ..models.tiny import TinyModelConfig, init_tiny

        records = load_records(ctx.deps["data"], "train")
        init_dir = ctx.work_dir / "init"
        if not (init_dir / "config.json").exists():
            ctx.log("  building the tokenizer and the tiny model")
            init_tiny(records, init_dir, TinyModelConfig(**base.tiny))
        if base.pretrain is None:
            init_dir.rename(ctx.work_dir / "model")
            return {}
        ctx.log("  pretraining the tiny base model on the train split's human text")
        pretrain(init_dir, records, ctx.work_dir / "model", PretrainConfig(**base.pretrain), log=ctx.log,
                 callbacks=ctx.trainer_callbacks())
        manifest = read_json(ctx.work_dir / "model" / "manifest.json")
        return {"train_loss": manifest.get("train_loss"), "n_parameters": manifest.get("n_parameters")}
    return run


def _sft(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..train.sft import run_sft

        out = run_sft(w.sft_config(method, ctx.work_dir), log=lambda m, *a, **k: ctx.log(f"  {m}"),
                      callbacks=ctx.trainer_callbacks())
        return _final_losses(out)
    return run


def _final_losses(model_dir: Path) -> dict[str, Any]:
    manifest = read_json(Path(model_dir) / "manifest.json")
    final = manifest.get("final_bucket_loss") or manifest.get("final") or {}
    val = final.get("val") if isinstance(final, dict) else None
    if isinstance(val, dict):
        return {k: val[k] for k in ("spread", "worst_bucket", "worst_loss", "mean") if k in val}
    return {}


def _preference(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..train.hdpo import run_hdpo

        config = w.preference_config(method, ctx.work_dir)
        run_hdpo(config, plain_dpo=(method == "dpo"), log=lambda m, *a, **k: ctx.log(f"  {m}"),
                 callbacks=ctx.trainer_callbacks())
        return {}
    return run


def _suite(w: Wiring):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..eval.suite import build_suite

        s = w.config.suite
        build_suite(ctx.deps["data"], ctx.work_dir, cap_per_bucket=s.cap_per_bucket, seed=s.seed,
                    ref_pool=s.ref_pool)
        manifest = read_json(ctx.work_dir / "manifest.json")
        return {k: manifest[k] for k in ("n_items", "version") if k in manifest}
    return run


def _samples(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..data.build import load_records
        from ..generate import generate_predictions

        s = w.config.samples
        records = stratified_records(load_records(ctx.deps["data"], "train"), s.per_bucket, w.config.seed)
        decoding = w.decoding({**s.decoding, "num_samples": s.num_samples})
        ctx.log(f"  sampling {s.num_samples} response(s) for {len(records)} train prompts")
        generate_predictions(w.model_path(method), records, ctx.work_dir, decoding, profile=w.config.profile)
        return {"n_records": len(records)}
    return run


def _critic(w: Wiring):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..critic.fit import fit_critic

        fit_critic(w.critic_config(ctx.work_dir))
        metrics = read_json(ctx.work_dir / "metrics.json")
        return {k: metrics[k] for k in ("auc", "heldout_auc") if k in metrics}
    return run


def _pairs(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..pairs import build_pairs_stage

        _, summary = build_pairs_stage(w.pairs_config(method, ctx.work_dir))
        return {k: summary[k] for k in ("n_pairs",) if k in summary}
    return run


def _generate(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..eval.suite import load_suite
        from ..generate import generate_predictions

        suite = load_suite(ctx.deps["suite"])
        ctx.log(f"  generating for {len(suite.items)} suite items")
        generate_predictions(w.model_path(method), suite.items, ctx.work_dir, w.decoding(),
                             profile=w.config.profile)
        return {"n_items": len(suite.items)}
    return run


def _evaluate(w: Wiring, method: str):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..eval.runner import evaluate

        evaluate(ctx.deps[f"gen_{method}"] / "predictions.jsonl", ctx.deps["suite"], ctx.work_dir,
                 featurizer=w.config.eval.featurizer, featurizer_options=w.config.eval.featurizer_options,
                 seed=w.config.seed, name=METHOD_LABELS[method])
        return {}
    return run


def _compare(w: Wiring):
    def run(ctx: StageContext) -> dict[str, Any]:
        from ..eval.compare import compare_runs

        methods = w.config.methods
        compare_runs([ctx.deps[f"eval_{m}"] for m in methods], ctx.work_dir,
                     names=[METHOD_LABELS[m] for m in methods])
        return {"methods": [METHOD_LABELS[m] for m in methods]}
    return run


def build_stages(w: Wiring) -> list[Stage]:
    """The stage list of a pipeline (only the methods it evaluates, and what they need)."""
    c = w.config
    seed = c.seed
    data_inputs = tuple(Path(s.path) for s in w.data_config.sources if Path(s.path).exists())
    stages = [
        Stage("data", _data(w), config=w.data_config.model_dump(mode="json"), inputs=data_inputs,
              description="normalize, dedup, split, bucket, features, references"),
        Stage("base", _base(w), deps=("data",), config=c.base.model_dump(mode="json"), resumable=True,
              description="the base LM" + ("" if c.base.model else " (tiny, built and pretrained here)")),
        Stage("suite", _suite(w), deps=("data",), config=c.suite.model_dump(),
              description="bucket-stratified evaluation suite from the test split"),
    ]
    for method in ("sft", "bucket_sft"):
        stages.append(Stage(method, _sft(w, method), deps=("data", "base"), resumable=True,
                            config=w.sft_config(method).model_dump(mode="json", exclude={"output_dir"}),
                            description=METHOD_LABELS[method]))
        stages.append(Stage(f"samples_{method}", _samples(w, method), deps=("data", method), resumable=True,
                            config={**c.samples.model_dump(), "decoding": w.decoding(c.samples.decoding).model_dump(),
                                    "profile": c.profile, "seed": seed},
                            description=f"policy samples of {METHOD_LABELS[method]} on train prompts"))
    stages.append(Stage("critic", _critic(w), deps=("data", "samples_sft", "samples_bucket_sft"),
                        config=w.critic_config().model_dump(mode="json", exclude={"out"}),
                        description="bucket-conditioned critic: human vs model"))
    for method in ("dpo", "hdpo"):
        init = "sft" if method == "dpo" else "bucket_sft"
        stages.append(Stage(f"pairs_{method}", _pairs(w, method), deps=("data", "critic", f"samples_{init}"),
                            config=w.pairs_config(method).model_dump(mode="json", exclude={"out"}),
                            description=f"preference pairs (rejected = {METHOD_LABELS[init]} samples)"))
        stages.append(Stage(method, _preference(w, method), deps=(init, f"pairs_{method}"), resumable=True,
                            config=w.preference_config(method).model_dump(mode="json", exclude={"output_dir"}),
                            description=METHOD_LABELS[method]))
    decoding = w.decoding().model_dump()
    for method in c.methods:
        model_stage = "base" if method == "base" else method
        stages.append(Stage(f"gen_{method}", _generate(w, method), deps=("suite", model_stage), resumable=True,
                            config={"decoding": decoding, "profile": c.profile, "model": method},
                            description=f"{METHOD_LABELS[method]}: generate on the suite"))
        stages.append(Stage(f"eval_{method}", _evaluate(w, method), deps=("suite", f"gen_{method}"),
                            config={**c.eval.model_dump(), "seed": seed},
                            description=f"{METHOD_LABELS[method]}: score"))
    stages.append(Stage("compare", _compare(w), deps=tuple(f"eval_{m}" for m in c.methods),
                        config={"methods": list(c.methods)}, description="side-by-side report"))
    return stages


def stage_names(w: Wiring) -> list[str]:
    return [s.name for s in build_stages(w)]


def unknown_stage_error(names: Sequence[str], known: Sequence[str]) -> ConfigError:
    return ConfigError(f"unknown stage(s) {list(names)}; stages of this pipeline: {', '.join(known)}")
