"""EndpointConfig: where an OpenAI-compatible chat-completions server is and how to talk to it."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from ..config import StrictModel
from ..errors import ConfigError

DEFAULT_KEY_VARIABLES = ("POLYALIGN_API_KEY", "OPENAI_API_KEY")
EXTENSION_PARAMS = ("top_k", "repetition_penalty")


class EndpointConfig(StrictModel):
    """An OpenAI-compatible /v1/chat/completions server (vLLM, TGI, llama.cpp, `transformers serve`, hosted APIs).

    The API key is never part of the config: it is read from the first set variable of `api_key_env`."""

    url: str = Field(..., description="Base URL (http://host:port, .../v1 or the full .../chat/completions).")
    model_name: str = Field(..., min_length=1, description="The `model` field of every request.")
    api_key_env: list[str] = Field(list(DEFAULT_KEY_VARIABLES), description="Environment variables holding the "
                                   "API key, first set one wins (the key itself never goes in a config or a log).")
    require_api_key: bool = Field(False, description="Refuse to start when none of api_key_env is set.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at most.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one response (read timeout).")
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    max_retries: int = Field(4, ge=0, description="Retries of one request on 429, 5xx, timeouts and connection "
                                                  "errors (exponential backoff).")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubled each retry.")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest retry delay (a Retry-After header is honoured "
                                                         "up to this).")
    samples_per_request: Literal["n", "separate"] = Field(
        "n", description="num_samples > 1: one request with `n` (checked: a server that returns fewer choices is "
                         "an error), or one request per sample, each with its own seed.")
    extra_params: list[Literal["top_k", "repetition_penalty"]] = Field(
        [], description="Decoding keys outside the OpenAI schema that this server accepts as request fields (vLLM "
                        "and llama.cpp accept both). A decoding that needs one not listed is refused.")
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="The request field that carries max_new_tokens.")
    send_seed: bool = Field(True, description="Send a per-item `seed` (derived from decoding.seed and the id).")
    tokenizer: str | None = Field(None, description="A local tokenizer folder of the served model: prompts are cut "
                                  "from the left to decoding.max_prompt_tokens exactly as local generation cuts "
                                  "them. Needed when max_prompt_tokens is set.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def chat_url(self) -> str:
        """The full chat-completions URL."""
        if self.url.endswith("/chat/completions"):
            return self.url
        return self.url + ("/chat/completions" if self.url.endswith("/v1") else "/v1/chat/completions")

    def api_key(self) -> str | None:
        """The key from the first set variable of api_key_env (None when none is set and none is required)."""
        for name in self.api_key_env:
            value = os.environ.get(name)
            if value:
                return value
        if self.require_api_key:
            raise ConfigError(f"the endpoint config demands an API key (require_api_key: true) but none of "
                              f"{', '.join('$' + n for n in self.api_key_env)} is set")
        return None

    def public(self) -> dict:
        """What may be recorded in a manifest (everything in the config; the key is never in it)."""
        return self.model_dump()


def endpoint_from_options(url: str | None, model_name: str | None, config: str | None) -> EndpointConfig | None:
    """The EndpointConfig of the CLI options --endpoint URL, --model-name NAME and --endpoint-config YAML (the
    options override the file's url and model_name); None when none of them is given."""
    from ..config import load_config, validate_config

    if url is None and model_name is None and config is None:
        return None
    overrides = {k: v for k, v in (("url", url), ("model_name", model_name)) if v is not None}
    if config is not None:
        return load_config(config, EndpointConfig, overrides or None)
    if url is None or model_name is None:
        raise ConfigError("an endpoint needs both --endpoint URL and --model-name NAME (or --endpoint-config YAML)")
    return validate_config(overrides, EndpointConfig)
