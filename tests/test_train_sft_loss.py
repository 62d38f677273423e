"""Bucket-normalized SFT loss and DRO update against independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyalign.train.bucket_log import summarize_bucket_losses
from polyalign.train.global_batch import pack_statistics, unpack_statistics
from polyalign.train.sft_loss import bucket_loss_sums, bucket_means, bucket_normalized_loss, bucket_token_counts, \
    bucket_weights, dro_loss_weights, dro_update, token_mean_loss

K = 4


def _batch(seed: int = 0, batch: int = 8, seq: int = 11):
    g = torch.Generator().manual_seed(seed)
    loss = torch.rand(batch, seq, generator=g, dtype=torch.float64) * 5
    mask = torch.rand(batch, seq, generator=g) > 0.3
    mask[:, 0] = True  # every example has a loss token
    loss = loss * mask  # per-token losses are zero where masked (as the fused LM head returns them)
    buckets = torch.tensor([0, 0, 0, 0, 0, 1, 1, 3][:batch])
    return loss, mask, buckets


def _numpy_bucket_loss(loss, mask, buckets, weights=None):
    """Independent: mean token loss per bucket present, then a (weighted) mean over buckets."""
    loss, mask, buckets = loss.numpy(), mask.numpy(), buckets.numpy()
    means = {}
    for b in np.unique(buckets):
        rows = buckets == b
        means[b] = loss[rows][mask[rows]].mean()
    if weights is None:
        return float(np.mean(list(means.values())))
    w = np.array([weights[b] for b in means])
    return float((w / w.sum()) @ np.array(list(means.values())))


def test_bucket_normalized_loss_equals_independent_computation() -> None:
    loss, mask, buckets = _batch()
    counts = bucket_token_counts(buckets, mask, K)
    got = bucket_normalized_loss(loss, buckets, mask, counts)
    assert got.item() == pytest.approx(_numpy_bucket_loss(loss, mask, buckets), rel=1e-6)
    # each bucket present weighs the same: bucket 3 (one example) counts as much as bucket 0 (five examples)
    assert got.item() != pytest.approx(token_mean_loss(loss, mask).item(), rel=1e-3)


def test_weighted_bucket_loss_renormalizes_over_present_buckets() -> None:
    loss, mask, buckets = _batch()
    q = torch.tensor([0.1, 0.2, 0.6, 0.1])  # bucket 2 is absent: its weight is dropped and the rest renormalized
    counts = bucket_token_counts(buckets, mask, K)
    got = bucket_normalized_loss(loss, buckets, mask, counts, bucket_weights(counts, q))
    expected = _numpy_bucket_loss(loss, mask, buckets, weights={0: 0.1, 1: 0.2, 3: 0.1})
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("micro", [1, 2, 4])
def test_micro_batch_shares_add_up_to_the_full_batch_loss(micro: int) -> None:
    """With the global normalizer, micro-batch 1 x GA 8 gives the same loss as micro-batch 8."""
    loss, mask, buckets = _batch()
    counts = bucket_token_counts(buckets, mask, K)  # counted over the whole step
    full = bucket_normalized_loss(loss, buckets, mask, counts)
    parts = sum(bucket_normalized_loss(loss[i:i + micro], buckets[i:i + micro], mask[i:i + micro], counts)
                for i in range(0, 8, micro))
    assert parts.item() == pytest.approx(full.item(), rel=1e-12)
    # the reference implementation's per-micro-batch normalization does NOT add up (sanity: the test can fail)
    local = [bucket_normalized_loss(loss[i:i + micro], buckets[i:i + micro], mask[i:i + micro],
                                    bucket_token_counts(buckets[i:i + micro], mask[i:i + micro], K)).item()
             for i in range(0, 8, micro)]
    assert np.mean(local) != pytest.approx(full.item(), rel=1e-4)


def test_gradient_matches_independent_autograd() -> None:
    loss, mask, buckets = _batch()
    logits = loss.clone().requires_grad_(True)
    counts = bucket_token_counts(buckets, mask, K)
    bucket_normalized_loss(logits, buckets, mask, counts).backward()
    present = [0, 1, 3]
    expected = torch.zeros_like(loss)
    for b in present:
        rows = buckets == b
        expected[rows] = mask[rows].double() / (len(present) * mask[rows].sum())
    torch.testing.assert_close(logits.grad, expected)


def test_token_mean_and_sums() -> None:
    loss, mask, buckets = _batch()
    assert token_mean_loss(loss, mask).item() == pytest.approx(loss[mask].mean().item())
    assert token_mean_loss(loss, mask, num_items=100).item() == pytest.approx(loss[mask].sum().item() / 100)
    sums, counts = bucket_loss_sums(loss, buckets, mask, K)
    for b in range(K):
        rows = buckets == b
        assert sums[b].item() == pytest.approx(loss[rows][mask[rows]].sum().item(), rel=1e-6)
        assert counts[b].item() == mask[rows].sum().item()
    means = bucket_means(sums, counts)
    assert torch.isnan(means[2]) and means[0].item() == pytest.approx(loss[:5][mask[:5]].mean().item(), rel=1e-6)


def test_per_token_bucket_shape_is_checked() -> None:
    loss, mask, _ = _batch()
    with pytest.raises(ValueError, match="do not match"):
        bucket_token_counts(torch.zeros(3, 4, dtype=torch.long), mask, K)


def test_dro_update_matches_formula() -> None:
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    losses = torch.tensor([2.0, 3.0, float("nan"), 1.0])
    present = torch.tensor([True, True, False, True])
    eta, eps = 0.5, 0.1
    got = dro_update(q, losses, present, eta=eta).numpy()
    e = np.array([2.0, 3.0, 0.0, 1.0])
    centered = e - e[[0, 1, 3]].mean()
    raw = 0.25 * np.exp(np.where([1, 1, 0, 1], eta * centered, 0.0))
    np.testing.assert_allclose(got, raw / raw.sum(), rtol=1e-6)
    assert got[1] > got[0] > got[3]  # the worst bucket gains weight
    assert got[2] == pytest.approx(got[0])  # absent bucket: counted as average
    weights = dro_loss_weights(torch.tensor(got), eps).numpy()
    np.testing.assert_allclose(weights, (1 - eps) * got + eps / 4, rtol=1e-6)
    assert weights.sum() == pytest.approx(1.0) and weights.min() >= eps / 4 - 1e-9
    with pytest.raises(ValueError):
        dro_loss_weights(torch.tensor(got), 1.5)


def test_dro_state_keeps_moving_toward_the_worst_bucket() -> None:
    """Repeated steps concentrate the state on the worst bucket; the uniform mixture only enters the loss."""
    q = torch.full((3,), 1 / 3)
    present = torch.ones(3, dtype=torch.bool)
    for _ in range(50):
        q = dro_update(q, torch.tensor([5.0, 3.0, 1.0]), present, eta=0.1)
    assert q[0] > 0.99
    assert dro_loss_weights(q, 0.3)[2].item() >= 0.1 - 1e-6


def test_dro_with_reference_uses_excess_loss() -> None:
    q = torch.full((3,), 1 / 3)
    present = torch.ones(3, dtype=torch.bool)
    losses = torch.tensor([5.0, 3.0, 1.0])
    reference = torch.tensor([5.0, 2.0, 1.0])  # only bucket 1 is above its reference
    got = dro_update(q, losses, present, eta=1.0, reference=reference)
    assert int(got.argmax()) == 1
    assert got[0].item() == pytest.approx(got[2].item())


def test_pack_unpack_statistics_roundtrip() -> None:
    stats = {"b": torch.tensor([1.0, 2.0, 3.0]), "a": torch.tensor([[4, 5], [6, 7]])}
    flat, layout = pack_statistics(stats)
    assert flat.dtype == torch.float64 and flat.numel() == 7
    back = unpack_statistics(flat, layout)
    torch.testing.assert_close(back["b"], stats["b"].double())
    torch.testing.assert_close(back["a"], stats["a"].double())


def test_summarize_bucket_losses() -> None:
    s = summarize_bucket_losses([4.0, 0.0, 9.0], [2, 0, 3], ["a", "b", "c"])
    assert s["buckets"] == {"a": {"loss": 2.0, "tokens": 2}, "c": {"loss": 3.0, "tokens": 3}}
    assert s["macro"] == pytest.approx(2.5) and s["spread"] == pytest.approx(1.0)
    assert s["worst_bucket"] == "c" and s["token_mean"] == pytest.approx(13 / 5)
