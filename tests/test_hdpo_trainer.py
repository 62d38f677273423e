"""Contract tests of HDPOTrainer against TRL 1.16's DPOTrainer: equality with TRL's sigmoid loss and training
curve, a gradient path for every term, gradient-accumulation invariance of the pair weights, the extra columns
through the collator, and the critic never called per step unless the on-policy term is on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hdpo_trainer_fixtures import make_pair_rows, pair_dataset
from model_factory import make_tiny_model_dir

from polyalign.errors import ConfigError
from polyalign.train.hdpo_config import HDPOConfig
from polyalign.train.hdpo_trainer import PAIR_COLUMNS, HDPOTrainer

torch.set_num_threads(1)
MAX_LENGTH = 96


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("hdpo_trainer")
    model_dir = make_tiny_model_dir(root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = make_pair_rows(64, seed=1)  # about half fit MAX_LENGTH whole (the others are dropped)
    dataset, buckets, languages = pair_dataset(rows, tokenizer, MAX_LENGTH)
    return {"root": root, "model_dir": model_dir, "tokenizer": tokenizer, "rows": rows, "dataset": dataset,
            "buckets": buckets, "languages": languages}


def _args(out: Path, config_cls=HDPOConfig, **kw):
    base = dict(output_dir=str(out), bf16=False, gradient_checkpointing=False, save_strategy="no", report_to="none",
                max_length=MAX_LENGTH, learning_rate=5e-3, disable_tqdm=True, logging_steps=1, seed=0,
                per_device_train_batch_size=4, train_sampling_strategy="sequential", dataloader_pin_memory=False,
                max_grad_norm=1e9, precompute_ref_log_probs=True, max_steps=1)
    base.update(kw)
    return config_cls(**base)


def _model(setup):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(setup["model_dir"])


# HDPOConfig options (plain numbers): PLAIN is sigmoid DPO with beta = 0.1; the default adds the pair weights.
PLAIN = {"reg_lambda": 0.0, "anchor_gamma": 0.0, "use_weights": False}
WEIGHTED = {"reg_lambda": 0.0, "anchor_gamma": 0.0}


def _hdpo(setup, settings: dict | None = None, dataset=None, critic=None, **kw) -> HDPOTrainer:
    args = _args(setup["root"] / "hdpo", **(WEIGHTED if settings is None else settings), **kw)
    ref = None if args.precompute_ref_log_probs else _model(setup)
    return HDPOTrainer(model=_model(setup), ref_model=ref, args=args,
                       train_dataset=dataset if dataset is not None else setup["dataset"],
                       processing_class=setup["tokenizer"], bucket_names=setup["buckets"],
                       language_names=setup["languages"], critic=critic)


def _trl(setup, **kw):
    """TRL's DPOTrainer on the same data, with completions ending at the end of turn as ours (its only data-side
    difference, tested in test_models_import.py)."""
    from trl import DPOConfig, DPOTrainer

    from polyalign.train.end_of_turn import EndOfTurnCompletionsMixin

    args = _args(setup["root"] / "trl", DPOConfig, **kw)
    ref = None if args.precompute_ref_log_probs else _model(setup)
    trainer_cls = type("TRLDPOTrainer", (EndOfTurnCompletionsMixin, DPOTrainer), {})
    return trainer_cls(model=_model(setup), ref_model=ref, args=args,
                      train_dataset=setup["dataset"].remove_columns(list(PAIR_COLUMNS)),
                      processing_class=setup["tokenizer"])


def _first_batch(trainer) -> dict:
    return next(iter(trainer.get_train_dataloader()))


def _set_step_stats(trainer, batch) -> None:
    """What get_batch_samples would compute for a step made of this one micro-batch."""
    trainer.step_stats = trainer.step_statistics([batch])


@pytest.mark.parametrize("precompute", [True, False])
def test_plain_settings_equal_trl_sigmoid_loss_on_the_same_batch(setup, precompute: bool) -> None:
    ours, theirs = _hdpo(setup, PLAIN, precompute_ref_log_probs=precompute), _trl(
        setup, precompute_ref_log_probs=precompute)
    batch = _first_batch(ours)
    trl_batch = _first_batch(theirs)
    assert torch.equal(batch["input_ids"], trl_batch["input_ids"])  # same collated sequences
    # move the policy away from the reference so that the loss is not log 2 everywhere
    torch.manual_seed(0)
    with torch.no_grad():
        for p_ours, p_trl in zip(ours.model.parameters(), theirs.model.parameters()):
            p_ours.add_(torch.randn_like(p_ours) * 0.05)
            p_trl.copy_(p_ours)
    ours.model.train(), theirs.model.train()
    _set_step_stats(ours, batch)
    loss_ours = ours.compute_loss(ours.model, dict(batch))
    loss_trl = theirs.compute_loss(theirs.model, dict(trl_batch))
    assert abs(float(loss_trl.detach()) - np.log(2)) > 1e-3
    assert abs(float(loss_ours.detach()) - float(loss_trl.detach())) < 1e-6
    # the policy log-probs of our forward equal TRL's (its logged logps/*)
    for key in ("logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies"):
        assert ours._metrics["train"][key][-1] == pytest.approx(theirs._metrics["train"][key][-1], abs=1e-5), key
    # and the gradients equal TRL's
    loss_ours.backward(), loss_trl.backward()
    for (name, a), b in zip(ours.model.named_parameters(), theirs.model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_plain_settings_reproduce_trl_training_curve(setup) -> None:
    kw = dict(max_steps=6, gradient_accumulation_steps=2, per_device_train_batch_size=2)
    # every step full (6 x 2 x 2 pairs): on a ragged last step HDPO averages per pair, TRL per micro-batch
    assert len(setup["dataset"]) >= 24
    ours, theirs = _hdpo(setup, PLAIN, **kw), _trl(setup, **kw)
    ours.train(), theirs.train()
    a = [h for h in ours.state.log_history if "loss" in h]
    b = [h for h in theirs.state.log_history if "loss" in h]
    assert len(a) == len(b) == 6
    np.testing.assert_allclose([h["loss"] for h in a], [h["loss"] for h in b], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([h["grad_norm"] for h in a], [h["grad_norm"] for h in b], rtol=1e-4)
    np.testing.assert_allclose([h["rewards/margins"] for h in a], [h["rewards/margins"] for h in b], atol=1e-5)
    for p, q in zip(ours.model.parameters(), theirs.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert b[-1]["rewards/margins"] != 0.0  # it really trained


# ---- every term has a gradient path ------------------------------------------------------------------------------


class LengthCritic:
    """A stand-in critic: distance = characters / 40 (texts differ in length, so distances differ)."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, texts, languages, bucket_ids, unknown="error"):
        self.calls += 1
        return np.array([len(t) / 40.0 for t in texts])


def _grad(setup, settings: dict, dataset=None, critic=None) -> torch.Tensor:
    trainer = _hdpo(setup, settings, dataset=dataset, critic=critic)
    batch = _first_batch(trainer)
    trainer.model.train()
    # move the policy off the reference (at policy = reference the offset and DPO terms are symmetric)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    _set_step_stats(trainer, batch)
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, dict(batch)).backward()
    return torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters() if p.grad is not None])


def _with_equal_distances(dataset):
    return dataset.map(lambda ex: {"d_rejected": ex["d_chosen"]})


@pytest.mark.parametrize("term", ["reg_expected", "reg_offset", "anchor", "weights", "on_policy"])
def test_every_enabled_term_moves_the_gradient(setup, term: str) -> None:
    base = PLAIN
    term_kw = {"reg_expected": dict(reg_lambda=1.0, reg_form="expected"),
               "reg_offset": dict(reg_lambda=1.0, reg_form="offset"), "anchor": dict(anchor_gamma=0.5),
               "weights": dict(use_weights=True),
               "on_policy": dict(on_policy=True, on_policy_lambda=1.0, on_policy_every_n_steps=1,
                                 on_policy_max_new_tokens=8)}[term]
    on = {**PLAIN, **term_kw}
    g_off, g_on = _grad(setup, base), _grad(setup, on, critic=LengthCritic() if term == "on_policy" else None)
    difference = float((g_on - g_off).norm())
    assert difference > 1e-4 * float(g_off.norm()), f"{term}: no gradient ({difference:.3g})"
    if term.startswith("reg_"):  # the regularizer's gradient comes from d+ != d-: equal distances give none
        same = _with_equal_distances(setup["dataset"])
        g_same_off, g_same_on = _grad(setup, base, same), _grad(setup, on, same)
        assert float((g_same_on - g_same_off).norm()) < 1e-6 * float(g_same_off.norm())


# ---- micro-batch 1 x GA 8 == micro-batch 8 -----------------------------------------------------------------------


def _one_step(setup, settings, micro: int, accumulation: int) -> tuple[torch.Tensor, float]:
    trainer = _hdpo(setup, settings, per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation,
                    optim="sgd", learning_rate=0.5, max_steps=1)
    trainer.train()
    params = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
    return params, [h for h in trainer.state.log_history if "loss" in h][0]["loss"]


def test_pair_weights_are_invariant_to_micro_batching(setup) -> None:
    settings = {"reg_lambda": 0.5, "anchor_gamma": 0.2, "use_weights": True}
    assert len(set(setup["dataset"]["weight"][:8])) > 4  # non-uniform weights in the step
    p8, loss8 = _one_step(setup, settings, 8, 1)
    p1, loss1 = _one_step(setup, settings, 1, 8)
    torch.testing.assert_close(p1, p8, rtol=1e-5, atol=1e-7)
    assert loss1 == pytest.approx(loss8, rel=1e-5)
    # the weights do matter: uniform weights give other parameters (a test that can fail)
    p_uniform, _ = _one_step(setup, {**settings, "use_weights": False}, 1, 8)
    assert float((p_uniform - p1).abs().max()) > 1e-5


# ---- extra columns -----------------------------------------------------------------------------------------------


def test_pair_columns_survive_the_collator_and_never_reach_the_model(setup) -> None:
    trainer = _hdpo(setup, {**WEIGHTED, "reg_lambda": 0.1}, max_steps=1)
    seen, forwarded = [], []
    original = trainer.compute_loss

    def spy(model, inputs, *a, **k):
        seen.append({c: inputs.get(c) for c in PAIR_COLUMNS})
        return original(model, inputs, *a, **k)

    trainer.compute_loss = spy
    hook = trainer.model.register_forward_pre_hook(lambda m, a, kw: forwarded.append(sorted(kw)), with_kwargs=True)
    trainer.train()
    hook.remove()
    ds = setup["dataset"]
    for column in PAIR_COLUMNS:
        assert isinstance(seen[0][column], torch.Tensor), column
        np.testing.assert_allclose(seen[0][column].tolist(), ds[column][:4], rtol=1e-6)
    assert forwarded and not any(set(PAIR_COLUMNS) & set(keys) for keys in forwarded)


def test_missing_pair_column_is_a_clear_error(setup) -> None:
    with pytest.raises(ConfigError, match="d_rejected"):
        _hdpo(setup, dataset=setup["dataset"].remove_columns(["d_rejected"]))


def test_beta_is_set_once_and_a_plain_dpo_config_is_refused(setup) -> None:
    from trl import DPOConfig

    # beta is trl.DPOConfig's own field, and the loss reads that field: the two cannot disagree
    assert _args(setup["root"] / "b", beta=0.3).loss_kwargs()["beta"] == 0.3
    with pytest.raises(ConfigError, match="needs args=HDPOConfig"):
        HDPOTrainer(model=_model(setup), args=DPOConfig(output_dir=str(setup["root"] / "b"), beta=0.3, bf16=False,
                                                        report_to="none"),
                    train_dataset=setup["dataset"], processing_class=setup["tokenizer"],
                    bucket_names=setup["buckets"], language_names=setup["languages"])
    with pytest.raises(ConfigError, match="critic"):  # the on-policy term needs a critic object
        _hdpo(setup, {**WEIGHTED, "on_policy": True})


# ---- the critic is never called per step unless the on-policy term is on ------------------------------------------


def test_critic_is_called_only_on_on_policy_steps(setup) -> None:
    critic = LengthCritic()
    on = {"on_policy": True, "on_policy_lambda": 0.1, "on_policy_every_n_steps": 2, "on_policy_max_new_tokens": 8}
    trainer = _hdpo(setup, {**WEIGHTED, "reg_lambda": 0.1, **on}, critic=critic, max_steps=4,
                    per_device_train_batch_size=2)
    trainer.train()
    assert critic.calls == 2  # steps 0 and 2
    assert trainer.on_policy_calls == 2 and 0 < trainer.on_policy_time_share < 1
    logged = [h for h in trainer.state.log_history if "on_policy/distance" in h]
    assert len(logged) == 2 and all(h["on_policy/distance"] > 0 for h in logged)
