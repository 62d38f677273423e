"""Bucket-temperature sampling: draw buckets with p(b) ∝ n_b^(1/T), then an example uniformly within the bucket.

T = 1 keeps the natural mix (each example equally likely); T → ∞ gives every bucket the same mass; T between the
two interpolates. The stream is a pure function of (seed, epoch): every rank builds the same one and accelerate
shards it, so distributed runs see exactly the examples a single process would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def bucket_probabilities(counts: Sequence[int] | np.ndarray, temperature: float) -> np.ndarray:
    """p_b = n_b^(1/T) / Σ_c n_c^(1/T) over buckets with n_b > 0 (empty buckets get 0); T = inf gives equal
    mass to every non-empty bucket. Raises ValueError for T <= 0 or when every bucket is empty."""
    counts = np.asarray(counts, dtype=np.float64)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative numbers")
    present = counts > 0
    if not present.any():
        raise ValueError("every bucket is empty")
    # Work in log space so huge counts with small T do not overflow.
    logits = np.full(counts.shape, -np.inf)
    logits[present] = 0.0 if math.isinf(temperature) else np.log(counts[present]) / temperature
    logits -= logits[present].max()
    weights = np.exp(logits)
    return weights / weights.sum()


class BucketTemperatureSampler(Sampler[int]):
    """Dataset indices drawn bucket-first with p(b) ∝ n_b^(1/T), uniformly within the bucket (cycling through a
    fresh permutation of the bucket, so repeats are as rare as possible). Deterministic for (seed, epoch);
    `set_epoch` is called by the Trainer/accelerate at the start of each epoch.

    `bucket_of_example[i]` is the bucket index of example i; `num_samples` (default: the dataset size) is the
    length of one epoch. It deliberately has no `generator` attribute: accelerate would otherwise re-seed it per
    process, and its stream must depend only on (seed, epoch).
    """

    def __init__(self, bucket_of_example: Sequence[int] | np.ndarray, temperature: float, *, seed: int = 0,
                 num_samples: int | None = None):
        buckets = np.asarray(bucket_of_example, dtype=np.int64)
        if buckets.ndim != 1 or len(buckets) == 0:
            raise ValueError("bucket_of_example must be a non-empty 1-D sequence of bucket indices")
        if (buckets < 0).any():
            raise ValueError("bucket indices must be >= 0")
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.epoch = 0
        self.num_samples = int(num_samples) if num_samples is not None else len(buckets)
        if self.num_samples <= 0:
            raise ValueError("num_samples must be positive")
        self.counts = np.bincount(buckets)
        self.probabilities = bucket_probabilities(self.counts, self.temperature)
        order = np.argsort(buckets, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self._members = [order[s:s + n] for s, n in zip(starts, self.counts)]

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of epoch `epoch` (same on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> np.ndarray:
        """The dataset indices of the current epoch, in order."""
        rng = np.random.Generator(np.random.PCG64([self.seed, self.epoch]))
        chosen = rng.choice(len(self.counts), size=self.num_samples, p=self.probabilities)
        out = np.empty(self.num_samples, dtype=np.int64)
        for bucket in np.unique(chosen):
            slots = np.flatnonzero(chosen == bucket)
            members = self._members[bucket]
            rounds = -(-len(slots) // len(members))
            picks = np.concatenate([rng.permutation(members) for _ in range(rounds)])[:len(slots)]
            out[slots] = picks
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def empirical_bucket_frequencies(indices: Sequence[int], bucket_of_example: Sequence[int],
                                 num_buckets: int | None = None) -> np.ndarray:
    """Share of `indices` that fall in each bucket (for checking a sampler against `bucket_probabilities`)."""
    buckets = np.asarray(bucket_of_example)[np.asarray(indices, dtype=np.int64)]
    counts = np.bincount(buckets, minlength=num_buckets or 0)
    return counts / max(1, counts.sum())
