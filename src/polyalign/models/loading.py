"""Load any Hugging Face causal LM and its tokenizer, from a local folder or a Hub id, with clear errors.

Every stage goes through these two functions, so a tiny local model and a real Hub model are used the same way.
torch and transformers are imported inside them: this module is imported by generate.py and the pipeline's
config checks, which must not pay their ~2.5 s import (measured: torch 1.7 s, transformers 0.8 s).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PolyAlignError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = ("auto", "float32", "bfloat16", "float16")


def looks_like_local_path(path_or_id: str | Path) -> bool:
    """True when the argument is meant as a local folder: it exists, is written like a path (./x, /x, ~/x,
    a\\b, a/b/c), or its first component is an existing local folder (runs/model). Anything else (`gpt2`,
    `Qwen/Qwen2.5-0.5B`) is a Hub id."""
    text = str(path_or_id)
    if Path(text).expanduser().exists():
        return True
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        return True
    return "/" in text and Path(text.split("/", 1)[0]).is_dir()


def check_model_source(path_or_id: str | Path) -> str:
    """Validate a model argument before any work: a local folder must exist and hold a config.json; anything else
    is treated as a Hub id. Returns it as a string."""
    text = str(path_or_id)
    if looks_like_local_path(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise PolyAlignError(f"model path '{text}' does not exist")
        if not path.is_dir() or not (path / "config.json").exists():
            raise PolyAlignError(f"model path '{text}' is not a Hugging Face model folder (no config.json)")
        return str(path)
    return text


def _hub_hint(path_or_id: str) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    return (" (HF_HUB_OFFLINE=1: only models already in the local cache can be loaded)" if offline else
            " (not a local folder; as a Hub id it could not be downloaded)")


def resolve_dtype(dtype: str, device: str) -> Any:
    """A torch dtype for `dtype` ('auto' = bfloat16 on a CUDA device that supports it, else float32)."""
    import torch

    if dtype not in DTYPES:
        raise PolyAlignError(f"unknown dtype '{dtype}' (choose one of {', '.join(DTYPES)})")
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def resolve_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when available, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_tokenizer(path_or_id: str | Path, *, padding_side: str = "left", chat: bool = False,
                   **kwargs: Any) -> PreTrainedTokenizerBase:
    """The tokenizer of a model folder or Hub id, ready for batched generation: left padding, and the eos token
    as pad token when the tokenizer has none. `chat`: refuse a tokenizer without a chat template."""
    from transformers import AutoTokenizer

    source = check_model_source(path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise PolyAlignError(f"cannot load a tokenizer from '{source}'{_hub_hint(source)}: "
                             f"{str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PolyAlignError(f"the tokenizer of '{source}' has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if chat:
        check_chat_template(tokenizer, source)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(path_or_id: str | Path, *, dtype: str = "auto", device: str = "auto",
                   **kwargs: Any) -> PreTrainedModel:
    """A causal LM from a model folder or Hub id, in eval mode on `device` ('auto' = CUDA when available)."""
    from transformers import AutoModelForCausalLM

    source = check_model_source(path_or_id)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise PolyAlignError(f"cannot load a causal LM from '{source}'{_hub_hint(source)}: "
                             f"{str(exc).splitlines()[0]}") from None
    model.to(device)
    model.eval()
    return model


def model_max_length(model: Any, tokenizer: Any = None) -> int | None:
    """The longest sequence a model accepts (max_position_embeddings, or a sane tokenizer limit)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The token ids that end a generated response: the model's generation eos ids, plus the tokenizer's eos."""
    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


PROBE_CHAT = [{"role": "user", "content": "PROBE-USER"}, {"role": "assistant", "content": "PROBE-ASSISTANT"}]


def check_chat_template(tokenizer: Any, source: str) -> None:
    """Refuse a tokenizer without a chat template: every stage renders conversations with the model's own."""
    if not getattr(tokenizer, "chat_template", None):
        raise PolyAlignError(f"the tokenizer of '{source}' has no chat template (tokenizer_config.json "
                             f"chat_template or chat_template.jinja): PolyAlign renders every conversation with "
                             f"the model's own template; add one (e.g. with transformers' "
                             f"tokenizer.chat_template = ...; tokenizer.save_pretrained(folder))")


def template_end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The special tokens the chat template writes right after an assistant's content (ChatML's <|im_end|>,
    Llama 3's <|eot_id|>, ...): the tokens a model must emit to end its turn."""
    try:
        text = tokenizer.apply_chat_template(PROBE_CHAT, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render is reported where it is used
        return []
    _, _, tail = text.partition(PROBE_CHAT[1]["content"])
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out: list[int] = []
    for token_id in ids:
        if token_id not in special:
            break
        out.append(token_id)
    return out[:1]
