"""The stages of a PolyAlign experiment, wired from a PipelineConfig.

```
data ─▶ base ─▶ sft ────────▶ samples_sft ────────┬▶ critic ─▶ pairs_sft ────────▶ dpo, hdpo_sft
   │         └▶ bucket_sft ─▶ samples_bucket_sft ─┘        └▶ pairs_bucket_sft ─▶ hdpo, dpo_bsft, dpo_w_bsft, ...
   └▶ suite ─▶ gen_<method> ─▶ eval_<method> ─▶ compare             (method ∈ `methods:`)
```

A preference method (declared under `preference:`) depends on its init (sft or bucket_sft) and on the pairs
stage of the policy whose samples are its rejected side (pairs_sft or pairs_bucket_sft); each pairs stage is
built once and shared by every method that uses it. A method with `rounds: K` adds, for each round k >= 2,
samples_<m>_r<k> (the previous round's model on train prompts) -> critic_<m>_r<k> (refit, cross-fitted) ->
pairs_<m>_r<k> -> the round's training (from the previous round's model); round k < K is the stage <m>_r<k>,
the last keeps the name <m>, and rounds_<m> tabulates and plots the rounds (the comparison report shows them).
A method with `critic: false` (iterated SPIN) builds its pairs in pairs_<m>_r<k> for every round and never
touches a critic. Only the stages the listed `methods:` need are built (no samples, critic or pairs when no
preference method is listed). With `suite: {split: val}` the evaluation side is built on the validation split
under the names val_suite, val_gen_<method>, val_eval_<method> and val_compare, beside the test-split stages of
the same work folder and on the same trained models (choose settings there; touch the test split once, at the
end). Every stage calls the same importable function
as its CLI verb; this module only wires folders and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.stratify import stratified_sample
from ..errors import ConfigError, PolyAlignError
from ..artifacts import ROUNDS_PLOT, Comparison, Critic, DataBuild, Evaluation, ExternalModel, ModelDir, Pairs, \
    Predictions, RoundsTable, SuiteDir
from ..io import write_json
from .config import POLICIES, STAGE_SECTIONS, PipelineConfig, merged, resolve_section
from .graph import Stage, StageContext


# Every stage body, and each config check of the Wiring, imports its stage's module inside the function: the graph
# is built for `polyalign stages`, `run --stages` and the preflight of every run, and importing the trainers,
# the critic and the evaluation up front costs ~12 s (measured: train.hdpo 7.5 s, critic.fit 3.9 s,
# eval.runner 2.4 s, with torch shared), most of it for stages that are cached or not asked for.


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
        for name in STAGE_SECTIONS:
            self.sections[name], _ = resolve_section(getattr(config, name), self.base_dir, name)

    def dir(self, stage: str) -> Path:
        return self.root / stage

    def eval_stage(self, name: str) -> str:
        """The name of an evaluation-side stage (suite, gen_<m>, eval_<m>, compare) for this config's suite
        split: as is for the test split, prefixed `val_` for the validation split, so that both live side by
        side in one work folder and share every training stage."""
        return name if self.config.suite.split == "test" else f"val_{name}"

    def model_path(self, method: str) -> str:
        """Where a method's model lives (a folder, or the hub id of an external base model)."""
        if method == "base":
            if self.config.base.model:
                return self.config.base.model
            return str(model_dir(self.dir("base")).path)
        return str(model_dir(self.dir(method)).path)

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
                 "output_dir": str(model_dir(work or self.dir(method)).path), "seed": self.config.seed,
                 "profile": self.config.profile}
        config = validate_config(merged(self.sections[method], wired), SFTRunConfig, prefix=(method,))
        check_training_keys(config)
        return config

    def preference_config(self, method: str, work: Path | None = None, round: int | None = None) -> Any:
        """The HDPORunConfig of a preference method's round (default: its last): its trainer section, its `loss:`
        and `on_policy:` overrides, and the wired init (round 1: the method's init; later: the previous round's
        model, which is also the frozen reference), pairs file, output folder and seed."""
        from ..config import validate_config
        from ..train.hdpo import HDPORunConfig, LossSection, OnPolicySection, check_training_keys

        spec = self.config.preference[method]
        k = round or spec.rounds
        names = spec.round_names(method)
        init = spec.init if k == 1 else names[k - 2]
        wired = {"model": self.model_path(init), "pairs": str(Pairs(self.dir(self.round_pairs_stage(method, k))).file),
                 "output_dir": str(model_dir(work or self.dir(names[k - 1])).path), "seed": self.config.seed}
        config = validate_config(merged(self.sections[spec.trainer], wired), HDPORunConfig,
                                 prefix=(spec.trainer,))
        if spec.loss:
            loss = validate_config({**config.loss.model_dump(), **spec.loss}, LossSection,
                                   prefix=("preference", method, "loss"))
            config = config.model_copy(update={"loss": loss})
        if spec.on_policy:
            on_policy = validate_config({**config.on_policy.model_dump(by_alias=True), **spec.on_policy},
                                        OnPolicySection, prefix=("preference", method, "on_policy"))
            config = config.model_copy(update={"on_policy": on_policy})
        critic = self.on_policy_critic_stage(method, k, config)
        if critic:
            config = config.model_copy(update={"on_policy": config.on_policy.model_copy(
                update={"critic": str(Critic(self.dir(critic)).path)})})
        check_training_keys(config)
        return config

    def on_policy_critic_stage(self, method: str, k: int, config: Any) -> str | None:
        """The critic stage whose bundle round k's on-policy term scores with (round k's critic: the shared
        critic in round 1, critic_<method>_r<k> after), when the term is on; None when it is off (the trainer
        config's on_policy.critic is then left as it is, so is the stage's cache key)."""
        if not config.on_policy.enabled:
            return None
        critic = self.round_critic_stage(method, k)
        if critic is None:
            raise ConfigError(f"preference.{method}: on_policy.enabled needs a critic, but the method has "
                              f"critic: false")
        return critic

    def round_pairs_stage(self, method: str, k: int) -> str:
        """The pairs stage of round k: the shared pairs_<policy> for round 1 of a method with a critic, else
        pairs_<method>_r<k>."""
        spec = self.config.preference[method]
        return f"pairs_{spec.pairs}" if k == 1 and spec.critic else f"pairs_{method}_r{k}"

    def round_samples_stage(self, method: str, k: int) -> str:
        """The samples whose texts are round k's rejected side: the pairs policy's for round 1, then those of
        the previous round's model (k = K + 1: the last round's model, for the rounds table only)."""
        return f"samples_{self.config.preference[method].pairs}" if k == 1 else f"samples_{method}_r{k}"

    def round_critic_stage(self, method: str, k: int) -> str | None:
        """The critic of round k (the shared critic for round 1); None for a method without a critic."""
        if not self.config.preference[method].critic:
            return None
        return "critic" if k == 1 else f"critic_{method}_r{k}"

    def replayed_samples(self, method: str, k: int) -> list[str]:
        """The sample stages on the model side of round k's critic refit: the earlier rounds' within `replay`,
        then the current round's."""
        replay = self.config.preference[method].replay
        first = 1 if replay is None else max(1, k - replay)
        return [self.round_samples_stage(method, j) for j in range(first, k + 1)]

    def round_critic_config(self, method: str, k: int, work: Path | None = None) -> Any:
        """The CriticConfig of critic_<method>_r<k> (k >= 2): humans vs the replayed and current samples."""
        from ..config import validate_config
        from ..critic.fit import CriticConfig

        wired = {"data": str(self.dir("data")), "out": str(work or self.dir(f"critic_{method}_r{k}")),
                 "seed": self.config.seed,
                 "predictions": [str(Predictions(self.dir(s)).file) for s in self.replayed_samples(method, k)]}
        settings = merged(self.sections["critic"], self.config.preference[method].round_critic)
        config = validate_config(merged(settings, wired), CriticConfig, prefix=("critic",))
        if self.config.preference[method].cross_fit > 1 and config.method != "learned":
            raise ConfigError(f"preference.{method}.cross_fit: cross-fitting refits a learned critic, but the "
                              f"critic method is {config.method!r} (set cross_fit: 1)")
        return config

    def round_pairs_config(self, method: str, k: int, work: Path | None = None) -> Any:
        """The PairsConfig of pairs_<method>_r<k>: rejected side = round k's samples; scored by round k's
        critic, or (critic: false) human > sample pairs only, no critic, weights 1."""
        from ..config import validate_config
        from ..pairs import PairsConfig

        spec = self.config.preference[method]
        settings = self.sections["pairs"]
        if not spec.critic:
            settings = merged(settings, {"types": ["human_over_model"], "weights": {"enabled": False}})
        critic = self.round_critic_stage(method, k)
        wired = {"data": str(self.dir("data")), "critic": str(self.dir(critic)) if critic else None,
                 "out": str(work or self.dir(f"pairs_{method}_r{k}")), "seed": self.config.seed,
                 "profile": self.config.profile,
                 "predictions": [str(Predictions(self.dir(self.round_samples_stage(method, k))).file)]}
        return validate_config(merged(settings, wired), PairsConfig, prefix=("pairs",))

    def check_plain_dpo(self, method: str, config: Any) -> None:
        """A method on the plain-DPO trainer config (`trainer: dpo`), or without a critic (iterated SPIN),
        must train plain DPO."""
        from ..train.hdpo import as_plain_dpo, is_plain_dpo

        spec = self.config.preference[method]
        if not spec.critic and not is_plain_dpo(config):
            _, notes = as_plain_dpo(config)
            raise ConfigError(f"preference.{method}: critic: false trains plain DPO (iterated SPIN), but this loss "
                              f"has HDPO terms on ({'; '.join(notes) or 'label_smoothing'}): use trainer: dpo")
        if spec.trainer != "dpo" or is_plain_dpo(config):
            return
        _, notes = as_plain_dpo(config)
        if config.loss.label_smoothing:
            notes.append(f"loss.label_smoothing {config.loss.label_smoothing} -> 0")
        raise ConfigError(f"preference.{method}: trainer 'dpo' is plain DPO, but this loss has HDPO terms on "
                          f"(plain DPO needs {'; '.join(notes)}): turn them off in the dpo config or the "
                          f"method's loss:, or use trainer: hdpo")

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
        for policy in POLICIES:
            self.sft_config(policy)
        for method, spec in self.config.preference.items():
            self.check_plain_dpo(method, self.preference_config(method))
            for k in range(1 if not spec.critic else 2, spec.rounds + 1):
                if spec.critic:
                    self.round_critic_config(method, k)
                self.round_pairs_config(method, k)
        self.decoding()
        self.decoding(self.config.samples.decoding)
        self.critic_config()
        for policy in POLICIES:
            self.pairs_config(policy)

    def critic_config(self, work: Path | None = None) -> Any:
        from ..config import validate_config
        from ..critic.fit import CriticConfig

        wired = {"data": str(self.dir("data")), "out": str(work or self.dir("critic")), "seed": self.config.seed,
                 "predictions": [str(Predictions(self.dir(f"samples_{p}")).file) for p in POLICIES]}
        return validate_config(merged(self.sections["critic"], wired), CriticConfig, prefix=("critic",))

    def pairs_config(self, policy: str, work: Path | None = None) -> Any:
        """The PairsConfig of pairs_<policy>: rejected side = that policy's samples."""
        from ..config import validate_config
        from ..pairs import PairsConfig

        wired = {"data": str(self.dir("data")), "critic": str(self.dir("critic")),
                 "out": str(work or self.dir(f"pairs_{policy}")), "seed": self.config.seed,
                 "profile": self.config.profile,
                 "predictions": [str(Predictions(self.dir(f"samples_{policy}")).file)]}
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


# -- stage bodies: each writes its artifact into ctx.work_dir and reads its inputs through artifact classes --------


def data_stage_key(config: Any) -> dict[str, Any]:
    """The data config as the data stage's cache key. `languages` joined the config later: left at null it stays
    out of the key, so that builds cached before it existed stay valid."""
    return config.model_dump(mode="json", exclude={"languages"} if config.languages is None else None)


def model_dir(stage_dir: Path) -> ModelDir:
    """The model folder a training stage writes (`<stage>/model`)."""
    return ModelDir(Path(stage_dir) / "model")


def base_model(stage_dir: Path) -> Any:
    """The base stage's artifact: its model folder, or base.json naming an external model."""
    external = Path(stage_dir) / "base.json"
    return ExternalModel(external) if external.exists() else model_dir(stage_dir)


def _data(w: Wiring):
    def run(ctx: StageContext) -> None:
        from ..data.build import build_dataset

        summary = build_dataset(w.data_config, ctx.work_dir, progress=False)
        for warning in summary.get("warnings", []):
            ctx.log(f"  warning: {warning}")
    return run


def _base(w: Wiring):
    def run(ctx: StageContext) -> None:
        base = w.config.base
        if base.model:
            write_json(ctx.work_dir / "base.json", {"model": base.model})
            return
        from ..data.build import load_records
        from ..models.pretrain import PretrainConfig, pretrain
        from ..models.tiny import TinyModelConfig, init_tiny

        records = load_records(DataBuild(ctx.deps["data"]).path, "train")
        init_dir = ctx.work_dir / "init"
        if not (init_dir / "config.json").exists():
            ctx.log("  building the tokenizer and the tiny model")
            init_tiny(records, init_dir, TinyModelConfig(**base.tiny))
        if base.pretrain is None:
            init_dir.rename(model_dir(ctx.work_dir).path)
            return
        ctx.log("  pretraining the tiny base model on the train split's human text")
        pretrain(init_dir, records, model_dir(ctx.work_dir).path, PretrainConfig(**base.pretrain), log=ctx.log,
                 callbacks=ctx.trainer_callbacks())
    return run


def _sft(w: Wiring, method: str):
    def run(ctx: StageContext) -> None:
        from ..train.sft import run_sft

        run_sft(w.sft_config(method, ctx.work_dir), log=lambda m, *a, **k: ctx.log(f"  {m}"),
                callbacks=ctx.trainer_callbacks())
    return run


def _preference(w: Wiring, method: str, round: int | None = None):
    def run(ctx: StageContext) -> None:
        from ..train.hdpo import run_hdpo

        config = w.preference_config(method, ctx.work_dir, round)  # plain DPO when its loss has every term off
        run_hdpo(config, log=lambda m, *a, **k: ctx.log(f"  {m}"), callbacks=ctx.trainer_callbacks())
    return run


def loss_description(config: Any) -> str:
    """What a preference config trains, for stage listings: 'plain DPO' or DPO plus the terms that are on."""
    from ..train.hdpo import is_plain_dpo

    if is_plain_dpo(config):
        return "plain DPO"
    loss = config.loss
    terms = [("pair weights", loss.use_weights), (f"regularizer λ={loss.reg_lambda:g}", loss.reg_lambda > 0),
             (f"anchor γ={loss.anchor_gamma:g}", loss.anchor_gamma > 0),
             (f"label smoothing ε={loss.label_smoothing:g}", loss.label_smoothing > 0),
             ("on-policy term", config.on_policy.enabled)]
    return "DPO + " + " + ".join(name for name, on in terms if on)


def _suite(w: Wiring):
    def run(ctx: StageContext) -> None:
        from ..eval.suite import build_suite

        s = w.config.suite
        build_suite(DataBuild(ctx.deps["data"]).path, ctx.work_dir, cap_per_bucket=s.cap_per_bucket, seed=s.seed,
                    ref_pool=s.ref_pool, context_key=s.context_key, split=s.split)
    return run


def _samples(w: Wiring, method: str):
    """Samples of the model of stage `method` (a policy, or a preference method's round) on train prompts."""
    def run(ctx: StageContext) -> None:
        from ..data.build import load_records
        from ..generate import generate_predictions

        s = w.config.samples
        records = stratified_sample(load_records(DataBuild(ctx.deps["data"]).path, "train"), w.config.seed,
                                    per_group=s.per_bucket)
        decoding = w.decoding({**s.decoding, "num_samples": s.num_samples})
        ctx.log(f"  sampling {s.num_samples} response(s) for {len(records)} train prompts")
        generate_predictions(w.model_path(method), records, ctx.work_dir, decoding, profile=w.config.profile)
    return run


def _critic(w: Wiring):
    def run(ctx: StageContext) -> None:
        from ..critic.fit import fit_critic

        fit_critic(w.critic_config(ctx.work_dir))
    return run


def _pairs(w: Wiring, policy: str):
    def run(ctx: StageContext) -> None:
        from ..pairs import build_pairs_stage

        build_pairs_stage(w.pairs_config(policy, ctx.work_dir))
    return run


def _round_critic(w: Wiring, method: str, k: int):
    def run(ctx: StageContext) -> None:
        from ..critic.crossfit import fit_round_critic

        config = w.round_critic_config(method, k, ctx.work_dir)
        fit_round_critic(config, w.config.preference[method].cross_fit, gate=round_gate(w, method, k, config))
    return run


def round_gate(w: Wiring, method: str, k: int, config: Any) -> Any:
    """The check a refit critic must pass before critic_<method>_r<k> writes it: the critic_weakness test at the
    higher of its own min_auc and pairs.min_auc (the round's pairs refuse a critic below that anyway), unless
    pairs.allow_weak. Raises RefusedError naming the stage, the round, the AUC, the gate and what to do."""
    from ..critic.model import critic_weakness
    from ..errors import RefusedError

    pairs = w.round_pairs_config(method, k)
    spec = w.config.preference[method]
    gates = {f"preference.{method}.round_critic.min_auc" if "min_auc" in spec.round_critic else "critic.min_auc":
             config.min_auc, "pairs.min_auc": pairs.min_auc}
    source, min_auc = max(gates.items(), key=lambda item: item[1])

    def gate(metrics: Any) -> None:
        reason = critic_weakness(metrics, min_auc=min_auc, min_score_std=config.min_score_std)
        if reason is None or pairs.allow_weak:
            return
        auc = metrics.get("heldout_auc")
        held_out = f"{spec.cross_fit}-fold cross-fitted, out of fold" if spec.cross_fit > 1 else "held out"
        earlier = spec.round_names(method)[k - 2]
        kept = "round 1 stays" if k == 2 else f"rounds 1..{k - 1} stay"
        raise RefusedError(
            f"stage critic_{method}_r{k} (round {k} of {spec.rounds} of preference method {method}): the refit "
            f"critic's held-out AUC human vs policy is {auc:.3f} ({held_out}), below min_auc {min_auc:g} "
            f"({source}): {reason}. The run stops at round {k}; nothing of critic_{method}_r{k} was written and "
            f"{kept} cached. What to do: evaluate the rounds that passed (list {earlier} in "
            f"`methods:` instead of {method}; cached), or lower the gate (preference.{method}.round_critic.min_auc "
            f"for the round critics only, and pairs.min_auc, which round {k}'s pairs apply to the same critic; "
            f"critic.min_auc also reruns round 1), or fit on more policy samples (samples.per_bucket, "
            f"samples.num_samples, replay: null; more samples rerun every round), or train on this critic anyway "
            f"(pairs.allow_weak: true)."
            if auc is not None else f"stage critic_{method}_r{k} (round {k} of {method}): {reason}")
    return gate


def _round_pairs(w: Wiring, method: str, k: int):
    def run(ctx: StageContext) -> None:
        from ..pairs import build_pairs_stage

        build_pairs_stage(w.round_pairs_config(method, k, ctx.work_dir))
    return run


def _rounds_table(w: Wiring, method: str):
    def run(ctx: StageContext) -> None:
        from ..eval.rounds import write_rounds_table

        write_rounds_table(ctx.work_dir, round_inputs(w, method), DataBuild(ctx.deps["data"]).path,
                           context_key=w.config.suite.context_key, method=w.config.label(method))
    return run


def round_inputs(w: Wiring, method: str) -> list[Any]:
    """The rows of rounds_<method>: for each round the samples its critic and pairs saw (those of the policy
    entering the round) and its critic, then the last round's model's samples (no critic)."""
    from ..eval.rounds import RoundInput

    spec = w.config.preference[method]
    names = spec.round_names(method)
    policies = [w.config.label(spec.pairs)] + [w.config.label(n) for n in names]
    rows = []
    for k in range(1, spec.rounds + 2):
        critic = w.round_critic_stage(method, k) if k <= spec.rounds else None
        rows.append(RoundInput(round=k, policy=policies[k - 1],
                               samples=Predictions(w.dir(w.round_samples_stage(method, k))).file,
                               critic=Critic(w.dir(critic)).path if critic else None,
                               critic_in_sample=k == 1 or spec.cross_fit == 1))
    return rows


def _generate(w: Wiring, method: str):
    def run(ctx: StageContext) -> None:
        from ..eval.suite import load_suite
        from ..generate import generate_predictions

        suite = load_suite(SuiteDir(ctx.deps[w.eval_stage("suite")]).path)
        ctx.log(f"  generating for {len(suite.items)} suite items")
        generate_predictions(w.model_path(method), suite.items, ctx.work_dir, w.decoding(),
                             profile=w.config.profile)
    return run


def _evaluate(w: Wiring, method: str):
    def run(ctx: StageContext) -> None:
        from ..eval.runner import evaluate

        evaluate(Predictions(ctx.deps[w.eval_stage(f"gen_{method}")]).file,
                 SuiteDir(ctx.deps[w.eval_stage("suite")]).path, ctx.work_dir,
                 featurizer=w.config.eval.featurizer, featurizer_options=w.config.eval.featurizer_options,
                 seed=w.config.seed, name=w.config.label(method))
    return run


def _compare(w: Wiring):
    def run(ctx: StageContext) -> None:
        from ..eval.compare import compare_runs

        methods = w.config.methods
        compare_runs([Evaluation(ctx.deps[w.eval_stage(f"eval_{m}")]).path for m in methods], ctx.work_dir,
                     names=[w.config.label(m) for m in methods], contrasts=w.config.contrast_labels(),
                     rounds={w.config.label(m): RoundsTable(ctx.deps[f"rounds_{m}"]).path
                             for m in rounds_methods(w.config)})
    return run


def rounds_methods(config: PipelineConfig) -> list[str]:
    """The listed preference methods with more than one round (each has a rounds_<method> table)."""
    return [m for m in config.preference_methods() if config.preference[m].rounds > 1 and m in config.methods]


def uses_critic(config: PipelineConfig) -> bool:
    """True when a listed preference method trains on critic-scored pairs (then the shared critic is built)."""
    return any(config.preference[m].critic for m in config.preference_methods())


def needed_policies(config: PipelineConfig) -> list[str]:
    """The SFT policies to train: those listed, both when a listed preference method uses the critic (the
    critic's model side is the samples of both), and the inits and pairs policies of the others."""
    if uses_critic(config):
        return list(POLICIES)
    specs = [config.preference[m] for m in config.preference_methods()]
    used = set(config.methods) | {s.init for s in specs} | {s.pairs for s in specs}
    return [p for p in POLICIES if p in used]


def sampled_policies(config: PipelineConfig) -> list[str]:
    """The policies whose samples on train prompts are needed (by the critic, or as round 1's rejected side)."""
    if uses_critic(config):
        return list(POLICIES)
    used = {config.preference[m].pairs for m in config.preference_methods()}
    return [p for p in POLICIES if p in used]


def pairs_policies(config: PipelineConfig) -> list[str]:
    """The policies whose shared pairs stage a listed preference method with a critic trains on (each built
    once)."""
    used = {config.preference[m].pairs for m in config.preference_methods() if config.preference[m].critic}
    return [p for p in POLICIES if p in used]


def _sft_stages(w: Wiring, policy: str, with_samples: bool) -> list[Stage]:
    c = w.config
    stages = [Stage(policy, _sft(w, policy), deps=("data", "base"), resumable=True, output=model_dir,
                    config=w.sft_config(policy).model_dump(mode="json", exclude={"output_dir"}),
                    description=c.label(policy))]
    if with_samples:
        stages.append(_samples_stage(w, f"samples_{policy}", policy))
    return stages


def _samples_stage(w: Wiring, name: str, model_stage: str) -> Stage:
    """Samples of `model_stage`'s model on train prompts (the samples section: same prompts every round)."""
    c = w.config
    return Stage(name, _samples(w, model_stage), deps=("data", model_stage), resumable=True, output=Predictions,
                 config={**c.samples.model_dump(), "decoding": w.decoding(c.samples.decoding).model_dump(),
                         "profile": c.profile, "seed": c.seed},
                 description=f"policy samples of {c.label(model_stage)} on train prompts")


def _pairs_stage(w: Wiring, policy: str) -> Stage:
    return Stage(f"pairs_{policy}", _pairs(w, policy), deps=("data", "critic", f"samples_{policy}"), output=Pairs,
                 config=w.pairs_config(policy).model_dump(mode="json", exclude={"out"}),
                 description=f"preference pairs (rejected = {w.config.label(policy)} samples)")


def _preference_stage(w: Wiring, method: str, k: int = 1) -> Stage:
    """Round k's training stage (round 1 of a one-round method: the method's own stage, as before rounds)."""
    spec = w.config.preference[method]
    names = spec.round_names(method)
    init = spec.init if k == 1 else names[k - 2]
    pairs = w.round_pairs_stage(method, k)
    config = w.preference_config(method, round=k)
    critic = w.on_policy_critic_stage(method, k, config)  # the on-policy term's critic: its key enters this one
    return Stage(names[k - 1], _preference(w, method, k), deps=(init, pairs, *([critic] if critic else [])),
                 resumable=True, reusable=True,
                 output=model_dir,
                 config=config.model_dump(mode="json", exclude={"output_dir"}),
                 description=f"{w.config.label(names[k - 1])}: {loss_description(config)} from "
                             f"{w.config.label(init)} on {pairs}")


def _round_stages(w: Wiring, method: str) -> list[Stage]:
    """The stages of a preference method's rounds up to the last one a listed method needs (see the module
    docstring), and its rounds table when the method itself is listed with rounds > 1."""
    c = w.config
    spec = c.preference[method]
    names = spec.round_names(method)
    stages: list[Stage] = []
    for k in range(1, c.rounds_needed(method) + 1):
        if k >= 2:
            stages.append(_samples_stage(w, w.round_samples_stage(method, k), names[k - 2]))
            if spec.critic:
                config = w.round_critic_config(method, k)
                stages.append(Stage(
                    f"critic_{method}_r{k}", _round_critic(w, method, k), output=Critic,
                    deps=("data", *w.replayed_samples(method, k)),
                    config={**config.model_dump(mode="json", exclude={"out"}), "cross_fit": spec.cross_fit},
                    description=f"round {k} critic: humans vs {', '.join(w.replayed_samples(method, k))}"
                                + (f" ({spec.cross_fit}-fold cross-fitted)" if spec.cross_fit > 1 else "")))
        if k >= 2 or not spec.critic:
            critic = w.round_critic_stage(method, k)
            stages.append(Stage(
                f"pairs_{method}_r{k}", _round_pairs(w, method, k), output=Pairs,
                deps=("data", *([critic] if critic else []), w.round_samples_stage(method, k)),
                config=w.round_pairs_config(method, k).model_dump(mode="json", exclude={"out"}),
                description=f"round {k} pairs (rejected = {w.round_samples_stage(method, k)}"
                            f"{'' if critic else ', no critic'})"))
        stages.append(_preference_stage(w, method, k))
    if spec.rounds > 1 and method in c.methods:
        final = w.round_samples_stage(method, spec.rounds + 1)
        stages.append(_samples_stage(w, final, method))
        rows = round_inputs(w, method)
        deps = ["data", *(w.round_samples_stage(method, k) for k in range(1, spec.rounds + 2)),
                *(w.round_critic_stage(method, k) for k in range(1, spec.rounds + 1) if spec.critic)]
        stages.append(Stage(f"rounds_{method}", _rounds_table(w, method), deps=tuple(deps), output=RoundsTable,
                            config={"method": method, "rounds": spec.rounds, "critic": spec.critic,
                                    "context_key": list(c.suite.context_key), "rows": len(rows),
                                    "plot": ROUNDS_PLOT},
                            description=f"{c.label(method)}: per-round critic AUC, distances and lengths"))
    return stages


def _method_stages(w: Wiring, method: str) -> list[Stage]:
    c = w.config
    model_stage = "base" if method == "base" else method
    suite, gen = w.eval_stage("suite"), w.eval_stage(f"gen_{method}")
    return [Stage(gen, _generate(w, method), deps=(suite, model_stage), resumable=True,
                  output=Predictions,
                  config={"decoding": w.decoding().model_dump(), "profile": c.profile, "model": method},
                  description=f"{c.label(method)}: generate on the {c.suite.split} suite"),
            Stage(w.eval_stage(f"eval_{method}"), _evaluate(w, method), deps=(suite, gen), output=Evaluation,
                  config={**c.eval.model_dump(), "seed": c.seed}, description=f"{c.label(method)}: score")]


def build_stages(w: Wiring) -> list[Stage]:
    """The stage list of a pipeline: only the methods it evaluates, and what they need."""
    c = w.config
    data_inputs = tuple(Path(s.path) for s in w.data_config.sources if Path(s.path).exists())
    stages = [
        Stage("data", _data(w), config=data_stage_key(w.data_config), inputs=data_inputs, output=DataBuild,
              description="normalize, dedup, split, bucket, features, references"),
        Stage("base", _base(w), deps=("data",), config=c.base.model_dump(mode="json"), resumable=True,
              output=base_model,
              description="the base LM" + ("" if c.base.model else " (tiny, built and pretrained here)")),
        Stage(w.eval_stage("suite"), _suite(w), deps=("data",), output=SuiteDir,
              config=c.suite.model_dump(exclude={"split"} if c.suite.split == "test" else None),
              description=f"evaluation suite from the {c.suite.split} split, drawn per context group"),
    ]
    preference = c.preference_methods()
    sampled = sampled_policies(c)
    for policy in needed_policies(c):
        stages.extend(_sft_stages(w, policy, with_samples=policy in sampled))
    if uses_critic(c):
        stages.append(Stage("critic", _critic(w), deps=("data", *(f"samples_{p}" for p in POLICIES)), output=Critic,
                            config=w.critic_config().model_dump(mode="json", exclude={"out"}),
                            description="bucket-conditioned critic: human vs model"))
        stages.extend(_pairs_stage(w, policy) for policy in pairs_policies(c))
    for method in preference:
        stages.extend(_round_stages(w, method))
    for method in c.methods:
        stages.extend(_method_stages(w, method))
    stages.append(Stage(w.eval_stage("compare"), _compare(w), output=Comparison,
                        deps=(*(w.eval_stage(f"eval_{m}") for m in c.methods),
                              *(f"rounds_{m}" for m in rounds_methods(c))),
                        config={"methods": list(c.methods), "contrasts": c.listed_contrasts()},
                        description="side-by-side report with paired tests"))
    return stages


def stage_names(w: Wiring) -> list[str]:
    return [s.name for s in build_stages(w)]


def unlisted_methods(config: PipelineConfig, names: Sequence[str]) -> list[str]:
    """The methods not in `methods:` that the stage names ask for (their stages are not built)."""
    rounds = [r for m, spec in config.preference.items() for r in spec.round_names(m)[:-1]]
    declared = [m for m in (*POLICIES, "base", *config.preference, *rounds) if m not in config.methods]
    return [m for m in declared
            if any(n.removeprefix("val_") in (m, f"gen_{m}", f"eval_{m}") for n in names)]


def unknown_stage_error(names: Sequence[str], known: Sequence[str], unlisted: Sequence[str] = ()) -> ConfigError:
    hint = (f" ({', '.join(unlisted)} not in `methods:`: list them there to build their stages)"
            if unlisted else "")
    return ConfigError(f"unknown stage(s) {list(names)}{hint}; stages of this pipeline: {', '.join(known)}")
