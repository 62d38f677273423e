"""A chat-completions client: one POST per call, retried with exponential backoff on 429, 5xx, timeouts and
connection errors; every retry is counted by reason. The API key goes only into the Authorization header: no
message, error or manifest carries it."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import PolyAlignError
from .config import EndpointConfig

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointError(PolyAlignError):
    """A request that failed for good (after its retries), or a response that breaks the request's contract."""


@dataclass
class ClientStats:
    """Requests sent, retries by reason ('429', '500', 'timeout', 'connect', ...), and requests that failed."""

    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str, reason: str | None = None) -> None:
        with self.lock:
            if what == "request":
                self.requests += 1
            elif what == "retry":
                self.retries[reason] += 1
            else:
                self.failed += 1

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "retries": dict(sorted(self.retries.items())),
                "retries_total": sum(self.retries.values()), "failed_requests": self.failed}


def _short(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


class ChatClient:
    """POST chat-completion bodies to one endpoint (thread-safe: one httpx connection pool)."""

    def __init__(self, config: EndpointConfig, *, sleep: Any = time.sleep):
        import httpx

        self.config = config
        self.stats = ClientStats()
        self._sleep = sleep
        headers = {"content-type": "application/json"}
        key = config.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._http = httpx.Client(timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
                                  headers=headers, limits=httpx.Limits(max_connections=config.concurrency))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        cfg = self.config
        if retry_after:
            try:
                return min(float(retry_after), cfg.backoff_max_s)
            except ValueError:
                pass
        base = min(cfg.backoff_s * (2 ** attempt), cfg.backoff_max_s)
        return base * (0.5 + random.random() / 2)  # jitter: concurrent retries do not arrive together

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to one chat-completions body; EndpointError after the retries or on a 4xx."""
        import httpx

        url = self.config.chat_url
        last = ""
        for attempt in range(self.config.max_retries + 1):
            self.stats.count("request")
            retry_after = None
            try:
                response = self._http.post(url, json=body)
            except httpx.TimeoutException as exc:
                reason, last = "timeout", f"no answer within the timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                reason, last = "connect", f"cannot reach the server ({type(exc).__name__}: {_short(str(exc))})"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        reason, last = "bad_json", f"HTTP 200 with a body that is not JSON: {_short(response.text)}"
                elif response.status_code in RETRY_STATUS or response.status_code >= 500:
                    reason = str(response.status_code)
                    last = f"HTTP {response.status_code}: {_short(response.text)}"
                    retry_after = response.headers.get("retry-after")
                else:
                    self.stats.count("failed")
                    hint = ""
                    if response.status_code in (401, 403):
                        hint = (f" (check the API key in {', '.join('$' + n for n in self.config.api_key_env)})")
                    raise EndpointError(f"{url}: HTTP {response.status_code}{hint}: {_short(response.text)}")
            if attempt == self.config.max_retries:
                break
            self.stats.count("retry", reason)
            self._sleep(self._delay(attempt, retry_after))
        self.stats.count("failed")
        raise EndpointError(f"{url}: {last} (gave up after {self.config.max_retries} retries)")
