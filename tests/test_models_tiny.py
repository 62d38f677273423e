"""Tiny local model: tokenizer round trip through AutoTokenizer, chat template, loading errors, pretraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_factory import make_tiny_model_dir
from records_factory import make_records

from polyalign.errors import PolyAlignError
from polyalign.models.loading import check_model_source, load_causal_lm, load_tokenizer, looks_like_local_path
from polyalign.models.pretrain import PretrainConfig, pack_blocks, pretrain, pretraining_documents
from polyalign.models.tiny import IM_END, PAD, tokenizer_training_texts

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def test_autotokenizer_reloads_the_tokenizer_unchanged(model_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))  # the trained tokenizer itself
    auto = AutoTokenizer.from_pretrained(model_dir)
    texts = ["Hello world, it's 2024! Numbers 1234567.", "你好，世界！今天天气很好。", "mixed 中英 text\n\nnew  para",
             "<|im_start|>user\nhi<|im_end|>"]
    for text in texts:
        assert auto(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
        assert auto.decode(auto(text, add_special_tokens=False)["input_ids"]) == text
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "is_local" not in config
    assert auto.eos_token == IM_END and auto.pad_token == PAD and auto.pad_token_id != auto.eos_token_id


def test_chat_template_marks_the_assistant_turn(model_dir: Path) -> None:
    tok = load_tokenizer(model_dir)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello 你好"},
                {"role": "user", "content": "more"}, {"role": "assistant", "content": "ok"}]
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(marked) == f"hello 你好{IM_END}ok{IM_END}"  # content + end-of-turn, both turns
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.padding_side == "left"


def test_model_loads_and_generates(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    lm = load_causal_lm(model_dir, device="cpu")
    assert not lm.training and lm.dtype == torch.float32
    eos = lm.generation_config.eos_token_id
    assert load_tokenizer(model_dir).convert_tokens_to_ids(IM_END) in (eos if isinstance(eos, list) else [eos])


def test_tokenizer_texts_are_distinct_and_cover_both_languages() -> None:
    records = make_records(40, 1)
    texts = list(tokenizer_training_texts(records))
    assert len(texts) == len(set(texts))
    assert any("的" in t or "我" in t for t in texts) and any("the" in t for t in texts)


def test_loading_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PolyAlignError, match="does not exist"):
        check_model_source(tmp_path / "missing-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolyAlignError, match="no config.json"):
        load_causal_lm(tmp_path / "empty")
    with pytest.raises(PolyAlignError, match="does not exist"):
        load_tokenizer("./nope/model")
    assert looks_like_local_path("./x") and looks_like_local_path("/abs/path") and looks_like_local_path("a/b/c")
    assert not looks_like_local_path("Qwen/Qwen2.5-0.5B") and not looks_like_local_path("gpt2")


def test_pretraining_documents_and_blocks(model_dir: Path) -> None:
    records = make_records(60, 2)
    docs = pretraining_documents(records)
    assert len(docs) == len({r.conversation_id for r in records})
    multi = next(r for r in records if r.history)
    assert any(multi.response in d and multi.history[0]["content"] in d for d in docs)
    tok = load_tokenizer(model_dir)
    blocks = pack_blocks(tok, docs, 32)
    assert blocks.shape[1] == 32 and blocks.shape[0] > 10
    assert (blocks == tok.convert_tokens_to_ids("<|endoftext|>")).sum() > 0


def test_short_pretraining_lowers_the_loss_and_saves_a_loadable_model(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = pretrain(model_dir, make_records(120, 4), tmp_path / "base",
                   PretrainConfig(max_steps=12, block_size=32, batch_size=8, learning_rate=1e-2, logging_steps=2,
                                  save_steps=100))
    manifest = json.loads((out / "manifest.json").read_text())
    curve = manifest["loss_curve"]
    assert curve[-1]["loss"] < curve[0]["loss"] - 0.3
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert not (tmp_path / ".base.work").exists()


def test_model_cli_init_tiny_and_pretrain(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from polyalign.cli import app
    from records_factory import write_data_dir

    data = write_data_dir(tmp_path / "data", {"train": make_records(150, 0)})
    runner = CliRunner()
    result = runner.invoke(app, ["model", "init-tiny", "--data", str(data), "--out", str(tmp_path / "init"),
                                 "--vocab-size", "900", "--hidden", "32", "--layers", "1", "--heads", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "init" / "manifest.json").read_text())
    assert manifest["vocab_size"] == 900 and manifest["architecture"] == "LlamaForCausalLM"
    result = runner.invoke(app, ["model", "pretrain", "--data", str(data), "--model", str(tmp_path / "init"),
                                 "--out", str(tmp_path / "base"), "--max-steps", "3", "--set", "block_size=32",
                                 "--set", "batch_size=4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "base" / "manifest.json").read_text())["tokens_seen"] == 3 * 4 * 32
    result = runner.invoke(app, ["model", "pretrain", "--data", str(data), "--model", str(tmp_path / "missing"),
                                 "--out", str(tmp_path / "never"), "--max-steps", "3"])
    assert isinstance(result.exception, PolyAlignError) and not (tmp_path / "never").exists()
