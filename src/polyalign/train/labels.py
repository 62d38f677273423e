"""Loss labels that cover exactly what the assistant writes.

A chat template may write text after the assistant's end-of-turn token (ChatML templates add a newline after
`<|im_end|>`). TRL's prompt-completion tokenization labels everything after the generation prompt, so without
`{% generation %}` markers that trailing template text would be trained as if the model wrote it. It never
generates it: generation stops at the end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Sequence

IGNORE = -100
COMPLETION_CUT = "completion_cut"  # example column: the response was cut to fit, so it has no real end


def drop_labels_after_end_of_turn(labels: Sequence[int], end_of_turn_ids: Sequence[int]) -> list[int]:
    """`labels` with every labelled token that follows the last end-of-turn token of its labelled run set to
    IGNORE. A run (maximal stretch of labelled positions) without an end-of-turn token is left as it is."""
    out = list(labels)
    eot = set(end_of_turn_ids)
    if not eot:
        return out
    i, n = 0, len(out)
    while i < n:
        if out[i] == IGNORE:
            i += 1
            continue
        j = i
        while j < n and out[j] != IGNORE:
            j += 1
        last = max((k for k in range(i, j) if out[k] in eot), default=None)
        if last is not None:
            for k in range(last + 1, j):
                out[k] = IGNORE
        i = j
    return out


def cut_after_end_of_turn(ids: Sequence[int], end_of_turn_ids: Sequence[int]) -> list[int]:
    """A completion's token ids up to and including its last end-of-turn token (all of them when it has none):
    the template text after the end of turn is not part of what the model writes."""
    eot = set(end_of_turn_ids)
    last = max((k for k, t in enumerate(ids) if t in eot), default=None)
    return list(ids) if last is None else list(ids[:last + 1])


def drop_last_end_of_turn_label(labels: Sequence[int], end_of_turn_ids: Sequence[int]) -> list[int]:
    """`labels` with the last labelled end-of-turn token set to IGNORE (for a response that was cut to fit: the
    template closes it, but the human did not stop there)."""
    out = list(labels)
    eot = set(end_of_turn_ids)
    last = max((k for k, t in enumerate(out) if t != IGNORE and t in eot), default=None)
    if last is not None:
        out[last] = IGNORE
    return out
