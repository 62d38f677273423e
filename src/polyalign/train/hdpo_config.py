"""`HDPOConfig`: trl.DPOConfig plus the HDPO loss and on-policy options, the one place they are declared.

The YAML `loss:` and `on_policy:` sections of a DPO/HDPO run config are built from these fields (options.py), so
their defaults are these defaults (λ = 0.5, τ = 2, γ = 0.05: the measured setting of docs/hdpo.md §5). `beta` and
`label_smoothing` are trl.DPOConfig's own fields, used by the HDPO loss (so the TRL config and the loss cannot
disagree). Every `loss:` keyword of `hdpo_loss` is a field here, passed by `loss_kwargs()`; an HDPO term is a field
with `off=...`, and plain DPO (every term off) is decided by `is_plain_dpo` only.
"""

# No `from __future__ import annotations`: options.py builds the YAML sections from the fields' real types.

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trl import DPOConfig

from .hdpo_loss import hdpo_loss
from .options import check_options, option, option_fields

DEFAULT_REG_FORM = "expected"  # chosen by benchmarks/hdpo_forms.py (docs/hdpo.md §5, "Choosing the form")
LOSS_KEYWORDS = tuple(name for name, p in inspect.signature(hdpo_loss).parameters.items()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass
class HDPOConfig(DPOConfig):
    """trl.DPOConfig for `HDPOTrainer`: the HDPO loss (docs/hdpo.md §4) and the on-policy critic term."""

    beta: float = option(0.1, "DPO temperature β.", yaml="loss.beta", gt=0)
    label_smoothing: float = option(0.0, "Conservative-DPO ε (0 = TRL's sigmoid loss).", yaml="loss.label_smoothing",
                                    ge=0, lt=0.5)
    reg_lambda: float = option(0.5, "Weight λ of the distribution regularizer (0 = off; 0.5 is the measured setting "
                                    "of docs/hdpo.md §5).", yaml="loss.reg_lambda", off=0.0, ge=0)
    reg_form: Literal["expected", "offset"] = option(
        DEFAULT_REG_FORM, "'expected': λ·E_p[d] with p = σ(τ·m); 'offset': λ·(d⁻ − d⁺) inside the log-sigmoid.",
        yaml="loss.reg_form")
    tau: float = option(2.0, "Temperature τ of p = σ(τ·m), m the per-token reference-relative margin (expected "
                             "form).", yaml="loss.tau", gt=0)
    offset_sign: Literal[1, -1] = option(1, "+1: z − λ(d⁻ − d⁺) (ODPO); −1: the issue's z − λ(d⁺ − d⁻).",
                                         yaml="loss.offset_sign")
    anchor_gamma: float = option(0.05, "Weight γ of the SFT anchor on the chosen response.", yaml="loss.anchor_gamma",
                                 off=0.0, ge=0)
    use_weights: bool = option(True, "Use the pairs' weights (false: every pair weighs 1).", yaml="loss.use_weights",
                               off=False)
    on_policy: bool = option(False, "Add λ_on · REINFORCE(critic distance of policy samples).",
                             yaml="on_policy.enabled", off=False)
    on_policy_lambda: float = option(0.05, "Weight λ_on of the term.", yaml="on_policy.lambda", gt=0)
    on_policy_every_n_steps: int = option(10, "Sample and score on every n-th optimizer step.",
                                          yaml="on_policy.every_n_steps", ge=1)
    on_policy_max_new_tokens: int = option(64, "Tokens sampled at most per prompt.", yaml="on_policy.max_new_tokens",
                                           ge=1)
    on_policy_temperature: float = option(1.0, "Sampling temperature.", yaml="on_policy.temperature", gt=0)
    on_policy_critic: str | None = option(None, "Critic bundle (polyalign critic fit); required when enabled.",
                                          yaml="on_policy.critic")
    on_policy_min_auc: float = option(0.75, "Refuse a critic whose held-out AUC is lower.", yaml="on_policy.min_auc",
                                      ge=0, le=1)
    on_policy_baseline_momentum: float = option(0.9, "Momentum of the running baseline b.",
                                                yaml="on_policy.baseline_momentum", ge=0, lt=1)

    def __post_init__(self) -> None:
        check_options(self)
        super().__post_init__()

    def loss_kwargs(self) -> dict[str, Any]:
        """The settings `hdpo_loss` takes, as plain numbers (also written to the manifest as `loss_params`)."""
        return {name: getattr(self, name) for name in LOSS_KEYWORDS}

    @property
    def is_plain_dpo(self) -> bool:
        """True when this config trains plain sigmoid DPO (see `is_plain_dpo`)."""
        return is_plain_dpo({f.name: getattr(self, f.name) for f in option_fields(self)})


def hdpo_terms() -> dict[str, Any]:
    """Each HDPO term's option name and the value that turns it off, in declaration order."""
    return {f.name: f.metadata["off"] for f in option_fields(HDPOConfig) if "off" in f.metadata}


def is_plain_dpo(options: Mapping[str, Any]) -> bool:
    """The one place that decides plain DPO: every HDPO term off (no regularizer, anchor, pair weights or on-policy
    term) and no label smoothing (plain sigmoid DPO), given the option values (name -> value)."""
    return options["label_smoothing"] == 0 and all(options[name] == off for name, off in hdpo_terms().items())


__all__ = ["HDPOConfig", "LOSS_KEYWORDS", "DEFAULT_REG_FORM", "hdpo_terms", "is_plain_dpo"]
