"""The HDPO loss as pure torch functions (no TRL): weighted sigmoid DPO with a global normalizer, a distribution
regularizer with a gradient path (expected-distance or offset form), an SFT anchor on the chosen response, and an
optional on-policy REINFORCE term. Formulas and the reasons behind them: docs/hdpo.md.

Inputs are per pair: summed completion log-probs of the policy and the reference for chosen (+) and rejected (-),
completion token counts |y+|, |y-|, critic distances d+, d- (constants, computed once when the pairs are built),
and weights w. `weight_total` is the sum of w over the WHOLE optimizer step (every micro-batch on every rank),
so that the micro-batch losses add up to the full-batch loss whatever the micro-batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def check_loss_settings(*, beta: float, label_smoothing: float, reg_lambda: float, reg_form: str, tau: float,
                        offset_sign: float, anchor_gamma: float) -> None:
    """Raise ValueError for a setting `hdpo_loss` cannot use."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if reg_lambda < 0 or anchor_gamma < 0:
        raise ValueError("reg_lambda and anchor_gamma must be >= 0")
    if reg_form not in ("expected", "offset"):
        raise ValueError(f"reg_form must be 'expected' or 'offset', got {reg_form!r}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if offset_sign not in (1.0, -1.0):
        raise ValueError(f"offset_sign must be +1 (ODPO) or -1 (issue text), got {offset_sign}")


def _check_total(weight_total: Tensor | float, like: Tensor) -> Tensor:
    total = torch.as_tensor(weight_total, dtype=like.dtype, device=like.device)
    if total.numel() != 1:
        raise ValueError("weight_total must be a scalar (the sum of weights over the whole optimizer step)")
    if not bool(total > 0):
        raise ValueError(f"weight_total must be > 0, got {float(total)}")
    return total.reshape(())


def _check_shapes(n: int, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if t.shape != (n,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},)")


def sigmoid_preference_loss(z: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Per-pair -(1 - eps) log sigmoid(z) - eps log sigmoid(-z) (eps = 0: the DPO sigmoid loss)."""
    loss = -F.logsigmoid(z)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)
    return loss


def preference_probability(chosen_logratios: Tensor, rejected_logratios: Tensor, chosen_lengths: Tensor,
                           rejected_lengths: Tensor, tau: float) -> Tensor:
    """p = sigmoid(tau * m), m = (pi+ - ref+)/|y+| - (pi- - ref-)/|y-|: the policy's preference for the chosen
    response relative to the reference, per token. p = 0.5 whenever the policy equals the reference."""
    m = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(min=1)
    return torch.sigmoid(tau * m)


def hdpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor, d_chosen: Tensor,
              d_rejected: Tensor, weights: Tensor, weight_total: Tensor | float, *, beta: float,
              label_smoothing: float, reg_lambda: float, reg_form: str, tau: float, offset_sign: float,
              anchor_gamma: float) -> tuple[Tensor, dict[str, Tensor]]:
    """This micro-batch's share of the HDPO loss of one optimizer step, and detached metrics.

    Settings (plain numbers; the trainer passes `HDPOConfig.loss_kwargs()`, one field per keyword): beta, the DPO
    temperature; label_smoothing, conservative-DPO eps (0 = TRL's sigmoid loss); reg_lambda, the weight of the
    distribution regularizer (0 = off); reg_form, "expected" (lambda * E_p[d]) or "offset" (margin inside the
    log-sigmoid); tau, the temperature of p = sigmoid(tau * m) on the length-normalized reference-relative margin m
    (expected form); offset_sign, +1 = ODPO convention z - lambda (d- - d+), -1 = the issue's literal
    z - lambda (d+ - d-); anchor_gamma, the weight of the SFT anchor on chosen (0 = off).

    loss = [ sum_i w_i l_i + lambda sum_i w_i R_i + gamma sum_i w_i (-pi+_i / |y+_i|) ] / weight_total, where
    l_i = -log sigmoid(z_i) (with optional label smoothing), z_i = beta [(pi+ - ref+) - (pi- - ref-)] minus, in
    the offset form, lambda * offset_sign * (d-_i - d+_i); R_i = p_i d+_i + (1 - p_i) d-_i in the expected form.

    Metrics (0-d tensors): loss, dpo, reg, anchor (their shares, summable over micro-batches), rewards/chosen,
    rewards/rejected, rewards/margins, rewards/accuracies (unweighted micro-batch means as TRL logs them),
    p_mean, offset_mean, d_gap_mean; per-pair vectors for per-bucket logging: pair/reward_chosen,
    pair/reward_rejected, pair/correct.
    """
    dtype = policy_chosen_logps.dtype
    lengths_c, lengths_r = chosen_lengths.to(dtype), rejected_lengths.to(dtype)
    weights, d_chosen, d_rejected = weights.to(dtype), d_chosen.to(dtype), d_rejected.to(dtype)
    _check_shapes(policy_chosen_logps.shape[0], policy_rejected_logps=policy_rejected_logps,
                  ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps, chosen_lengths=lengths_c,
                  rejected_lengths=lengths_r, d_chosen=d_chosen, d_rejected=d_rejected, weights=weights)
    check_loss_settings(beta=beta, label_smoothing=label_smoothing, reg_lambda=reg_lambda, reg_form=reg_form,
                        tau=tau, offset_sign=offset_sign, anchor_gamma=anchor_gamma)
    total = _check_total(weight_total, policy_chosen_logps)

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    z = beta * (chosen_logratios - rejected_logratios)
    d_gap = d_rejected - d_chosen  # > 0 when the chosen response is closer to human support
    offset = torch.zeros_like(z)
    if reg_form == "offset" and reg_lambda > 0:
        offset = reg_lambda * offset_sign * d_gap
    dpo = (weights * sigmoid_preference_loss(z - offset, label_smoothing)).sum() / total

    p = preference_probability(chosen_logratios, rejected_logratios, lengths_c, lengths_r, tau)
    reg = torch.zeros((), dtype=z.dtype, device=z.device)
    if reg_form == "expected" and reg_lambda > 0:
        expected_distance = p * d_chosen + (1 - p) * d_rejected
        reg = reg_lambda * (weights * expected_distance).sum() / total

    anchor = torch.zeros((), dtype=z.dtype, device=z.device)
    if anchor_gamma > 0:
        anchor = anchor_gamma * (weights * (-policy_chosen_logps / lengths_c.clamp(min=1))).sum() / total

    loss = dpo + reg + anchor
    with torch.no_grad():
        reward_c = beta * chosen_logratios.detach()
        reward_r = beta * rejected_logratios.detach()
        correct = (reward_c > reward_r).to(z.dtype)
        metrics = {
            "loss": loss.detach(), "dpo": dpo.detach(), "reg": reg.detach(), "anchor": anchor.detach(),
            "rewards/chosen": reward_c.mean(), "rewards/rejected": reward_r.mean(),
            "rewards/margins": (reward_c - reward_r).mean(), "rewards/accuracies": correct.mean(),
            "p_mean": p.detach().mean(), "offset_mean": offset.detach().mean(), "d_gap_mean": d_gap.mean(),
            "pair/reward_chosen": reward_c, "pair/reward_rejected": reward_r, "pair/correct": correct,
        }
    return loss, metrics


def reinforce_loss(sample_logps: Tensor, sample_distances: Tensor, baselines: Tensor | float,
                   normalizer: float) -> Tensor:
    """On-policy critic term: mean_j (d_j - b_j) * log pi(y_j) / C, with log pi(y_j) the SUMMED log-probability of
    sample j, d and b held constant, and C > 0 a constant (the sampling budget max_new_tokens, so that the term's
    scale does not grow with it).

    What it estimates: with y_j ~ pi and each b_j independent of y_j, its gradient is an unbiased estimate of
    grad E_{y~pi}[d(y)] / C (REINFORCE with a baseline), at any sample length. Dividing by the sample's own
    length |y_j| instead would make it biased, favouring the lengths whose distance sits below the baseline
    (tests/test_hdpo_loss.py measures that bias on unequal lengths)."""
    if normalizer <= 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")
    advantage = (sample_distances.to(sample_logps.dtype)
                 - torch.as_tensor(baselines, dtype=sample_logps.dtype, device=sample_logps.device)).detach()
    return (advantage * sample_logps).mean() / normalizer


def leave_one_out_baselines(distances: Tensor) -> Tensor:
    """b_j = the mean distance of the other samples (independent of sample j, so REINFORCE stays unbiased); a
    single sample gets 0."""
    n = distances.numel()
    if n < 2:
        return torch.zeros_like(distances)
    return (distances.sum() - distances) / (n - 1)


def update_baseline(baseline: float | None, distances: Tensor, momentum: float = 0.9) -> float:
    """Exponential moving average of the sampled distances (the first call returns their mean)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    mean = float(distances.detach().float().mean())
    return mean if baseline is None else momentum * float(baseline) + (1 - momentum) * mean
