"""Records → TRL prompt-completion conversational SFT examples, fitted to a token budget.

An example is `{"prompt": prompt_messages(record, profile), "completion": [{"role": "assistant", "content":
response}], "bucket_id": str, "bucket_index": int}`: the loss is on the completion only, and multi-turn history
sits in the prompt. Over-long examples lose prompt tokens from the left (oldest history turns first, then the
start of the context/user turn); a response longer than the remaining budget is cut at its end, and its
end-of-turn token is then left out of the loss (`completion_cut`). Both are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from ..models.chat import count_tokens, fit_chat, max_token_chars, pretrim_history, prompt_messages
from .labels import COMPLETION_CUT


@dataclass
class ExampleStats:
    """What fitting to the budget did to a set of examples."""

    n_examples: int = 0
    n_prompt_truncated: int = 0
    n_turns_dropped: int = 0
    n_response_truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def bucket_vocabulary(*record_sets: Sequence[Any]) -> list[str]:
    """Sorted bucket ids over the given record sets (the index of a bucket is its position)."""
    names: set[str] = set()
    for records in record_sets:
        for record in records:
            names.add(_bucket_of(record))
    return sorted(names)


def bucket_counts(examples: Sequence[dict[str, Any]], num_buckets: int) -> list[int]:
    """Number of examples per bucket index (SFT examples and pair examples alike)."""
    counts = [0] * num_buckets
    for ex in examples:
        counts[ex["bucket_index"]] += 1
    return counts


def _bucket_of(record: Any) -> str:
    bucket = record.get("bucket_id") if isinstance(record, dict) else getattr(record, "bucket_id", None)
    if not isinstance(bucket, str) or not bucket:
        rid = record.get("id") if isinstance(record, dict) else getattr(record, "id", "?")
        raise InputError(f"record '{rid}' has no bucket_id (build the data with `polyalign data build`)",
                         field="bucket_id")
    return bucket


def record_example(record: Any, bucket_index: dict[str, int], profile: bool = False) -> dict[str, Any]:
    """The SFT example of one record (not yet fitted to a budget). `completion_cut` marks a response that fitting
    cut at its end: its end-of-turn token is then not trained (the human did not stop there)."""
    bucket = _bucket_of(record)
    response = record.get("response") if isinstance(record, dict) else record.response
    return {"prompt": prompt_messages(record, profile),
            "completion": [{"role": "assistant", "content": response}],
            "bucket_id": bucket, "bucket_index": bucket_index[bucket], COMPLETION_CUT: False}


def build_sft_examples(records: Sequence[Any], tokenizer: Any, bucket_index: dict[str, int], *,
                       max_length: int | None, profile: bool = False,
                       min_prompt_tokens: int = 32) -> tuple[list[dict[str, Any]], ExampleStats]:
    """SFT examples of `records`, each fitted to `max_length` tokens (None: no limit), and the counts of what
    was cut. Lengths are first counted in one batched tokenizer call; only over-long examples are refitted."""
    examples = [record_example(r, bucket_index, profile) for r in records]
    stats = ExampleStats(n_examples=len(examples))
    if max_length is None or not examples:
        return examples, stats
    # Cheap character-level pre-trim of what would be cut anyway (keeps tokenizing long chats affordable).
    limit = max_length * max_token_chars(tokenizer)  # characters that surely hold more than max_length tokens
    pretrimmed = [0] * len(examples)
    for i, ex in enumerate(examples):
        ex["prompt"], dropped = pretrim_history(tokenizer, ex["prompt"], max_length)
        last = ex["prompt"][-1]
        if len(last["content"]) > 2 * limit:
            ex["prompt"][-1] = {**last, "content": last["content"][-2 * limit:]}
            dropped = dropped or -1
        pretrimmed[i] = dropped
    texts = tokenizer.apply_chat_template([ex["prompt"] + ex["completion"] for ex in examples], tokenize=False)
    lengths = count_tokens(tokenizer, texts)
    for ex, n, dropped in zip(examples, lengths, pretrimmed):
        fit = None
        if n > max_length:
            fit = fit_chat(tokenizer, ex["prompt"], ex["completion"][0]["content"], max_length,
                           min_prompt_tokens=min_prompt_tokens, n_tokens=n)
            ex["prompt"] = fit.prompt
            ex["completion"] = [{"role": "assistant", "content": fit.completion}]
            stats.n_response_truncated += fit.completion_truncated
            ex[COMPLETION_CUT] = bool(fit.completion_truncated)
        turns = max(dropped, 0) + (fit.dropped_turns if fit else 0)
        stats.n_turns_dropped += turns
        stats.n_prompt_truncated += bool(dropped or (fit and fit.prompt_truncated))
    return examples, stats
