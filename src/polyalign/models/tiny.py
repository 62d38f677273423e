"""A tiny, locally built chat model: a byte-level BPE tokenizer trained on the train split (both languages), a
ChatML-style chat template that marks assistant turns for assistant-only loss, and a small Llama-style causal LM.

This is the stand-in base model of the demo and the tests (no weights can be downloaded here). Every later stage
treats it like any Hugging Face causal LM folder.

Why Llama and not Qwen2: transformers 5.24 reloads any tokenizer that sits next to a `model_type: qwen2` config as
`Qwen2Tokenizer`, which swaps in Qwen2's pre-tokenizer (different ids). With a Llama config and
`tokenizer_class: PreTrainedTokenizerFast`, `AutoTokenizer` reloads our tokenizer unchanged (tested).

tokenizers, torch and transformers are imported inside the builders: `TinyModelConfig` is validated by every
pipeline's preflight, which must not pay their ~2.5 s import (measured: torch 1.7 s, transformers 0.8 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, PAD)

# ChatML. The assistant content and its end-of-turn token sit inside {% generation %} so that
# `return_assistant_tokens_mask` (TRL's assistant_only_loss) marks exactly what the model must learn to write,
# including when to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# GPT-4/Qwen-style split: letter runs (a run of Han characters is one pre-token; BPE merges inside it), numbers in
# groups of up to 3 digits, punctuation runs, newlines and spaces.
PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                     r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


class TinyModelConfig(StrictModel):
    """Sizes of the tiny tokenizer and model (defaults: about 2.5M parameters, fast on 2 CPU cores)."""

    vocab_size: int = Field(8000, ge=300, description="BPE vocabulary size, special tokens included.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")
    hidden: int = Field(128, ge=8, description="Hidden size.")
    layers: int = Field(4, ge=1, description="Number of transformer layers.")
    heads: int = Field(4, ge=1, description="Attention heads.")
    kv_heads: int | None = Field(None, ge=1, description="Key/value heads (grouped-query attention); default heads.")
    intermediate: int | None = Field(None, ge=8, description="MLP width; default 8/3 x hidden rounded to 32.")
    max_positions: int = Field(1024, ge=32, description="Longest sequence the model accepts (RoPE positions).")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base.")
    seed: int = Field(0, description="Seed for the weight initialization.")


def tokenizer_training_texts(records: Iterable[Any]) -> Iterator[str]:
    """The texts the tokenizer learns from: each record's context, history turns, prompt and response, each
    distinct text once (histories repeat across the records of one conversation)."""
    seen: set[int] = set()
    for record in records:
        get = record.get if isinstance(record, dict) else lambda k, d=None, r=record: getattr(r, k, d)
        texts = [get("context") or "", *(t["content"] for t in (get("history") or [])), get("prompt"),
                 get("response")]
        for text in texts:
            if text and (key := hash(text)) not in seen:
                seen.add(key)
                yield text


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with the ChatML special tokens and chat template;
    eos = <|im_end|> (ends an assistant turn), pad = <|pad|>, no bos."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS) + 256:
        raise ConfigError("the tokenizer learned no merges: the training texts are empty or too few")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=IM_END, pad_token=PAD,
                                   chat_template=CHAT_TEMPLATE, model_max_length=1_000_000,
                                   clean_up_tokenization_spaces=False)


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig) -> PreTrainedModel:
    """A randomly initialized Llama-style causal LM sized by `config` for `tokenizer` (tied embeddings)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if config.hidden % config.heads:
        raise ConfigError(f"hidden ({config.hidden}) must be a multiple of heads ({config.heads})")
    kv_heads = config.kv_heads or config.heads
    if config.heads % kv_heads:
        raise ConfigError(f"heads ({config.heads}) must be a multiple of kv_heads ({kv_heads})")
    intermediate = config.intermediate or max(32, int(round(config.hidden * 8 / 3 / 32)) * 32)
    eos_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)]
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden, intermediate_size=intermediate,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=kv_heads,
        max_position_embeddings=config.max_positions, rope_theta=config.rope_theta, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=eos_ids[0], pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0, initializer_range=0.02, use_cache=True)
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(llama_config)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=None)
    return model


def save_model_dir(model: PreTrainedModel, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save model and tokenizer in Hugging Face format; the tokenizer config names PreTrainedTokenizerFast so
    `AutoTokenizer` reloads it unchanged, and load-time keys (is_local, local_files_only) are dropped."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    fix_tokenizer_config(out_dir)
    return out_dir


def fix_tokenizer_config(model_dir: str | Path) -> None:
    """Pin `tokenizer_class: PreTrainedTokenizerFast` for a tokenizer we built, and drop load-time keys."""
    path = Path(model_dir) / "tokenizer_config.json"
    if not path.exists():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast") and \
            (Path(model_dir) / "tokenizer.json").exists():
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def init_tiny(records: Sequence[Any], out_dir: str | Path, config: TinyModelConfig | None = None, *,
              inputs: dict[str, str] | None = None) -> Path:
    """Train the tokenizer on `records` (the train split), build the tiny model and write both to `out_dir`
    (atomically, with a manifest). Returns `out_dir`."""
    from ..io import atomic_path, make_manifest, write_json

    config = config or TinyModelConfig()
    started = time.time()
    if not records:
        raise ConfigError("no training records to build the tokenizer from")
    tokenizer = train_tokenizer(tokenizer_training_texts(records), config.vocab_size, config.min_frequency)
    model = build_tiny_model(tokenizer, config)
    with atomic_path(out_dir) as tmp:
        save_model_dir(model, tokenizer, tmp)
        write_json(tmp / "manifest.json", make_manifest(
            stage="model.init_tiny", config=config.model_dump(), inputs=inputs, seed=config.seed, started=started,
            extra={"n_parameters": count_parameters(model), "vocab_size": len(tokenizer),
                   "n_records": len(records), "architecture": "LlamaForCausalLM"}))
    return Path(out_dir)
