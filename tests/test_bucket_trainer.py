"""Contract tests of BucketSFTTrainer against TRL 1.16 / transformers 5.24 internals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_factory import make_tiny_model_dir
from records_factory import make_records

from polyalign.errors import ConfigError
from polyalign.train.bucket_sft_config import BucketSFTConfig
from polyalign.train.bucket_trainer import BucketSFTTrainer
from polyalign.train.examples import build_sft_examples, bucket_vocabulary

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("bucket_trainer")
    model_dir = make_tiny_model_dir(root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = make_records(64, seed=3)
    names = bucket_vocabulary(records)
    examples, _ = build_sft_examples(records, tokenizer, {b: i for i, b in enumerate(names)}, max_length=96)
    return {"root": root, "model_dir": model_dir, "tokenizer": tokenizer, "names": names,
            "dataset": Dataset.from_list(examples)}


# Balance options of BucketSFTConfig: off is plain SFT; NORMALIZED is the bucket-normalized loss alone.
OFF = {"bucket_balance": False}
NORMALIZED = {"bucket_balance": True, "bucket_temperature": None, "bucket_normalize": True}


def _args(out: Path, config_cls=BucketSFTConfig, **kw):
    base = dict(output_dir=str(out), bf16=False, gradient_checkpointing=False, save_strategy="no", report_to="none",
                max_length=96, learning_rate=1e-2, disable_tqdm=True, logging_steps=1, seed=0,
                train_sampling_strategy="sequential", dataloader_pin_memory=False, max_grad_norm=1e9)
    base.update(kw)
    return config_cls(**base)


def _trainer(setup, cls=BucketSFTTrainer, dataset=None, balance=None, **kw):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    model = AutoModelForCausalLM.from_pretrained(setup["model_dir"])
    if cls is BucketSFTTrainer:
        args, extra = _args(setup["root"] / "out", **(balance or OFF), **kw), {"bucket_names": setup["names"]}
    else:
        args, extra = _args(setup["root"] / "out", SFTConfig, **kw), {}
    return cls(model=model, args=args, train_dataset=dataset if dataset is not None else setup["dataset"],
               processing_class=setup["tokenizer"], **extra)


def _first_batch(trainer, n=None):
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    return batches if n is None else batches[:n]


def test_extra_columns_survive_the_collator_and_are_stripped_before_forward(setup) -> None:
    trainer = _trainer(setup, balance=NORMALIZED, per_device_train_batch_size=4, max_steps=1)
    seen_in_loss, seen_in_forward = [], []
    original = trainer.compute_loss

    def spy_loss(model, inputs, *a, **k):
        seen_in_loss.append(inputs.get("bucket_index"))
        return original(model, inputs, *a, **k)

    trainer.compute_loss = spy_loss
    hook = trainer.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen_in_forward.append(sorted(kwargs)), with_kwargs=True)
    trainer.train()
    hook.remove()
    assert seen_in_loss and isinstance(seen_in_loss[0], torch.Tensor)
    assert seen_in_loss[0].tolist() == setup["dataset"]["bucket_index"][:4]  # sequential sampler
    assert seen_in_forward and all("bucket_index" not in keys for keys in seen_in_forward)


def test_bucket_normalized_loss_equals_independent_per_bucket_computation(setup) -> None:
    trainer = _trainer(setup, balance=NORMALIZED, per_device_train_batch_size=8)
    batch = _first_batch(trainer, 1)[0]
    trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)  # global statistics of this step
    trainer.model.train()
    got = trainer.compute_loss(trainer.model, dict(batch)).item()

    with torch.no_grad():  # independent: full logits, float64 log-softmax, mean per bucket, mean over buckets
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    per_bucket = {}
    for b in batch["bucket_index"].unique().tolist():
        rows = batch["bucket_index"] == b
        per_bucket[b] = nll[rows][mask[rows]].mean().item()
    expected = sum(per_bucket.values()) / len(per_bucket)
    assert len(per_bucket) >= 3
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("with_num_items", [True, False])
def test_balancing_off_equals_trl_token_mean_loss(setup, with_num_items: bool) -> None:
    from trl import SFTTrainer

    from polyalign.train.end_of_turn import EndOfTurnLabelsMixin

    # TRL's SFTTrainer with our label rule (labels end at the end of turn, none on a cut response's end): the
    # only data-side difference, tested in test_models_import.py and below
    trl_cls = type("TRLSFTTrainer", (EndOfTurnLabelsMixin, SFTTrainer), {})
    ours = _trainer(setup, balance=OFF, per_device_train_batch_size=8)
    theirs = _trainer(setup, cls=trl_cls, dataset=setup["dataset"].remove_columns(["bucket_id", "bucket_index"]),
                      per_device_train_batch_size=8)
    batch = _first_batch(ours, 1)[0]
    n_items = (batch["labels"][:, 1:] != -100).sum() * 3 if with_num_items else None  # as if GA = 3
    ours.model.train()
    theirs.model.train()
    a = ours.compute_loss(ours.model, dict(batch), num_items_in_batch=n_items)
    their_batch = {k: v for k, v in batch.items() if k != "bucket_index"}
    b = theirs.compute_loss(theirs.model, their_batch, num_items_in_batch=n_items)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert ours.loss_is_scaled_for_ga is None  # GA scaling decided by the Trainer exactly as for SFTTrainer


def _one_step(setup, micro: int, accumulation: int, balance: dict):
    trainer = _trainer(setup, balance=balance, per_device_train_batch_size=micro,
                       gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd",
                       dataset=setup["dataset"].select(range(8)))  # SGD: the update is linear in the gradient
    trainer.train()
    log = trainer.state.log_history[0]
    params = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
    return log["loss"], log["grad_norm"], params


def test_balanced_loss_micro_batch_1_ga_8_equals_micro_batch_8(setup) -> None:
    balance = NORMALIZED
    loss8, norm8, params8 = _one_step(setup, 8, 1, balance)
    loss1, norm1, params1 = _one_step(setup, 1, 8, balance)
    assert loss1 == pytest.approx(loss8, rel=1e-5)
    assert norm1 == pytest.approx(norm8, rel=1e-4)
    torch.testing.assert_close(params1, params8, rtol=1e-4, atol=1e-6)
    # and it is not the token mean (the buckets really are re-weighted)
    token_loss, _, _ = _one_step(setup, 8, 1, OFF)
    assert abs(token_loss - loss8) > 1e-3


def test_per_bucket_losses_are_logged(setup, tmp_path) -> None:
    trainer = _trainer(setup, balance={**NORMALIZED, "bucket_temperature": 2.0, "dro": True, "dro_eta": 0.5},
                       per_device_train_batch_size=4, max_steps=4, logging_steps=2,
                       output_dir=str(tmp_path / "logged"), report_to="tensorboard")
    trainer.train()
    trainer.evaluate(eval_dataset=setup["dataset"].select(range(16)))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert any(k.startswith("bucket_loss/") for k in logs[0]) and "bucket_loss_spread" in logs[0]
    rows = [json.loads(line) for line in (tmp_path / "logged" / "bucket_losses.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train", "train", "eval"]
    assert rows[0]["buckets"] and "dro_weights" in rows[0]
    assert sum(rows[1]["dro_weights"].values()) == pytest.approx(1.0, abs=1e-4)
    assert trainer.loss_is_scaled_for_ga is True
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "logged").rglob("events.out.tfevents*")).parent)).Reload()
    tags = events.Tags()["scalars"]
    assert "train/bucket_loss_spread" in tags and any(t.startswith("train/bucket_loss/") for t in tags)
    assert any(t.startswith("eval/eval_bucket_loss/") or t.startswith("eval/bucket_loss/") for t in tags), tags


def test_missing_bucket_column_and_bad_settings_are_clear_errors(setup, tmp_path) -> None:
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    with pytest.raises(ConfigError, match="no 'bucket_index' column"):
        _trainer(setup, dataset=setup["dataset"].remove_columns(["bucket_index"]))
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        _args(tmp_path, bucket_balance=True, bucket_temperature=0.0)
    with pytest.raises(ConfigError, match="needs balance.normalize"):
        _args(tmp_path, bucket_balance=True, bucket_normalize=False, dro=True)
    with pytest.raises(ConfigError, match="packing"):
        _trainer(setup, balance=NORMALIZED, packing=True, padding_free=True, per_device_train_batch_size=2)
    with pytest.raises(ConfigError, match="needs args=BucketSFTConfig"):  # its options live in its config only
        BucketSFTTrainer(model=AutoModelForCausalLM.from_pretrained(setup["model_dir"]),
                         args=_args(tmp_path, SFTConfig), train_dataset=setup["dataset"],
                         processing_class=setup["tokenizer"], bucket_names=setup["names"])


def test_a_cut_response_does_not_train_its_end_of_turn(setup) -> None:
    from polyalign.models.loading import template_end_of_turn_ids

    dataset = setup["dataset"]
    cut = [i for i, c in enumerate(dataset["completion_cut"]) if c]
    whole = [i for i, c in enumerate(dataset["completion_cut"]) if not c]
    assert cut and whole  # max_length 96 cuts some of the synthetic responses
    trainer = _trainer(setup, balance=OFF)
    eot = set(template_end_of_turn_ids(setup["tokenizer"]))
    for i in cut[:5] + whole[:5]:
        labels = [t for t in trainer.train_dataset[i]["labels"] if t != -100]
        assert (labels[-1] in eot) == (i in whole)  # a whole response learns to stop; a cut one does not
        assert not any(t in eot for t in labels[:-1])
