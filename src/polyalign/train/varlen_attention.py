"""`sdpa_varlen`: an attention implementation for padding-free rows without flash-attention (CPU, or GPUs without
the flash-attn package).

transformers' `sdpa` keeps packed examples apart with a dense block-diagonal mask over the whole row, so its cost
grows with the square of the row (all the batch's tokens), more than the padded batch's B·L². `sdpa_varlen` reads
the example boundaries (`cu_seq_lens_q`, which TRL's padding-free collator sends) and runs
`scaled_dot_product_attention` causally on each example alone: Σ n_i² work, as flash-attention's varlen kernel.
Any other input (a padded batch, generation with a cache) goes to transformers' `sdpa` unchanged.

For decoder-only models with full causal attention (Llama, Qwen2, Mistral without sliding window, ...): a model
with sliding windows or logit soft-capping is refused. Select it with
`attn_implementation="sdpa_varlen"` once this module is imported (`register()` runs on import).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_varlen"


def varlen_sdpa_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                                  value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                                  scaling: float | None = None, cu_seq_lens_q: torch.Tensor | None = None,
                                  **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of a [1, heads, seq, dim] packed row example by example (boundaries `cu_seq_lens_q`); otherwise
    transformers' sdpa. Returns [batch, seq, heads, dim] like every transformers attention function."""
    packed = cu_seq_lens_q is not None and query.shape[0] == 1 and key.shape[2] == query.shape[2]
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if getattr(module, "sliding_window", None) or getattr(module, "attn_logit_softcapping", None):
        raise ValueError(f"{NAME}: sliding-window or soft-capped attention is not supported; use sdpa")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = cu_seq_lens_q.tolist()
    if bounds[-1] != query.shape[2]:
        raise ValueError(f"{NAME}: cu_seq_lens_q ends at {bounds[-1]}, the row has {query.shape[2]} tokens")
    p = dropout if module.training else 0.0
    pieces = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=p, is_causal=True, scale=scaling)
        for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` available (idempotent); masks are built as for sdpa."""
    AttentionInterface.register(NAME, varlen_sdpa_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


register()

__all__ = ["NAME", "register", "varlen_sdpa_attention_forward"]
