"""Judge prompts, blind by construction.

A prompt is built from a `BlindItem` (the conversation the response answers: earlier turns, the context passage,
the user's message; optionally the human reference) and candidate TEXTS only. `blind_item` copies exactly those
fields out of a suite record, so its id, source, metadata and bucket never reach a prompt, and no builder takes a
method name, a run path or a model id: the caller keeps the mapping from candidate to method outside."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .rubric import Rubric


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class BlindItem:
    """What the judge may see of one suite item."""

    history: tuple[Turn, ...]
    context: str
    prompt: str
    reference: str | None


def blind_item(record: Any, *, with_reference: bool) -> BlindItem:
    """The judge's view of a suite record (a Record or a dict): history, context, prompt, [human response]."""
    get = record.get if isinstance(record, dict) else (lambda k, d=None: getattr(record, k, d))
    history = tuple(Turn(str(t["role"]), str(t["content"])) for t in (get("history") or []))
    return BlindItem(history=history, context=str(get("context") or ""), prompt=str(get("prompt")),
                     reference=str(get("response")) if with_reference else None)


SYSTEM = ("You are a strict, impartial evaluator of replies in conversations. You judge only the text you are "
          "shown. Answer with one JSON object and nothing else.")


def _conversation(item: BlindItem) -> str:
    parts = []
    if item.context:
        parts.append(f"[Context passage]\n{item.context}")
    for turn in item.history:
        parts.append(f"[{turn.role}]\n{turn.content}")
    parts.append(f"[user]\n{item.prompt}")
    return "\n\n".join(parts)


def _flags_spec(rubric: Rubric) -> str:
    return "\n".join(f"- {flag}: {cap.description}" for flag, cap in rubric.caps.items())


def pointwise_messages(rubric: Rubric, item: BlindItem, candidate: str) -> list[dict[str, str]]:
    """The chat messages asking for one candidate's scores and flags."""
    dims = rubric.asked(item.reference is not None)
    example = {"scores": {d: rubric.scale.min for d in dims}, "flags": {f: False for f in rubric.caps}}
    lines = [f"Conversation:\n{_conversation(item)}"]
    if item.reference is not None:
        lines.append(f"A human's reply to this conversation (one of many acceptable replies):\n{item.reference}")
    lines.append(f"Reply to evaluate:\n{candidate}")
    lines.append(f"Score the reply to evaluate on each dimension, an integer from {rubric.scale.min} (worst) to "
                 f"{rubric.scale.max} (best):\n" + "\n".join(f"- {d}: {rubric.dimensions[d]}" for d in dims))
    lines.append(f"Raise a flag (true) when it applies:\n{_flags_spec(rubric)}")
    lines.append(f"Answer with JSON of exactly this shape: {json.dumps(example)}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(lines)}]


def pairwise_messages(rubric: Rubric, item: BlindItem, first: str, second: str) -> list[dict[str, str]]:
    """The chat messages asking which of two candidates (shown as Reply 1 and Reply 2) is the better human-like
    reply overall."""
    lines = [f"Conversation:\n{_conversation(item)}"]
    if item.reference is not None:
        lines.append(f"A human's reply to this conversation (one of many acceptable replies):\n{item.reference}")
    lines.append(f"Reply 1:\n{first}")
    lines.append(f"Reply 2:\n{second}")
    lines.append("Which reply is better overall, weighing: " + "; ".join(rubric.dimensions[d] for d in
                                                                        rubric.asked(item.reference is not None)))
    lines.append('Answer with JSON of exactly this shape: {"winner": "1"} (or "2", or "tie").')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(lines)}]


def correction_messages(messages: list[dict[str, str]], answer: str, error: str) -> list[dict[str, str]]:
    """The conversation asked again after an invalid answer: the answer and what was wrong with it."""
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": f"That answer is not valid ({error}). Answer again with the JSON object "
                                        f"only, of exactly the shape asked."}]
