"""Bucket-normalized SFT loss with a global normalizer, and the online (group-DRO) bucket reweighting.

Notation for one optimizer step (all gradient-accumulation micro-batches on all ranks): ℓ_t is the negative
log-likelihood of completion token t, b(t) its example's bucket, N_b the number of completion tokens of bucket b
in the step, B = {b : N_b > 0} the buckets present, and w_b a bucket weight (uniform by default).

    L = Σ_{b∈B} w_b · (1/N_b) Σ_{t∈b} ℓ_t,    w_b = 1/|B|  (or q_b / Σ_{c∈B} q_c with DRO weights q)

Every bucket present weighs the same, whatever its size and however the step is split into micro-batches: a
micro-batch returns Σ_{t∈mb} w_{b(t)} ℓ_t / N_{b(t)}, and the micro-batch values add up to exactly L because N_b
and B are counted over the whole step (see global_batch.py). These are pure tensor functions.
"""

from __future__ import annotations

import torch


def expand_buckets(token_buckets: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-token bucket indices shaped like `like` ([batch, seq]); a [batch] vector of example buckets is
    broadcast along the sequence."""
    if token_buckets.dim() == 1:
        token_buckets = token_buckets[:, None].expand(like.shape)
    if token_buckets.shape != like.shape:
        raise ValueError(f"bucket indices of shape {tuple(token_buckets.shape)} do not match the per-token "
                         f"losses of shape {tuple(like.shape)}")
    return token_buckets.to(like.device)


def bucket_token_counts(token_buckets: torch.Tensor, mask: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """N_b: the number of loss tokens (mask true) of each bucket, as a float tensor [num_buckets]."""
    token_buckets = expand_buckets(token_buckets, mask)
    return torch.bincount(token_buckets[mask.bool()].reshape(-1), minlength=num_buckets)[:num_buckets].float()


def bucket_loss_sums(per_token_loss: torch.Tensor, token_buckets: torch.Tensor, mask: torch.Tensor,
                     num_buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{t∈b} ℓ_t, N_b) per bucket, without gradient (for logging and DRO)."""
    token_buckets = expand_buckets(token_buckets, per_token_loss)
    mask = mask.bool()
    loss = per_token_loss.detach().float()[mask]
    index = token_buckets[mask]
    sums = torch.zeros(num_buckets, dtype=torch.float32, device=loss.device).index_add_(0, index, loss)
    counts = torch.bincount(index, minlength=num_buckets)[:num_buckets].float()
    return sums, counts


def bucket_weights(global_counts: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
    """w_b over the buckets present (N_b > 0): uniform 1/|B|, or q_b renormalized over B; 0 for absent buckets."""
    present = global_counts > 0
    base = torch.ones_like(global_counts, dtype=torch.float32) if q is None else q.to(global_counts.device).float()
    weights = torch.where(present, base, torch.zeros_like(base))
    total = weights.sum()
    return weights / total if total > 0 else weights


def bucket_normalized_loss(per_token_loss: torch.Tensor, token_buckets: torch.Tensor, mask: torch.Tensor,
                           global_counts: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """This micro-batch's share of L = Σ_b w_b (1/N_b) Σ_{t∈b} ℓ_t, with N_b (`global_counts`) counted over the
    whole optimizer step. `weights` defaults to uniform over the buckets present (`bucket_weights`)."""
    global_counts = global_counts.to(per_token_loss.device).float()
    if weights is None:
        weights = bucket_weights(global_counts)
    coef = torch.where(global_counts > 0, weights.to(global_counts) / global_counts.clamp(min=1),
                       torch.zeros_like(global_counts))
    token_buckets = expand_buckets(token_buckets, per_token_loss)
    token_coef = coef[token_buckets] * mask.to(coef.dtype)
    return (per_token_loss * token_coef.to(per_token_loss.dtype)).sum()


def token_mean_loss(per_token_loss: torch.Tensor, mask: torch.Tensor,
                    num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """Σ_t ℓ_t / N: plain SFT's token mean, with N = `num_items` (tokens of the whole step) or this batch's
    loss tokens (TRL's own reduction)."""
    n = mask.sum() if num_items is None else num_items
    return (per_token_loss * mask.to(per_token_loss.dtype)).sum() / torch.as_tensor(n).clamp(min=1)


def bucket_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-bucket mean loss Σℓ/N (NaN where N = 0)."""
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


def dro_update(q: torch.Tensor, bucket_losses: torch.Tensor, present: torch.Tensor, *, eta: float,
               reference: torch.Tensor | None = None) -> torch.Tensor:
    """One exponentiated-gradient step of the DRO state q (a distribution over the K buckets; group DRO, or
    excess-loss DRO with a `reference`):

        e_b  = ℓ_b − ref_b                         (ref_b = 0 without a reference)
        q'_b ∝ q_b · exp(η · (e_b − ē))   for b present, where ē is the mean of e over the buckets present;
               absent buckets keep q_b (they count as average, not as zero-loss)

    ℓ_b is the bucket's mean token loss in the last optimizer step. Centering by ē changes nothing when every
    bucket is present (softmax is shift-invariant) and keeps buckets that were not sampled in a step from losing
    weight merely for being absent. The loss uses `dro_loss_weights(q, ε)`, not q itself."""
    present = present.bool()
    q = q.double()
    excess = torch.nan_to_num(bucket_losses.double(), nan=0.0)
    if reference is not None:
        excess = excess - torch.nan_to_num(reference.double(), nan=0.0)
    if not present.any():
        return q.float()
    centered = excess - excess[present].mean()
    step = torch.where(present, eta * centered, torch.zeros_like(centered))
    return torch.softmax(torch.log(q.clamp(min=1e-30)) + step, dim=0).float()


def dro_loss_weights(q: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Bucket weights for the loss: the DRO state mixed with the uniform distribution,
    w = (1 − ε) · q + ε / K, so every bucket keeps at least ε/K of the mass (renormalized over the buckets
    present by `bucket_weights`)."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    return (1.0 - epsilon) * q.float() + epsilon / len(q)
