"""Padding-free Bucket-SFT: packed rows give the padded batch's logits, losses and gradients, step for step."""

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
from polyalign.train.columns import per_token_column
from polyalign.train.examples import build_sft_examples, bucket_vocabulary
from polyalign.train.padding_free import check_packed_attention, packed_attention_gap
from polyalign.train.varlen_attention import NAME as VARLEN

torch.set_num_threads(1)

OFF = {"bucket_balance": False}
NORMALIZED = {"bucket_balance": True, "bucket_temperature": None, "bucket_normalize": True}
DRO = {**NORMALIZED, "dro": True, "dro_eta": 0.5}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("padding_free")
    model_dir = make_tiny_model_dir(root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = make_records(48, seed=5)
    names = bucket_vocabulary(records)
    examples, _ = build_sft_examples(records, tokenizer, {b: i for i, b in enumerate(names)}, max_length=96)
    return {"root": root, "model_dir": model_dir, "tokenizer": tokenizer, "names": names,
            "dataset": Dataset.from_list(examples)}


def _trainer(setup, *, padding_free: bool, balance=None, dataset=None, dtype=torch.float32, attention="sdpa", **kw):
    from transformers import AutoModelForCausalLM

    base = dict(output_dir=str(setup["root"] / "out"), bf16=False, gradient_checkpointing=False, save_strategy="no",
                report_to="none", max_length=96, learning_rate=1e-2, disable_tqdm=True, logging_steps=1, seed=0,
                train_sampling_strategy="sequential", dataloader_pin_memory=False, max_grad_norm=1e9,
                padding_free=padding_free, **(balance or OFF))
    base.update(kw)
    model = AutoModelForCausalLM.from_pretrained(setup["model_dir"], dtype=dtype, attn_implementation=attention)
    return BucketSFTTrainer(model=model, args=BucketSFTConfig(**base), processing_class=setup["tokenizer"],
                            train_dataset=setup["dataset"] if dataset is None else dataset,
                            bucket_names=setup["names"])


def _loss_and_grads(trainer, batch, num_items=None):
    trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)  # the step's global statistics
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters() if p.grad is not None])
    return loss.detach(), grads


def test_per_token_column_follows_the_packed_row() -> None:
    column = per_token_column([2, 0, 5], [3, 1, 2], 8, "bucket_index")
    assert column.tolist() == [[2, 2, 2, 0, 5, 5, 0, 0]]
    with pytest.raises(ValueError, match="do not fit"):
        per_token_column([1, 2], [4, 5], 8, "bucket_index")


def test_the_collated_row_carries_buckets_and_restarting_positions(setup) -> None:
    trainer = _trainer(setup, padding_free=True, balance=NORMALIZED, per_device_train_batch_size=4)
    batch = next(iter(trainer.get_train_dataloader()))
    rows = trainer.train_dataset.select(range(4))
    lengths = [len(ids) for ids in rows["input_ids"]]
    assert "attention_mask" not in batch and batch["input_ids"].shape == (1, sum(lengths))
    expected_positions = torch.cat([torch.arange(n) for n in lengths])
    assert batch["position_ids"][0].tolist() == expected_positions.tolist()
    expected_buckets = torch.repeat_interleave(torch.tensor(rows["bucket_index"]), torch.tensor(lengths))
    assert batch["bucket_index"][0].tolist() == expected_buckets.tolist()
    assert len(set(rows["bucket_index"])) > 1  # the row really mixes buckets


def test_packed_logits_equal_one_example_at_a_time_on_cpu(setup) -> None:
    from transformers import AutoModelForCausalLM

    for attention in ("sdpa", "eager", "sdpa_varlen"):
        model = AutoModelForCausalLM.from_pretrained(setup["model_dir"], attn_implementation=attention)
        assert packed_attention_gap(model) < 1e-5, attention


class _IgnoresPositions(torch.nn.Module):
    """A causal LM whose forward drops position_ids (as a model that builds its own positions and mask would)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, position_ids=None, **kwargs):
        return self.inner(input_ids=input_ids, use_cache=False)


def test_a_model_that_attends_across_packed_examples_is_refused(setup) -> None:
    from transformers import AutoModelForCausalLM

    model = _IgnoresPositions(AutoModelForCausalLM.from_pretrained(setup["model_dir"]))
    assert packed_attention_gap(model) > 1e-2
    with pytest.raises(ConfigError, match="attends across the examples of a packed row"):
        check_packed_attention(model)


@pytest.mark.parametrize("balance,attention", [(NORMALIZED, "sdpa"), (DRO, "sdpa"), (OFF, "sdpa"),
                                               (NORMALIZED, "sdpa_varlen")],
                         ids=["normalized", "dro", "token_mean", "normalized-sdpa_varlen"])
def test_packed_loss_and_gradients_equal_the_padded_batch_float64(setup, balance, attention) -> None:
    padded = _trainer(setup, padding_free=False, balance=balance, per_device_train_batch_size=8,
                      dtype=torch.float64)
    packed = _trainer(setup, padding_free=True, balance=balance, per_device_train_batch_size=8, dtype=torch.float64,
                      attention=attention)
    assert packed.model.config._attn_implementation == attention
    assert packed.padding_free and not padded.padding_free
    a = next(iter(padded.get_train_dataloader()))
    b = next(iter(packed.get_train_dataloader()))
    assert "attention_mask" in a and "attention_mask" not in b and (a["attention_mask"] == 0).any()  # real padding
    num_items = None if balance is not OFF else (a["labels"][:, 1:] != -100).sum() * 3  # as if GA = 3
    loss_a, grad_a = _loss_and_grads(padded, a, num_items)
    loss_b, grad_b = _loss_and_grads(packed, b, num_items)
    assert next(packed.model.parameters()).dtype == torch.float64  # the backbone; TRL scores the head in float32
    assert abs(loss_b.item() - loss_a.item()) <= 1e-6 * abs(loss_a.item())
    # the LM head is scored in float32 by TRL's fused head: gradients agree to float32 rounding of the head
    assert torch.linalg.vector_norm(grad_b - grad_a) <= 1e-6 * torch.linalg.vector_norm(grad_a)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-5, atol=1e-7)
    if balance is not OFF:  # and the per-bucket normalizer really changed the loss (not a token mean)
        assert abs(loss_a.item() - _token_mean(padded, a)) > 1e-4
        torch.testing.assert_close(padded.step_stats["bucket_tokens"], packed.step_stats["bucket_tokens"])


def _token_mean(trainer, batch) -> float:
    with torch.no_grad():
        out = trainer.model(**{k: v for k, v in batch.items() if k != "bucket_index"}, fused_lm_head=True,
                            use_cache=False)
    return float(-out.log_probs.sum() / out.label_mask.sum())


def _one_step(setup, *, padding_free: bool, micro: int, accumulation: int, balance: dict):
    trainer = _trainer(setup, padding_free=padding_free, balance=balance, per_device_train_batch_size=micro,
                       gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd",
                       dataset=setup["dataset"].select(range(8)))  # SGD: the update is linear in the gradient
    trainer.train()
    params = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
    return trainer.state.log_history[0], params


@pytest.mark.parametrize("micro,accumulation", [(1, 8), (4, 2)])
def test_global_normalizer_holds_across_accumulation_padding_free(setup, micro, accumulation) -> None:
    ref_log, ref_params = _one_step(setup, padding_free=False, micro=8, accumulation=1, balance=NORMALIZED)
    log, params = _one_step(setup, padding_free=True, micro=micro, accumulation=accumulation, balance=NORMALIZED)
    assert log["loss"] == pytest.approx(ref_log["loss"], rel=1e-5)
    assert log["grad_norm"] == pytest.approx(ref_log["grad_norm"], rel=1e-4)
    torch.testing.assert_close(params, ref_params, rtol=1e-4, atol=1e-6)


def test_training_run_logs_the_same_bucket_losses_padded_and_padding_free(setup, tmp_path) -> None:
    summaries = {}
    for padding_free in (False, True):
        out = tmp_path / f"pf-{padding_free}"
        trainer = _trainer(setup, padding_free=padding_free, balance=DRO, per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, max_steps=3, logging_steps=1, output_dir=str(out))
        trainer.train()
        trainer.evaluate(eval_dataset=setup["dataset"].select(range(16)))
        rows = [json.loads(line) for line in (out / "bucket_losses.jsonl").read_text().splitlines()]
        summaries[padding_free] = (rows, trainer.dro_weights.clone())
    (rows_a, dro_a), (rows_b, dro_b) = summaries[False], summaries[True]
    assert [r["split"] for r in rows_a] == [r["split"] for r in rows_b] == ["train"] * 3 + ["eval"]
    for ra, rb in zip(rows_a, rows_b):
        assert ra["buckets"].keys() == rb["buckets"].keys()
        for name, value in ra["buckets"].items():
            assert rb["buckets"][name]["tokens"] == value["tokens"]
            assert rb["buckets"][name]["loss"] == pytest.approx(value["loss"], rel=1e-4)
    torch.testing.assert_close(dro_b, dro_a, rtol=1e-4, atol=1e-6)


def test_padding_free_truncates_like_the_padded_run_and_packing_is_refused(setup) -> None:
    padded = _trainer(setup, padding_free=False, max_length=40)
    packed = _trainer(setup, padding_free=True, max_length=40)
    assert packed.args.max_length == 40  # restored after TRL's check
    assert max(len(x) for x in packed.train_dataset["input_ids"]) == 40  # the cut really happened
    assert packed.train_dataset["input_ids"] == padded.train_dataset["input_ids"]
    assert packed.train_dataset["labels"] == padded.train_dataset["labels"]
    with pytest.raises(ConfigError, match="packing"):
        _trainer(setup, padding_free=True, packing=True, balance=NORMALIZED, per_device_train_batch_size=2)


def test_run_config_passes_padding_free_to_the_trainer(tmp_path: Path) -> None:
    from polyalign.train.sft import SFTRunConfig, make_sft_args

    config = SFTRunConfig(model="m", data="d", output_dir=str(tmp_path / "o"),
                          training={"padding_free": True, "per_device_train_batch_size": 4})
    args = make_sft_args(config, tmp_path / "w", assistant_only_loss=True)
    assert args.padding_free is True and args.max_length == config.max_length


def test_train_sft_padding_free_end_to_end_with_the_chosen_attention(setup, tmp_path: Path) -> None:
    from records_factory import write_data_dir
    from transformers import TrainerCallback

    from polyalign.train.sft import SFTRunConfig, run_sft

    data = write_data_dir(tmp_path / "data", {"train": make_records(40, 0), "val": make_records(16, 1, "val")})
    seen = {}

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
            seen["attention"], seen["padding_free"] = model.config._attn_implementation, args.padding_free

    config = SFTRunConfig(model=str(setup["model_dir"]), data=str(data), output_dir=str(tmp_path / "out"),
                          max_length=96, max_eval_samples=8,
                          balance={"enabled": True, "dro": {"enabled": True}},
                          training={"max_steps": 2, "per_device_train_batch_size": 4, "padding_free": True,
                                    "model_init_kwargs": {"attn_implementation": "sdpa_varlen"},
                                    "save_strategy": "no",
                                    "dataloader_pin_memory": False})
    out = run_sft(config, callbacks=[Spy()])
    assert seen == {"attention": "sdpa_varlen", "padding_free": True}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_steps"] == 2 and set(manifest["final_bucket_losses"]) == {"train", "val"}


def test_sdpa_varlen_is_sdpa_on_padded_batches(setup) -> None:
    from transformers import AutoModelForCausalLM

    trainer = _trainer(setup, padding_free=False, per_device_train_batch_size=8)
    batch = {k: v for k, v in next(iter(trainer.get_train_dataloader())).items() if k != "bucket_index"}
    assert (batch["attention_mask"] == 0).any()
    logits = {}
    for attention in ("sdpa", VARLEN):
        model = AutoModelForCausalLM.from_pretrained(setup["model_dir"], attn_implementation=attention).eval()
        with torch.no_grad():
            logits[attention] = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits[VARLEN][real], logits["sdpa"][real], rtol=0, atol=1e-6)
