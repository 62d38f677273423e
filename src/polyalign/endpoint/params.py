"""The shared DecodingConfig as chat-completions request fields, and the checks of each answer against it.

What a request cannot carry is refused before anything is sent (`request_plan`); what an answer shows the server
did not honour (fewer choices than `n`, more completion tokens than max_tokens, an unknown finish_reason) is an
error (`read_choices`); what no answer can show (seed, temperature, top_p were applied) is listed as unverified in
the manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..generate import DecodingConfig
from .client import EndpointError
from .config import EndpointConfig

FINISH = {"stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop", "length": "length",
          "max_tokens": "length"}


@dataclass
class RequestPlan:
    """The fixed request fields, how many requests one prompt takes, and what the manifest says about them."""

    fields: dict[str, Any]
    n_per_request: int
    requests_per_prompt: int
    unverified: list[str] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)


def request_plan(decoding: DecodingConfig, endpoint: EndpointConfig) -> RequestPlan:
    """Map `decoding` onto request fields; ConfigError for a setting this endpoint cannot honour."""
    fields: dict[str, Any] = {"model": endpoint.model_name, endpoint.max_tokens_field: decoding.max_new_tokens}
    unverified = ["seed"] if endpoint.send_seed else []
    if decoding.do_sample:
        fields.update(temperature=decoding.temperature, top_p=decoding.top_p)
        unverified += ["temperature", "top_p"]
    else:
        fields["temperature"] = 0.0  # greedy in every OpenAI-compatible server
    for key, off in (("top_k", 0), ("repetition_penalty", 1.0)):
        value = getattr(decoding, key)
        if value == off or (key == "top_k" and not decoding.do_sample):
            continue
        if key not in endpoint.extra_params:
            raise ConfigError(f"decoding.{key} = {value} is not an OpenAI chat-completions parameter; list it in "
                              f"the endpoint config's extra_params if this server accepts it (vLLM and llama.cpp "
                              f"do), or set it to {off}")
        fields[key] = value
        unverified.append(key)
    if decoding.max_prompt_tokens is not None and endpoint.tokenizer is None:
        raise ConfigError(f"decoding.max_prompt_tokens = {decoding.max_prompt_tokens} needs the served model's "
                          f"tokenizer to cut prompts as local generation does: set the endpoint config's tokenizer")
    k = decoding.num_samples
    together = k > 1 and endpoint.samples_per_request == "n"
    if together:
        fields["n"] = k
    return RequestPlan(fields=fields, n_per_request=k if together else 1,
                       requests_per_prompt=1 if together or k == 1 else k, unverified=unverified,
                       not_applicable=["batch_size (the server batches)"])


def request_seed(seed: int, item_id: str, request_index: int) -> int:
    """The seed of one request: a function of the decoding seed, the item id and the request index only."""
    digest = hashlib.sha256(f"{seed}\x1f{item_id}\x1f{request_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1


@dataclass
class Choice:
    """One completion of an answer: its text (stripped, as local generation strips) and finish."""

    text: str
    finish: str


def read_choices(answer: dict[str, Any], plan: RequestPlan, max_new_tokens: int, where: str) -> tuple[list[Choice],
                                                                                                       int | None]:
    """The choices of one answer and its completion-token count (None when it reports no usage), checked."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        raise EndpointError(f"{where}: the answer has no choices: {str(answer)[:200]}")
    if len(choices) != plan.n_per_request:
        raise EndpointError(f"{where}: asked for n={plan.n_per_request} choices, got {len(choices)}: the server "
                            f"ignores `n`; set the endpoint config's samples_per_request: separate")
    out = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0)):
        message = choice.get("message") or {}
        text = message.get("content")
        if not isinstance(text, str):
            raise EndpointError(f"{where}: a choice without text content: {str(choice)[:200]}")
        reason = choice.get("finish_reason")
        if reason not in FINISH:
            raise EndpointError(f"{where}: finish_reason {reason!r} is neither a stop nor a length cut")
        out.append(Choice(text=text.strip(), finish=FINISH[reason]))
    usage = answer.get("usage") or {}
    tokens = usage.get("completion_tokens")
    if isinstance(tokens, int) and tokens > max_new_tokens * plan.n_per_request:
        raise EndpointError(f"{where}: {tokens} completion tokens for max_tokens={max_new_tokens} x "
                            f"{plan.n_per_request} choice(s): the server ignores the token limit")
    return out, tokens if isinstance(tokens, int) else None
