"""How a record becomes chat messages: one function shared by SFT, generation, pairs and evaluation, so that
every method sees exactly the same prompt for the same record."""

from __future__ import annotations

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
