"""`BucketSFTConfig`: trl.SFTConfig plus the Bucket-Aware SFT options, the one place they are declared.

The YAML `balance:` section of an SFT run config (configs/train/*.yaml) is built from these fields (see
options.py), so its defaults are these defaults. `bucket_balance=False` is plain SFT: the Trainer's default sampler
and TRL's token-mean loss, whatever the other options say.
"""

# No `from __future__ import annotations`: options.py builds the YAML sections from the fields' real types.

from dataclasses import dataclass
from typing import Literal

from trl import SFTConfig

from ..errors import ConfigError
from .options import check_options, option


@dataclass
class BucketSFTConfig(SFTConfig):
    """trl.SFTConfig for `BucketSFTTrainer`: bucket-temperature sampling, a bucket-normalized loss with a global
    normalizer, and online (DRO) bucket weights. Formulas: docs/training.md."""

    bucket_balance: bool = option(
        False, "Turn Bucket-Aware SFT on (false: plain SFT with the default sampler and TRL's token-mean loss).",
        yaml="balance.enabled")
    bucket_temperature: float | None = option(
        2.0, "Sampler temperature T: p(bucket) ∝ n_b^(1/T); 1 = natural mix, .inf = equal mass per bucket, "
             "null = the Trainer's default sampler.", yaml="balance.temperature", gt=0)
    bucket_normalize: bool = option(
        True, "Per-bucket loss normalization with a global normalizer.", yaml="balance.normalize")
    dro: bool = option(False, "Reweight buckets online by their recent loss.", yaml="balance.dro.enabled")
    dro_eta: float = option(0.05, "Step size η of the exponentiated-gradient update.", yaml="balance.dro.eta",
                            gt=0)
    dro_epsilon: float = option(0.1, "Loss weights (1-ε)·q + ε/K: every bucket keeps ≥ ε/K.",
                                yaml="balance.dro.epsilon", ge=0, le=1)
    dro_reference: Literal["none", "initial"] = option(
        "none", "'none': group DRO on the raw bucket loss; 'initial': excess over the bucket's first observed "
                "loss.", yaml="balance.dro.reference")

    def __post_init__(self) -> None:
        check_options(self)
        if self.bucket_balance and self.dro and not self.bucket_normalize:
            raise ConfigError("balance.dro needs balance.normalize: true (DRO weights the per-bucket losses)")
        super().__post_init__()

    @property
    def sampler_temperature(self) -> float | None:
        """The bucket sampler's temperature, or None for the Trainer's default sampler."""
        return self.bucket_temperature if self.bucket_balance else None

    @property
    def normalized_loss(self) -> bool:
        """True when the loss is bucket-normalized (False: TRL's token mean)."""
        return self.bucket_balance and self.bucket_normalize

    @property
    def dro_active(self) -> bool:
        """True when online DRO bucket weights scale the normalized loss."""
        return self.normalized_loss and self.dro


__all__ = ["BucketSFTConfig"]
