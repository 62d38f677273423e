"""Preference pairs fitted to the token budget: no kept pair loses the end of either completion (the prompt is cut
from the left; a pair that cannot fit is dropped and counted), checked on the ids the trainer really trains."""

from __future__ import annotations

import pytest
import torch
from hdpo_trainer_fixtures import make_pair_rows
from model_factory import make_tiny_model_dir

from polyalign.models.loading import load_tokenizer, template_end_of_turn_ids
from polyalign.train.hdpo import build_pair_examples, chat_lengths_as_trained

torch.set_num_threads(1)
MAX_LENGTH = 64


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(make_tiny_model_dir(tmp_path_factory.mktemp("pairs_fit")), padding_side="right", chat=True)


def _rows():
    rows = make_pair_rows(24, seed=5)
    long_text = " ".join(["word"] * 200)
    rows[0] = {**rows[0], "chosen": long_text}                        # the chosen alone cannot fit
    rows[1] = {**rows[1], "rejected": long_text}                      # the rejected alone cannot fit
    rows[2] = {**rows[2], "prompt": [{"role": "user", "content": long_text + " ?"}]}  # fits once the prompt is cut
    return rows


def test_no_kept_pair_loses_the_end_of_a_completion(tokenizer, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from polyalign.train.hdpo_config import HDPOConfig
    from polyalign.train.hdpo_trainer import HDPOTrainer

    rows = _rows()
    buckets = sorted({r["bucket_id"] for r in rows})
    examples, stats = build_pair_examples(rows, tokenizer, {b: i for i, b in enumerate(buckets)}, {"en": 0, "zh": 1},
                                          max_length=MAX_LENGTH, min_prompt_tokens=8)
    kept_prompts = [ex["prompt"] for ex in examples]
    assert stats.n_dropped_too_long >= 2 and stats.n_examples == len(examples) == len(rows) - stats.n_dropped_too_long
    assert rows[2]["prompt"] not in kept_prompts and any(p[-1]["content"].endswith(" ?") for p in kept_prompts)
    assert stats.n_prompt_truncated >= 1

    model_dir = make_tiny_model_dir(tmp_path)
    args = HDPOConfig(output_dir=str(tmp_path / "out"), bf16=False, report_to="none", max_length=MAX_LENGTH,
                      disable_tqdm=True, precompute_ref_log_probs=False)
    trainer = HDPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                          train_dataset=Dataset.from_list(examples), processing_class=tokenizer, bucket_names=buckets,
                          language_names=["en", "zh"])
    eot = template_end_of_turn_ids(tokenizer)
    assert len(trainer.train_dataset) == len(examples)
    for example in trainer.train_dataset:
        for side in ("chosen_ids", "rejected_ids"):
            assert len(example["prompt_ids"]) + len(example[side]) <= MAX_LENGTH  # the collator cuts nothing
            assert example[side][-1] in eot


def test_lengths_as_trained_against_a_direct_count(tokenizer):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    ids = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    eot = template_end_of_turn_ids(tokenizer)
    last = max(i for i, t in enumerate(ids) if t in eot)
    assert chat_lengths_as_trained(tokenizer, [chat]) == [last + 1]
