"""Training the learned critic: conversation-level splits, class-balanced weights and the early-stopped fit of the
network (pure numpy / torch; polyalign.critic.fit wires data and configs to it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.nn.functional as F
import torch

from ..errors import PolyAlignError
from .model import CriticNet

if TYPE_CHECKING:
    from .fit import CriticConfig

HUMAN, MODEL = 0, 1


def split_by_group(group_ids: Sequence[str], heldout_fraction: float, early_stop_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (fit, early_stop, heldout) over rows, assigned per GROUP (the conversation), so that every
    record of a conversation, human and model responses alike, falls on the same side; deterministic for a
    seed."""
    group_ids = np.asarray(group_ids, dtype=object)
    unique = np.array(sorted(set(group_ids.tolist())), dtype=object)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_held = max(1, round(heldout_fraction * len(unique)))
    n_stop = max(1, round(early_stop_fraction * (len(unique) - n_held)))
    if n_held + n_stop >= len(unique):
        raise PolyAlignError(f"too few conversations ({len(unique)}) to hold out {n_held} and early-stop on "
                             f"{n_stop}")
    part = np.empty(len(unique), dtype=np.int64)
    part[order[:n_held]] = 2
    part[order[n_held:n_held + n_stop]] = 1
    part[order[n_held + n_stop:]] = 0
    lookup = dict(zip(unique.tolist(), part.tolist()))
    row_part = np.array([lookup[g] for g in group_ids.tolist()], dtype=np.int64)
    return row_part == 0, row_part == 1, row_part == 2


def class_balanced_weights(labels: np.ndarray, bucket_ids: np.ndarray) -> np.ndarray:
    """Per-row weights so that, within each bucket, humans and model responses carry equal total weight and the
    bucket keeps its row count: w = n_b / (2 n_{b,class}). Buckets with one class only get weight 0."""
    labels = np.asarray(labels)
    bucket_ids = np.asarray(bucket_ids, dtype=object)
    weights = np.zeros(len(labels), dtype=np.float64)
    for b in np.unique(bucket_ids):
        in_b = bucket_ids == b
        n_h = int((in_b & (labels == HUMAN)).sum())
        n_m = int((in_b & (labels == MODEL)).sum())
        if n_h and n_m:
            weights[in_b & (labels == HUMAN)] = (n_h + n_m) / (2 * n_h)
            weights[in_b & (labels == MODEL)] = (n_h + n_m) / (2 * n_m)
    return weights


# ---------------------------------------------------------------------------------------------------------------
# Training


def _weighted_loss(net: CriticNet, inputs: Any, index: Any, labels: Any, weights: Any, aux: Any,
                   aux_weight: float) -> Any:
    out = net(inputs, index)
    bce = F.binary_cross_entropy_with_logits(out[:, 0], labels, reduction="none")
    loss = (weights * bce).sum() / weights.sum().clamp(min=1e-12)
    if aux_weight > 0:
        loss = loss + aux_weight * (weights * F.smooth_l1_loss(out[:, 1], aux, reduction="none")).sum() \
            / weights.sum().clamp(min=1e-12)
    return loss


def train_critic_net(inputs: np.ndarray, bucket_index: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                     fit_mask: np.ndarray, stop_mask: np.ndarray, n_buckets: int, config: CriticConfig,
                     aux_targets: np.ndarray | None = None) -> tuple[CriticNet, list[dict[str, float]]]:
    """Train the MLP with class-balanced weighted BCE on the fit rows; keep the state with the lowest weighted
    loss on the early-stop rows. Returns (net, per-epoch history)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    aux_weight = config.aux_band_weight if aux_targets is not None else 0.0
    net = CriticNet(inputs.shape[1], n_buckets, bucket_dim=config.bucket_dim, hidden=config.hidden,
                    layers=config.layers, dropout=config.dropout, aux_outputs=1 if aux_weight > 0 else 0)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def tensors(mask: np.ndarray) -> tuple[Any, ...]:
        idx = np.flatnonzero(mask & (weights > 0))
        aux = aux_targets[idx] if aux_targets is not None else np.zeros(len(idx))
        return (torch.from_numpy(np.ascontiguousarray(inputs[idx], dtype=np.float32)),
                torch.from_numpy(bucket_index[idx].astype(np.int64)),
                torch.from_numpy(labels[idx].astype(np.float32)), torch.from_numpy(weights[idx].astype(np.float32)),
                torch.from_numpy(np.asarray(aux, dtype=np.float32)))

    fit_t, stop_t = tensors(fit_mask), tensors(stop_mask)
    if len(fit_t[0]) == 0 or len(stop_t[0]) == 0:
        raise PolyAlignError("no buckets have both human and model responses in the fit / early-stop records")
    best, best_state, stale, history = float("inf"), None, 0, []
    for epoch in range(config.max_epochs):
        net.train()
        perm = torch.randperm(len(fit_t[0]), generator=generator)
        total = 0.0
        for start in range(0, len(perm), config.batch_size):
            b = perm[start:start + config.batch_size]
            x, index, y, w, aux = (t[b] for t in fit_t)
            if config.unknown_bucket_rate > 0:
                drop = torch.rand(len(b), generator=generator) < config.unknown_bucket_rate
                index = torch.where(drop, torch.zeros_like(index), index)
            loss = _weighted_loss(net, x, index, y, w, aux, aux_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        net.eval()
        with torch.no_grad():
            stop_loss = float(_weighted_loss(net, *stop_t, aux_weight))
        history.append({"epoch": epoch + 1, "train_loss": total / len(perm), "early_stop_loss": stop_loss})
        if stop_loss < best - 1e-6:
            best, stale = stop_loss, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), history
