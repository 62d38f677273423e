"""How a record becomes chat messages: one function shared by SFT, generation, pairs and evaluation, so that
every method sees exactly the same prompt for the same record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROFILE_TEMPLATE = ("Reply the way a person would in this conversation. "
                    "language={language}; track={track}; family={family}.")


def profile_system_prompt(language: str, track: str, family: str) -> str:
    """The optional profile system prompt. It uses only what is known before answering (language, track,
    family), never the gold length bin."""
    return PROFILE_TEMPLATE.format(language=language, track=track, family=family)


def user_turn_text(prompt: str, context: str = "") -> str:
    """The user turn as the model sees it: the context passage (if any), a blank line, then the prompt."""
    return f"{context}\n\n{prompt}" if context else prompt


def prompt_messages(record: Any, profile: bool = False) -> list[dict[str, str]]:
    """Chat messages that precede the response of `record` (a Record or a dict with the same fields):
    [system profile] + history + the user prompt (with its context)."""
    get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
    messages: list[dict[str, str]] = []
    if profile:
        messages.append({"role": "system", "content": profile_system_prompt(get("language"), get("track"),
                                                                            get("family"))})
    messages.extend({"role": t["role"], "content": t["content"]} for t in (get("history") or []))
    messages.append({"role": "user", "content": user_turn_text(get("prompt"), get("context") or "")})
    return messages


# ---------------------------------------------------------------------------------------------------------------
# Fitting a conversation into a token budget (shared by SFT and generation).


@dataclass
class FitResult:
    """A prompt (and completion) that fit the budget, and what was cut to get there."""

    prompt: list[dict[str, str]]
    completion: str | None
    n_tokens: int
    dropped_turns: int = 0
    prompt_tokens_cut: int = 0
    completion_tokens_cut: int = 0

    @property
    def prompt_truncated(self) -> bool:
        return self.dropped_turns > 0 or self.prompt_tokens_cut > 0

    @property
    def completion_truncated(self) -> bool:
        return self.completion_tokens_cut > 0


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts of texts (no special tokens added), through the Rust tokenizer directly when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def chat_token_count(tokenizer: Any, prompt: list[dict[str, str]], completion: str | None = None) -> int:
    """Tokens of the chat-template rendering: prompt + generation prompt, or prompt + the assistant completion."""
    if completion is None:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    else:
        text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}], tokenize=False)
    return count_tokens(tokenizer, [text])[0]


def _token_spans(tokenizer: Any, text: str) -> list[tuple[int, int]] | None:
    if not getattr(tokenizer, "is_fast", False):
        return None
    return [tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


def keep_last_tokens(tokenizer: Any, text: str, k: int) -> str:
    """The longest end of `text` (cut at a character boundary) that holds at most `k` tokens."""
    if k <= 0:
        return ""
    spans = _token_spans(tokenizer, text)
    if spans is None:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out = text if k >= len(ids) else tokenizer.decode(ids[-k:])
    else:
        out = text if k >= len(spans) else text[spans[len(spans) - k][0]:]
    while out and _n_text_tokens(tokenizer, out) > k:  # a character split over tokens: drop it whole
        out = out[1:]
    return out


def keep_first_tokens(tokenizer: Any, text: str, k: int) -> str:
    """The longest start of `text` (cut at a character boundary) that holds at most `k` tokens."""
    if k <= 0:
        return ""
    spans = _token_spans(tokenizer, text)
    if spans is None:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out = text if k >= len(ids) else tokenizer.decode(ids[:k])
    else:
        out = text if k >= len(spans) else text[:spans[k - 1][1]]
    while out and _n_text_tokens(tokenizer, out) > k:
        out = out[:-1]
    return out


def _n_text_tokens(tokenizer: Any, text: str) -> int:
    return count_tokens(tokenizer, [text])[0]


def max_token_chars(tokenizer: Any) -> int:
    """The most characters any single token decodes to (an upper bound used to trim by characters safely)."""
    cached = getattr(tokenizer, "_polyalign_max_token_chars", None)
    if cached is None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        cached = max(1, max(len(tokenizer.convert_tokens_to_string([p])) for p in pieces if p is not None))
        try:
            tokenizer._polyalign_max_token_chars = cached
        except AttributeError:  # pragma: no cover - exotic tokenizer objects
            pass
    return cached


def pretrim_history(tokenizer: Any, prompt: list[dict[str, str]], max_tokens: int) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest history pairs that `fit_chat` would drop anyway, cheaply: walking back from the last user
    turn, once the newer turns alone hold more than `max_tokens` tokens (with one token of slack per turn for
    merges at turn boundaries), everything older goes. Only the turns it walks over are tokenized, so a
    100-turn chat costs no more than a short one. Returns (prompt, turns dropped)."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    rest = list(prompt[len(system):])
    history, last = rest[:-1], rest[-1:]
    if len(history) < 2:
        return list(prompt), 0
    total = sum(_n_text_tokens(tokenizer, m["content"]) for m in last)
    start = len(history)
    while start >= 2 and total - (len(history) - start + 1) <= max_tokens:
        total += sum(count_tokens(tokenizer, [m["content"] for m in history[start - 2:start]]))
        start -= 2
    return [*system, *history[start:], *last], start


def fit_chat(tokenizer: Any, prompt: list[dict[str, str]], completion: str | None, max_tokens: int, *,
             min_prompt_tokens: int = 32, n_tokens: int | None = None) -> FitResult:
    """Make prompt (+ completion) fit `max_tokens` of the chat template, cutting the prompt from the left: first
    the oldest history turns (user/assistant pairs; a system turn is kept), then the start of the last user turn
    (its context passage comes first, so it goes first). The last user turn keeps at least `min_prompt_tokens`
    tokens; only when that is not enough is the completion cut at its end. Without a completion (generation) the
    user turn is cut as far as needed. Raises ValueError when even that cannot fit."""
    count = (lambda p, c: chat_token_count(tokenizer, p, c))
    total = n_tokens if n_tokens is not None else count(prompt, completion)
    result = FitResult(prompt=list(prompt), completion=completion, n_tokens=total)
    if total <= max_tokens:
        return result
    system = [m for m in prompt[:1] if m["role"] == "system"]
    rest = list(prompt[len(system):])
    history, last = rest[:-1], dict(rest[-1])
    # Drop history pairs: estimate how many from per-message token counts, then correct with exact counts.
    if history:
        sizes = count_tokens(tokenizer, [m["content"] for m in history])
        overhead = max(0, (total - sum(sizes)) // (len(rest) + 1 + (completion is not None)))
        pairs = len(history) // 2
        k = 0
        estimate = total
        while k < pairs and estimate > max_tokens:
            estimate -= sizes[2 * k] + sizes[2 * k + 1] + 2 * overhead
            k += 1
        if k:
            current = count([*system, *history[2 * k:], last], completion)
            while current > max_tokens and k < pairs:  # estimate too optimistic: drop more
                k += 1
                current = count([*system, *history[2 * k:], last], completion)
            while k > 0:  # estimate too pessimistic: keep a pair back if it fits
                previous = count([*system, *history[2 * (k - 1):], last], completion)
                if previous > max_tokens:
                    break
                k, current = k - 1, previous
            history = history[2 * k:]
            result.dropped_turns += 2 * k
            total = current
    for _ in range(8):
        if total <= max_tokens:
            break
        before = total
        user_len = _n_text_tokens(tokenizer, last["content"])
        floor = 1 if completion is None else min(min_prompt_tokens, user_len)
        keep_user = max(user_len - (total - max_tokens), floor)
        if keep_user < user_len:
            last["content"] = keep_last_tokens(tokenizer, last["content"], keep_user)
            result.prompt_tokens_cut += user_len - _n_text_tokens(tokenizer, last["content"])
            total = count([*system, *history, last], completion)
        if total > max_tokens and completion:
            comp_len = _n_text_tokens(tokenizer, completion)
            keep = max(1, comp_len - (total - max_tokens))
            new = keep_first_tokens(tokenizer, completion, keep)
            if new == completion and keep > 1:  # a boundary swallowed the cut: take one token more
                new = keep_first_tokens(tokenizer, completion, keep - 1)
            result.completion_tokens_cut += comp_len - _n_text_tokens(tokenizer, new)
            completion = new
            total = count([*system, *history, last], completion)
        if total == before:
            break
    if total > max_tokens:
        raise ValueError(f"cannot fit the conversation into {max_tokens} tokens (still {total} after cutting the "
                         f"prompt and completion)")
    result.prompt, result.completion, result.n_tokens = [*system, *history, last], completion, total
    return result
