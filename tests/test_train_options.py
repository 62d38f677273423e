"""Trainer options are declared once, on the TRL config dataclasses (BucketSFTConfig, HDPOConfig): the YAML run
configs' sections are built from them and map back onto them, so their defaults cannot drift; plain DPO is
decided in one place."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from polyalign.errors import ConfigError
from polyalign.train import hdpo_config
from polyalign.train.bucket_sft_config import BucketSFTConfig
from polyalign.train.hdpo import HDPORunConfig, as_plain_dpo, check_training_keys, is_plain_dpo, make_dpo_args
from polyalign.train.hdpo_config import LOSS_KEYWORDS, HDPOConfig, hdpo_terms
from polyalign.train.hdpo_loss import hdpo_loss
from polyalign.train.options import option_fields, value_at
from polyalign.train.sft import SFTRunConfig, make_sft_args

SFT_RUN = {"model": "m", "data": "d", "output_dir": "o"}
HDPO_RUN = {"model": "m", "pairs": "p.jsonl", "output_dir": "o"}
CPU = {"bf16": False, "dataloader_pin_memory": False}


def _sft_args(tmp_path: Path, **run):
    config = SFTRunConfig(**SFT_RUN, **run)
    return config, make_sft_args(config, tmp_path, assistant_only_loss=False)


def _hdpo_args(tmp_path: Path, **run):
    config = HDPORunConfig(**HDPO_RUN, **run)
    return config, make_dpo_args(config, tmp_path)


@pytest.mark.parametrize("config_cls", [BucketSFTConfig, HDPOConfig])
def test_an_empty_yaml_section_gives_exactly_the_trainer_defaults(tmp_path: Path, config_cls) -> None:
    run, args = (_sft_args if config_cls is BucketSFTConfig else _hdpo_args)(tmp_path)
    options = option_fields(config_cls)
    assert options, "no options declared"
    for f in options:
        default = config_cls.__dataclass_fields__[f.name].default
        assert value_at(run, f.metadata["yaml"]) == default, f"{f.metadata['yaml']} drifted from {f.name}"
        assert getattr(args, f.name) == default, f.name
        assert f.metadata["help"], f"{f.name} has no help"


def test_the_yaml_sections_are_built_from_the_trainer_fields() -> None:
    """Same default, description and bounds; and no YAML key without a trainer field."""
    for run_cls, config_cls in ((SFTRunConfig, BucketSFTConfig), (HDPORunConfig, HDPOConfig)):
        mapped = {f.metadata["yaml"]: f for f in option_fields(config_cls)}
        seen = set()
        for section in {path.split(".")[0] for path in mapped}:
            stack = [(section, run_cls.model_fields[section].annotation)]
            while stack:
                prefix, model = stack.pop()
                for name, info in model.model_fields.items():
                    path = f"{prefix}.{info.alias or name}"
                    if isinstance(info.annotation, type) and hasattr(info.annotation, "model_fields"):
                        stack.append((path, info.annotation))
                        continue
                    assert path in mapped, f"{run_cls.__name__}: YAML key {path} has no trainer field"
                    f = mapped[path]
                    assert info.default == f.default and info.description == f.metadata["help"], path
                    seen.add(path)
        assert seen == set(mapped)


def test_the_dro_step_size_has_one_default_and_the_docs_state_it(repo_root: Path) -> None:
    eta = BucketSFTConfig.__dataclass_fields__["dro_eta"].default
    assert eta == 0.05 == SFTRunConfig(**SFT_RUN).balance.dro.eta
    assert f"η = {eta}" in (repo_root / "docs" / "training.md").read_text(encoding="utf-8")


def test_every_loss_keyword_is_an_hdpo_option() -> None:
    keywords = [p.name for p in inspect.signature(hdpo_loss).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert list(LOSS_KEYWORDS) == keywords and keywords
    loss_options = {f.name for f in option_fields(HDPOConfig) if f.metadata["yaml"].startswith("loss.")}
    assert set(keywords) <= loss_options
    for name in keywords:  # no default in the pure function: the config's is the only one
        assert inspect.signature(hdpo_loss).parameters[name].default is inspect.Parameter.empty


def test_the_yaml_sections_map_onto_the_trainer_config(tmp_path: Path) -> None:
    _, args = _sft_args(tmp_path, balance={"enabled": True, "temperature": None,
                                           "dro": {"enabled": True, "eta": 0.3, "reference": "initial"}})
    assert (args.bucket_balance, args.sampler_temperature, args.normalized_loss, args.dro_active) == (True, None,
                                                                                                       True, True)
    assert (args.dro_eta, args.dro_reference) == (0.3, "initial")
    _, plain = _sft_args(tmp_path, balance={"enabled": False, "dro": {"enabled": True}})
    assert (plain.sampler_temperature, plain.normalized_loss, plain.dro_active) == (None, False, False)
    _, args = _hdpo_args(tmp_path, loss={"beta": 0.2, "reg_lambda": 0.1, "offset_sign": -1},
                         on_policy={"enabled": True, "lambda": 0.3, "critic": "c"})
    assert args.loss_kwargs() == {"beta": 0.2, "label_smoothing": 0.0, "reg_lambda": 0.1, "reg_form": "expected",
                                  "tau": 2.0, "offset_sign": -1, "anchor_gamma": 0.05}
    assert (args.on_policy, args.on_policy_lambda, args.on_policy_critic) == (True, 0.3, "c")


@pytest.mark.parametrize("training, message", [
    ({"reg_lambda": 0.1}, "training.reg_lambda: unknown trl.DPOConfig field"),
    ({"beta": 0.2}, "training.beta: set 'beta' in loss"),
    ({"label_smoothing": 0.1}, "training.label_smoothing: set 'label_smoothing' in loss"),
])
def test_an_option_cannot_be_set_under_training(training: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_training_keys(HDPORunConfig(**HDPO_RUN, training=training))


def test_the_trainer_config_validates_its_options_too(tmp_path: Path) -> None:
    for bad, message in (({"dro_eta": 0.0}, "dro_eta must be > 0"), ({"dro_epsilon": 1.5}, "dro_epsilon must be <="),
                         ({"dro_reference": "last"}, "dro_reference must be one of")):
        with pytest.raises(ConfigError, match=message):
            BucketSFTConfig(output_dir=str(tmp_path), **CPU, **bad)
    for bad, message in (({"offset_sign": 2}, "offset_sign"), ({"label_smoothing": 0.5}, "label_smoothing"),
                         ({"on_policy_min_auc": 2.0}, "on_policy_min_auc")):
        with pytest.raises(ConfigError, match=message):
            HDPOConfig(output_dir=str(tmp_path), **CPU, **bad)


# ---- plain DPO: one decision -------------------------------------------------------------------------------------


def test_plain_dpo_is_decided_in_one_place(tmp_path: Path, monkeypatch) -> None:
    """The run config (its `method`, `is_plain_dpo`) and the trainer config both ask `hdpo_config.is_plain_dpo`."""
    asked = []

    def decide(options):
        asked.append(dict(options))
        return "decided"

    config, args = _hdpo_args(tmp_path)
    monkeypatch.setattr(hdpo_config, "is_plain_dpo", decide)
    assert is_plain_dpo(config) == "decided" and args.is_plain_dpo == "decided"
    assert config.method == "dpo"  # whatever the one decision says
    assert len(asked) == 3 and asked[0] == asked[1] == asked[2]


TERMS_ON = {"reg_lambda": {"loss": {"reg_lambda": 0.1, "anchor_gamma": 0, "use_weights": False}},
            "anchor_gamma": {"loss": {"reg_lambda": 0, "anchor_gamma": 0.1, "use_weights": False}},
            "use_weights": {"loss": {"reg_lambda": 0, "anchor_gamma": 0, "use_weights": True}},
            "on_policy": {"loss": {"reg_lambda": 0, "anchor_gamma": 0, "use_weights": False},
                          "on_policy": {"enabled": True, "critic": "c"}}}


@pytest.mark.parametrize("term", sorted(TERMS_ON))
def test_each_hdpo_term_alone_makes_it_hdpo_and_as_plain_dpo_turns_it_off(tmp_path: Path, term: str) -> None:
    assert set(TERMS_ON) == set(hdpo_terms())  # every term is covered
    config, args = _hdpo_args(tmp_path, **TERMS_ON[term])
    assert config.method == "hdpo" and not is_plain_dpo(config) and not args.is_plain_dpo
    plain, notes = as_plain_dpo(config)
    assert len(notes) == 1 and plain.method == "dpo" and make_dpo_args(plain, tmp_path).is_plain_dpo
    assert dataclasses.asdict(make_dpo_args(plain, tmp_path))[term] == hdpo_terms()[term]


def test_label_smoothing_is_not_plain_dpo_and_is_not_forced_off(tmp_path: Path) -> None:
    config, args = _hdpo_args(tmp_path, loss={"reg_lambda": 0, "anchor_gamma": 0, "use_weights": False,
                                             "label_smoothing": 0.1})
    assert not is_plain_dpo(config) and not args.is_plain_dpo
    assert as_plain_dpo(config) == (config, [])  # `train dpo` forces the HDPO terms only, as before
