"""The HDPO loss: equality with sigmoid DPO, micro-batch invariance, gradient paths, no saturation at init,
and the REINFORCE estimator against the exact gradient."""

from __future__ import annotations

import math

import pytest
import torch

from polyalign.train.hdpo_loss import (hdpo_loss, leave_one_out_baselines, preference_probability, reinforce_loss,
                                       update_baseline)

torch.set_num_threads(1)


def make_batch(n: int = 8, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref_c = -torch.rand(n, generator=g, dtype=dtype) * 200 - 50
    ref_r = -torch.rand(n, generator=g, dtype=dtype) * 200 - 50
    return {
        "policy_chosen_logps": ref_c + torch.randn(n, generator=g, dtype=dtype) * 5,
        "policy_rejected_logps": ref_r + torch.randn(n, generator=g, dtype=dtype) * 5,
        "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r,
        "chosen_lengths": torch.randint(5, 300, (n,), generator=g),
        "rejected_lengths": torch.randint(5, 300, (n,), generator=g),
        "d_chosen": torch.rand(n, generator=g, dtype=dtype),
        "d_rejected": torch.rand(n, generator=g, dtype=dtype) * 3,
        "weights": torch.rand(n, generator=g, dtype=dtype) * 2 + 0.25,
    }


def trl_sigmoid_dpo(pc, pr, rc, rr, beta):
    """Independent TRL-style sigmoid DPO loss: mean_i -log(1 / (1 + exp(-beta * delta_i)))."""
    delta = (pc - rc) - (pr - rr)
    return torch.mean(torch.log1p(torch.exp(-beta * delta)))


def loss_settings(**changes):
    """The keyword settings of `hdpo_loss`: plain sigmoid DPO with beta = 0.1, then `changes`."""
    return {"beta": 0.1, "label_smoothing": 0.0, "reg_lambda": 0.0, "reg_form": "expected", "tau": 2.0,
            "offset_sign": 1.0, "anchor_gamma": 0.0, **changes}


def call(batch, weight_total, params, **over):
    args = {**batch, **over}
    return hdpo_loss(args["policy_chosen_logps"], args["policy_rejected_logps"], args["ref_chosen_logps"],
                     args["ref_rejected_logps"], args["chosen_lengths"], args["rejected_lengths"], args["d_chosen"],
                     args["d_rejected"], args["weights"], weight_total, **params)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_plain_dpo_equals_trl_sigmoid(beta):
    batch = make_batch()
    batch["weights"] = torch.ones(8, dtype=torch.float64)
    loss, metrics = call(batch, 8.0, loss_settings(beta=beta))
    expected = trl_sigmoid_dpo(batch["policy_chosen_logps"], batch["policy_rejected_logps"],
                               batch["ref_chosen_logps"], batch["ref_rejected_logps"], beta)
    assert abs(float(loss) - float(expected)) < 1e-6
    # regularizer weight is irrelevant when lambda = 0, whatever the distances
    loss2, _ = call(batch, 8.0, loss_settings(beta=beta, reg_form="offset"))
    assert float(loss2) == float(loss)
    assert float(metrics["reg"]) == 0.0 and float(metrics["anchor"]) == 0.0


def test_plain_dpo_equals_trl_in_float32():
    batch = {k: (v.float() if v.is_floating_point() else v) for k, v in make_batch(seed=3).items()}
    batch["weights"] = torch.ones(8)
    loss, _ = call(batch, 8.0, loss_settings())
    expected = trl_sigmoid_dpo(batch["policy_chosen_logps"], batch["policy_rejected_logps"],
                               batch["ref_chosen_logps"], batch["ref_rejected_logps"], 0.1)
    assert abs(float(loss) - float(expected)) < 1e-6


def test_label_smoothing_matches_conservative_dpo():
    batch = make_batch(seed=4)
    batch["weights"] = torch.ones(8, dtype=torch.float64)
    eps, beta = 0.2, 0.1
    loss, _ = call(batch, 8.0, loss_settings(beta=beta, label_smoothing=eps))
    z = beta * ((batch["policy_chosen_logps"] - batch["ref_chosen_logps"])
                - (batch["policy_rejected_logps"] - batch["ref_rejected_logps"]))
    expected = torch.mean(-(1 - eps) * torch.log(torch.sigmoid(z)) - eps * torch.log(torch.sigmoid(-z)))
    assert abs(float(loss) - float(expected)) < 1e-9


def full_params():
    return [loss_settings(reg_lambda=0.3, reg_form="expected", anchor_gamma=0.05),
            loss_settings(reg_lambda=0.3, reg_form="offset", anchor_gamma=0.05),
            loss_settings(reg_lambda=0.3, reg_form="offset", offset_sign=-1.0, label_smoothing=0.1)]


@pytest.mark.parametrize("params", full_params())
def test_micro_batches_of_one_equal_one_batch_of_eight(params):
    batch = make_batch(seed=1)
    total = float(batch["weights"].sum())

    def leaf(b):
        b = dict(b)
        b["policy_chosen_logps"] = b["policy_chosen_logps"].clone().requires_grad_(True)
        b["policy_rejected_logps"] = b["policy_rejected_logps"].clone().requires_grad_(True)
        return b

    big = leaf(batch)
    loss_big, m_big = call(big, total, params)
    loss_big.backward()

    small = leaf(batch)
    summed, summed_dpo, summed_reg = 0.0, 0.0, 0.0
    for i in range(8):
        part = {k: v[i:i + 1] for k, v in small.items()}
        loss_i, m_i = call(part, total, params)
        loss_i.backward()
        summed += float(loss_i.detach())
        summed_dpo += float(m_i["dpo"])
        summed_reg += float(m_i["reg"])
    assert abs(summed - float(loss_big.detach())) < 1e-10
    assert abs(summed_dpo - float(m_big["dpo"])) < 1e-10
    assert abs(summed_reg - float(m_big["reg"])) < 1e-10
    torch.testing.assert_close(small["policy_chosen_logps"].grad, big["policy_chosen_logps"].grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(small["policy_rejected_logps"].grad, big["policy_rejected_logps"].grad, rtol=0,
                               atol=1e-12)
    # the weights really matter (non-uniform weights change the loss)
    loss_uniform, _ = call(batch, 8.0, params, weights=torch.ones(8, dtype=torch.float64))
    assert abs(float(loss_uniform) - float(loss_big.detach())) > 1e-6


def grads(batch, params):
    pc = batch["policy_chosen_logps"].clone().requires_grad_(True)
    pr = batch["policy_rejected_logps"].clone().requires_grad_(True)
    loss, metrics = call(batch, float(batch["weights"].sum()), params, policy_chosen_logps=pc,
                         policy_rejected_logps=pr)
    loss.backward()
    return pc.grad, pr.grad, metrics


def term_grads(batch, params, term):
    """Gradient of one term (metrics carry detached values, so recompute the term through the loss difference)."""
    pc = batch["policy_chosen_logps"].clone().requires_grad_(True)
    pr = batch["policy_rejected_logps"].clone().requires_grad_(True)
    total = float(batch["weights"].sum())
    with_term, _ = call(batch, total, params, policy_chosen_logps=pc, policy_rejected_logps=pr)
    without, _ = call(batch, total, loss_settings(beta=params["beta"], reg_form=params["reg_form"],
                                                  reg_lambda=params["reg_lambda"] if term != "reg" else 0.0,
                                                  anchor_gamma=params["anchor_gamma"] if term != "anchor" else 0.0),
                      policy_chosen_logps=pc, policy_rejected_logps=pr)
    (with_term - without).backward()
    return pc.grad, pr.grad


def test_expected_regularizer_has_gradient_when_distances_differ():
    batch = make_batch(seed=2)
    gc, gr = term_grads(batch, loss_settings(reg_lambda=0.5, reg_form="expected"), "reg")
    assert torch.all(gc.abs() > 1e-8) and torch.all(gr.abs() > 1e-8)
    # analytic: dR/dpi+ = lambda w (d+ - d-) tau p (1-p) / |y+| / W
    p = preference_probability(batch["policy_chosen_logps"] - batch["ref_chosen_logps"],
                               batch["policy_rejected_logps"] - batch["ref_rejected_logps"],
                               batch["chosen_lengths"].double(), batch["rejected_lengths"].double(), 2.0)
    expected = 0.5 * batch["weights"] * (batch["d_chosen"] - batch["d_rejected"]) * 2.0 * p * (1 - p) \
        / batch["chosen_lengths"].double() / batch["weights"].sum()
    torch.testing.assert_close(gc, expected)
    # direction: the regularizer pushes up the chosen log-prob where the chosen response is closer to humans
    closer = batch["d_chosen"] < batch["d_rejected"]
    assert torch.all((gc[closer] < 0)) and torch.all(gc[~closer] > 0)


def test_expected_regularizer_gradient_is_zero_when_distances_are_equal():
    batch = make_batch(seed=2)
    batch["d_rejected"] = batch["d_chosen"].clone()
    gc, gr = term_grads(batch, loss_settings(reg_lambda=0.5, reg_form="expected"), "reg")
    assert torch.all(gc == 0) and torch.all(gr == 0)


def test_offset_form_changes_the_gradient_only_when_distances_differ():
    batch = make_batch(seed=5)
    g_plain = grads(batch, loss_settings())[0]
    g_offset = grads(batch, loss_settings(reg_lambda=0.5, reg_form="offset"))[0]
    assert torch.all((g_offset - g_plain).abs() > 1e-8)
    same = dict(batch, d_rejected=batch["d_chosen"].clone())
    torch.testing.assert_close(grads(same, loss_settings(reg_lambda=0.5, reg_form="offset"))[0],
                               grads(same, loss_settings())[0], rtol=0, atol=0)


def test_offset_sign_conventions():
    """ODPO (+1): a pair whose chosen is much closer to human support must be won by a larger margin, so its loss
    is higher at the same policy; the issue's literal sign (-1) relaxes it."""
    batch = make_batch(seed=6)
    batch["d_chosen"] = torch.zeros(8, dtype=torch.float64)
    batch["d_rejected"] = torch.full((8,), 2.0, dtype=torch.float64)
    plain, _ = call(batch, 8.0, loss_settings())
    odpo, m = call(batch, 8.0, loss_settings(reg_lambda=0.5, reg_form="offset"))
    issue, _ = call(batch, 8.0, loss_settings(reg_lambda=0.5, reg_form="offset", offset_sign=-1.0))
    assert float(odpo) > float(plain) > float(issue)
    assert abs(float(m["offset_mean"]) - 1.0) < 1e-12
    z = 0.1 * ((batch["policy_chosen_logps"] - batch["ref_chosen_logps"])
               - (batch["policy_rejected_logps"] - batch["ref_rejected_logps"]))
    w = batch["weights"]
    assert abs(float(odpo) - float((w * -torch.nn.functional.logsigmoid(z - 1.0)).sum() / 8.0)) < 1e-12


def test_anchor_gradient_is_minus_weight_over_length():
    batch = make_batch(seed=7)
    gc, gr = term_grads(batch, loss_settings(anchor_gamma=0.2), "anchor")
    expected = -0.2 * batch["weights"] / batch["chosen_lengths"].double() / batch["weights"].sum()
    torch.testing.assert_close(gc, expected)
    assert torch.all(gr == 0)


def test_dpo_term_has_gradient():
    gc, gr, _ = grads(make_batch(seed=8), loss_settings())
    assert torch.all(gc < 0) and torch.all(gr > 0)


def test_expected_form_is_not_saturated_at_init():
    """Policy = reference: p = 0.5 even though chosen and rejected summed log-probs differ by hundreds (the
    reference implementation's p = sigmoid(beta * (pi+ - pi-)) gave ~4.5e-5 there)."""
    n = 4
    ref_c = torch.tensor([-250.0, -280.0, -260.0, -270.0], dtype=torch.float64)
    ref_r = torch.tensor([-150.0, -130.0, -160.0, -140.0], dtype=torch.float64)
    batch = {"policy_chosen_logps": ref_c.clone(), "policy_rejected_logps": ref_r.clone(),
             "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r,
             "chosen_lengths": torch.tensor([200, 240, 180, 210]), "rejected_lengths": torch.tensor([90, 80, 120, 85]),
             "d_chosen": torch.zeros(n, dtype=torch.float64), "d_rejected": torch.ones(n, dtype=torch.float64),
             "weights": torch.ones(n, dtype=torch.float64)}
    _, metrics = call(batch, float(n), loss_settings(reg_lambda=0.1))
    assert float(metrics["p_mean"]) == 0.5
    reference_p = torch.sigmoid(0.1 * (ref_c - ref_r))
    assert float(reference_p.max()) < 1e-4  # what the reference implementation's p would have been
    gc, _ = term_grads(batch, loss_settings(reg_lambda=0.1), "reg")
    assert torch.all(gc.abs() > 1e-5)


def test_metrics_are_rewards_as_trl_logs_them():
    batch = make_batch(seed=9)
    _, m = call(batch, 1.0, loss_settings(beta=0.2))
    rc = 0.2 * (batch["policy_chosen_logps"] - batch["ref_chosen_logps"])
    rr = 0.2 * (batch["policy_rejected_logps"] - batch["ref_rejected_logps"])
    assert abs(float(m["rewards/chosen"]) - float(rc.mean())) < 1e-12
    assert abs(float(m["rewards/margins"]) - float((rc - rr).mean())) < 1e-12
    assert float(m["rewards/accuracies"]) == float((rc > rr).double().mean())
    assert m["pair/reward_chosen"].shape == (8,)


def test_bad_inputs_are_rejected():
    batch = make_batch()
    with pytest.raises(ValueError, match="weight_total"):
        call(batch, 0.0, loss_settings())
    with pytest.raises(ValueError, match="shape"):
        call(batch, 1.0, loss_settings(), d_chosen=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="offset_sign"):
        call(batch, 1.0, loss_settings(offset_sign=0.5))
    with pytest.raises(ValueError, match="label_smoothing"):
        call(batch, 1.0, loss_settings(label_smoothing=0.5))


# A tiny autoregressive policy with outputs of UNEQUAL length: at each of up to 3 steps it stops or writes "a";
# y_k = "a"*k then the end (k = 0..2), or "aaa" cut by the cap. Every output's probability and summed log-probability
# are exact functions of theta, so expectations are sums over the 4 outputs (no sampling noise).
LENGTHS = torch.tensor([1.0, 2.0, 3.0, 3.0], dtype=torch.float64)  # tokens generated per output


def _sequence_log_probs(theta: torch.Tensor) -> torch.Tensor:
    steps = torch.log_softmax(torch.stack([theta, torch.zeros_like(theta)], -1), -1)  # [step, (stop, go on)]
    go_on = torch.cumsum(steps[:, 1], 0)
    return torch.stack([steps[0, 0], go_on[0] + steps[1, 0], go_on[1] + steps[2, 0], go_on[2]])


def _expected_estimator_gradient(theta, d, estimator):
    """E_{y~pi}[grad of the estimator's loss at y], computed exactly by enumerating the outputs."""
    logp = _sequence_log_probs(theta)
    probs = logp.exp().detach()
    per_output = torch.stack([estimator(logp[k:k + 1], d[k:k + 1], k) for k in range(4)])
    return torch.autograd.grad((probs * per_output).sum(), theta)[0]


def test_reinforce_is_unbiased_on_unequal_lengths():
    theta = torch.tensor([0.4, -0.3, 0.8], dtype=torch.float64, requires_grad=True)
    d = torch.tensor([2.0, 0.5, 1.0, 1.0], dtype=torch.float64)  # distances of the four outputs
    assert torch.isclose(_sequence_log_probs(theta).exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    exact = torch.autograd.grad((_sequence_log_probs(theta).exp() * d).sum(), theta)[0]
    budget = 64.0
    for baseline in (0.0, 1.0, 5.0):  # any baseline independent of the sample: the same expectation
        got = _expected_estimator_gradient(theta, d, lambda lp, dk, k: reinforce_loss(lp, dk, baseline, budget))
        torch.testing.assert_close(got, exact / budget, atol=1e-12, rtol=0)

    def per_length(baseline):  # the estimator this replaced: log pi(y) / |y|, whose expectation moves with b
        return lambda lp, dk, k: ((dk - baseline) * lp / LENGTHS[k]).mean()

    low, high = (_expected_estimator_gradient(theta, d, per_length(b)) for b in (0.0, 5.0))
    assert (low - high).abs().max() > 0.1 * exact.abs().max()


def test_reinforce_on_equal_distances_has_no_expected_gradient():
    """Two outputs of equal distance and lengths 2 and 40 (the issue's case): the true gradient is 0, and so is the
    estimator's expectation at every baseline (the per-length one gave about ±0.12)."""
    theta = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    d = torch.tensor([1.0, 1.0], dtype=torch.float64)
    lengths = torch.tensor([2.0, 40.0], dtype=torch.float64)

    def expected(per_output):
        logp = torch.log_softmax(torch.cat([theta, torch.zeros(1, dtype=torch.float64)]), 0)
        terms = torch.stack([per_output(logp[k:k + 1], k) for k in range(2)])
        return torch.autograd.grad((logp.exp().detach() * terms).sum(), theta)[0].abs().item()

    for baseline in (0.0, 0.5, 3.0):
        assert expected(lambda lp, k: reinforce_loss(lp, d[k:k + 1], baseline, 64.0)) < 1e-12
    assert expected(lambda lp, k: ((d[k] - 0.0) * lp / lengths[k]).mean()) > 0.05  # the per-length one


def test_reinforce_monte_carlo_matches_the_exact_gradient():
    torch.manual_seed(0)
    theta = torch.tensor([0.3, -0.5, 1.0, 0.1, -1.2], dtype=torch.float64, requires_grad=True)
    d = torch.tensor([0.2, 1.5, 0.7, 3.0, 0.1], dtype=torch.float64)
    exact = torch.autograd.grad((torch.softmax(theta, 0) * d).sum(), theta)[0]
    n = 400_000
    samples = torch.multinomial(torch.softmax(theta.detach(), 0), n, replacement=True,
                                generator=torch.Generator().manual_seed(1))
    logp = torch.log_softmax(theta, 0)[samples]
    baselines = leave_one_out_baselines(d[samples])
    estimate = torch.autograd.grad(reinforce_loss(logp, d[samples], baselines, 1.0), theta)[0]
    torch.testing.assert_close(estimate, exact, atol=0.01, rtol=0)


def test_reinforce_values_leave_one_out_and_baseline_update():
    logp = torch.tensor([-10.0, -20.0], requires_grad=True)
    reinforce_loss(logp, torch.tensor([2.0, 0.0]), 1.0, 8.0).backward()
    torch.testing.assert_close(logp.grad, torch.tensor([(2 - 1) / 8 / 2, (0 - 1) / 8 / 2]))
    torch.testing.assert_close(leave_one_out_baselines(torch.tensor([1.0, 2.0, 6.0])), torch.tensor([4.0, 3.5, 1.5]))
    assert leave_one_out_baselines(torch.tensor([3.0])).tolist() == [0.0]
    with pytest.raises(ValueError, match="normalizer"):
        reinforce_loss(logp, torch.tensor([1.0, 1.0]), 0.0, 0.0)
    assert update_baseline(None, torch.tensor([1.0, 3.0])) == 2.0
    assert math.isclose(update_baseline(2.0, torch.tensor([4.0]), momentum=0.75), 2.5)
