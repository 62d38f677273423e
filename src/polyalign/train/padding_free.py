"""Padding-free SFT batches: what the trainer needs beyond TRL's own `padding_free` collator.

TRL's `DataCollatorForLanguageModeling(padding_free=True)` concatenates the examples of a batch into one row whose
`position_ids` restart at 0 at each example (and adds `cu_seq_lens_*` for the varlen kernels), with no
`attention_mask`. Examples stay separate only if the model's attention reads those boundaries:
- flash_attention_2/3 take the varlen path from `position_ids` / `cu_seq_lens_*`;
- sdpa / eager / flex in transformers 5.24 build a block-diagonal causal mask from the restarting `position_ids`
  (`masking_utils.find_packed_sequence_indices`, used when there is no attention mask and no cache).
A model whose forward ignores `position_ids`, or builds its own mask, would attend across examples silently, so
`check_packed_attention` runs the model once on a small packed row against the same examples one at a time and
refuses the combination when they differ.

TRL also refuses `padding_free` without packing when `max_length` is set (it cannot truncate a packed row); our
examples are fitted before TRL sees them, and `PaddingFreeTruncationMixin` applies TRL's own truncation rule to
each example instead, so the training data is exactly that of the padded run.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError

PROBE_LENGTHS = (7, 12, 5)
# attention implementations of transformers that read packed boundaries (used when the probe cannot run)
PACKED_ATTENTION = ("flash_attention_2", "flash_attention_3", "sdpa", "sdpa_varlen", "eager", "flex_attention")


def packed_attention_gap(model: Any, lengths: tuple[int, ...] = PROBE_LENGTHS, seed: int = 0) -> float:
    """Largest |log p(packed) − log p(one at a time)| over the tokens of random examples of `lengths`, with the
    packed row built by TRL's padding-free collator (0 when the model keeps packed examples apart)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(seed)
    examples = [torch.randint(0, min(vocab, 1000), (n,), generator=generator).tolist() for n in lengths]
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": e} for e in examples])
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in packed.items() if k != "labels"}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            together = torch.log_softmax(model(**inputs, use_cache=False).logits[0].float(), dim=-1)
            alone = torch.cat([torch.log_softmax(model(input_ids=torch.tensor([e], device=device),
                                                       use_cache=False).logits[0].float(), dim=-1)
                               for e in examples])
    finally:
        model.train(was_training)
    return float((together - alone).abs().max())


def probe_tolerance(model: Any) -> float:
    """How far packed and one-at-a-time log-probs may differ from rounding alone (by the weights' dtype)."""
    dtype = next(model.parameters()).dtype
    return 1e-3 if dtype in (torch.float32, torch.float64) else 5e-2


def check_packed_attention(model: Any) -> float | None:
    """A ConfigError unless `model` keeps the examples of a padding-free row apart (see the module docstring);
    returns the measured gap. None when the model cannot run before training (weights partitioned by DeepSpeed
    ZeRO-3, or a flash-attention model still on the CPU, as under FSDP): then only the attention implementation
    is checked."""
    config = getattr(model, "config", None)
    attention = getattr(config, "_attn_implementation", None)
    name = type(model).__name__
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"padding_free: {name} is an encoder-decoder model; padding-free SFT needs a causal LM")
    partitioned = any(hasattr(p, "ds_id") for p in model.parameters())  # ZeRO-3: no forward outside the engine
    flash_on_cpu = str(attention).startswith("flash") and next(model.parameters()).device.type == "cpu"
    if partitioned or flash_on_cpu:
        if attention not in PACKED_ATTENTION:
            raise ConfigError(f"padding_free: attn_implementation={attention!r} of {name} is not one that reads "
                              f"packed boundaries ({', '.join(PACKED_ATTENTION)})")
        return None
    gap = packed_attention_gap(model)
    tolerance = probe_tolerance(model)
    if not gap <= tolerance:
        raise ConfigError(
            f"padding_free: {name} with attn_implementation={attention!r} attends across the examples of a packed "
            f"row (log-probs differ by {gap:.3g} > {tolerance:g} from the examples run one at a time). Use a "
            f"transformers model whose attention reads restarting position_ids (flash_attention_2/3 on GPU, or "
            f"sdpa/eager, which build a block-diagonal mask from them), or set padding_free: false")
    return gap


def truncate_like_trl(dataset: Any, max_length: int, truncation_mode: str) -> Any:
    """TRL's SFT truncation (`SFTTrainer._prepare_dataset`): cut `input_ids` and `labels` to `max_length` from the
    start or the end, then drop examples left without a label."""
    if truncation_mode == "keep_start":
        cut = slice(None, max_length)
    elif truncation_mode == "keep_end":
        cut = slice(-max_length, None)
    else:
        raise ConfigError(f"truncation_mode must be 'keep_start' or 'keep_end', got {truncation_mode!r}")
    if any(len(ids) > max_length for ids in dataset["input_ids"]):
        dataset = dataset.map(lambda ex: {"input_ids": ex["input_ids"][cut], "labels": ex["labels"][cut]},
                              desc="Truncating (padding-free)")
    return dataset.filter(lambda ex: any(label != -100 for label in ex["labels"]),
                          desc="Dropping fully masked examples")


class PaddingFreeTruncationMixin:
    """SFTTrainer mixin: with `padding_free` and no packing, each example is truncated to the run's `max_length`
    by TRL's rule (TRL itself only truncates padded examples). Set `self._padding_free_max_length` before
    `SFTTrainer.__init__`; place this mixin right above SFTTrainer so that later dataset steps see the result."""

    _padding_free_max_length: int | None = None

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, args, *rest, **kwargs)  # type: ignore[misc]
        if self._padding_free_max_length is None or "input_ids" not in (dataset.column_names or []):
            return dataset
        return truncate_like_trl(dataset, self._padding_free_max_length, args.truncation_mode)


__all__ = ["check_packed_attention", "packed_attention_gap", "truncate_like_trl", "PaddingFreeTruncationMixin"]
