"""Records → SFT examples: format, profile, fitting to a token budget (prompt cut from the left), subsets."""

from __future__ import annotations

from collections import Counter

import pytest
from model_factory import make_tiny_model_dir
from records_factory import make_records

from polyalign.data.stratify import random_subset, stratified_sample
from polyalign.errors import InputError
from polyalign.models.chat import chat_token_count, fit_chat, prompt_messages
from polyalign.train.examples import build_sft_examples, bucket_vocabulary, record_example


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(make_tiny_model_dir(tmp_path_factory.mktemp("ex")))


def test_example_is_trl_prompt_completion_with_bucket_columns() -> None:
    record = next(r for r in make_records(40, 0) if r.history and r.track == "multi")
    ex = record_example(record, {record.bucket_id: 3}, profile=True)
    assert ex["completion"] == [{"role": "assistant", "content": record.response}]
    assert ex["prompt"][0]["role"] == "system" and record.length_bin not in ex["prompt"][0]["content"]
    assert ex["prompt"][1:] == prompt_messages(record, False)
    assert ex["bucket_id"] == record.bucket_id and ex["bucket_index"] == 3


def test_fit_drops_oldest_turns_first_then_cuts_the_context(tokenizer) -> None:
    history = []
    for i in range(4):
        history += [{"role": "user", "content": f"old question {i} " * 8},
                    {"role": "assistant", "content": f"old answer {i} " * 8}]
    prompt = [{"role": "system", "content": "sys"}, *history, {"role": "user", "content": "CONTEXT " * 30 + "Q?"}]
    response = "the answer is here"
    full = chat_token_count(tokenizer, prompt, response)
    budget = full - 30
    fit = fit_chat(tokenizer, prompt, response, budget)
    assert fit.n_tokens <= budget and fit.completion == response and not fit.completion_truncated
    assert fit.prompt[0]["content"] == "sys" and fit.dropped_turns >= 2
    kept = [m["content"] for m in fit.prompt[1:-1]]
    assert all("old question 0" not in c for c in kept)  # the oldest pair went first
    assert fit.prompt[-1]["content"].endswith("Q?")
    # a budget too small for any history: all history goes, then the start of the user turn (context first)
    tight = chat_token_count(tokenizer, [prompt[0], prompt[-1]], response) - 20
    fit = fit_chat(tokenizer, prompt, response, tight)
    assert len(fit.prompt) == 2 and fit.prompt_tokens_cut > 0 and fit.prompt[-1]["content"].endswith("Q?")
    assert fit.n_tokens <= tight and fit.completion == response


def test_fit_cuts_a_long_response_at_its_end_keeping_some_prompt(tokenizer) -> None:
    prompt = [{"role": "user", "content": "short question " * 20}]
    response = "word " * 400
    fit = fit_chat(tokenizer, prompt, response, 120, min_prompt_tokens=16)
    assert fit.n_tokens <= 120 and fit.completion_truncated and response.startswith(fit.completion)
    assert len(tokenizer(fit.prompt[-1]["content"], add_special_tokens=False)["input_ids"]) >= 15
    # generation (no completion): the user turn is cut as far as needed
    fit = fit_chat(tokenizer, [{"role": "user", "content": "x y z " * 300}], None, 40)
    assert fit.n_tokens <= 40 and chat_token_count(tokenizer, fit.prompt) == fit.n_tokens


def test_build_examples_fits_every_example_and_counts_cuts(tokenizer) -> None:
    records = make_records(120, 1)
    index = {b: i for i, b in enumerate(bucket_vocabulary(records))}
    examples, stats = build_sft_examples(records, tokenizer, index, max_length=96)
    assert stats.n_examples == 120 and stats.n_prompt_truncated > 0 and stats.n_response_truncated > 0
    for ex in examples:
        assert chat_token_count(tokenizer, ex["prompt"], ex["completion"][0]["content"]) <= 96
        assert ex["completion"][0]["content"]
    untouched, stats0 = build_sft_examples(records, tokenizer, index, max_length=None)
    assert stats0.n_prompt_truncated == 0 and untouched[0]["completion"][0]["content"] == records[0].response


def test_missing_bucket_id_is_an_input_error() -> None:
    records = make_records(5, 0)
    records[2].bucket_id = ""
    with pytest.raises(InputError, match="bucket_id"):
        bucket_vocabulary(records)


def test_subsets_are_seeded_and_stratified() -> None:
    records = make_records(300, 0)
    assert random_subset(records, 50, 1) == random_subset(records, 50, 1)
    assert random_subset(records, 50, 1) != random_subset(records, 50, 2)
    strat = stratified_sample(records, 0, total=40, order="input")
    counts = Counter(r.bucket_id for r in strat)
    assert len(strat) == 40 and set(counts) == {r.bucket_id for r in records}  # every bucket represented
    assert random_subset(records, None, 0) == records


def test_pretrim_drops_only_what_fit_would_drop(tokenizer) -> None:
    from polyalign.models.chat import pretrim_history

    history = []
    for i in range(30):
        history += [{"role": "user", "content": f"question number {i} about trains and coffee " * 3},
                    {"role": "assistant", "content": f"答案 {i}：我觉得火车票很便宜。" * 2}]
    prompt = [*history, {"role": "user", "content": "last question?"}]
    for budget in (60, 120, 300):
        trimmed, dropped = pretrim_history(tokenizer, prompt, budget)
        assert dropped > 0 and trimmed[-1] == prompt[-1]
        assert fit_chat(tokenizer, trimmed, "ok", budget).prompt == fit_chat(tokenizer, prompt, "ok", budget).prompt


def test_cuts_never_exceed_the_token_count_with_split_characters(tokenizer) -> None:
    from polyalign.models.chat import count_tokens, keep_first_tokens, keep_last_tokens

    text = "罕见的字：龘靐齉爩，还有 emoji 🙂🙃 and words."  # rare characters are split over byte tokens
    n = count_tokens(tokenizer, [text])[0]
    for k in range(1, n + 1):
        tail, head = keep_last_tokens(tokenizer, text, k), keep_first_tokens(tokenizer, text, k)
        assert text.endswith(tail) and text.startswith(head)
        assert count_tokens(tokenizer, [tail])[0] <= k and count_tokens(tokenizer, [head])[0] <= k
