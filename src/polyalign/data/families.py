"""Rule-based response-family classifier for sources declared `family: auto`.

One family per conversation (every record of a conversation gets the same one), decided by the first rule that
matches, in this order (lengths are length-rule tokens, see polyalign.text):

1. ``qa``          a passage is given (a non-empty context, or a first user turn whose text before its last
                   paragraph break is at least PASSAGE_MIN tokens) and the median assistant turn is at most
                   SHORT_ANSWER_MAX tokens (a short answer span);
2. ``longform_qa`` one user turn, no passage, the prompt is a question (ends with ?/？, or starts with a
                   question word, or holds a Chinese question particle), and the answer is longer than
                   LONG_ANSWER_MIN tokens;
3. ``task``        at least two user turns, and task-oriented keywords (book, reserve, order, hotel, taxi, ...;
                   预订, 订票, 酒店, 餐厅, ...) in at least TASK_TURN_SHARE of all its turns;
4. ``open_chat``   at least two user turns and a median turn (user and assistant) of at most CHAT_TURN_MAX tokens;
5. ``assistant``   everything else (open requests answered at length).

The rules cannot recognise knowledge-grounded chat (knowledge_chat) without the grounding facts: declare that
family per source. docs/data.md reports how often these rules agree with the bundled sources' declared families.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

import regex

from ..text import count_length_tokens

PASSAGE_MIN = 60
SHORT_ANSWER_MAX = 40
LONG_ANSWER_MIN = 120
CHAT_TURN_MAX = 25
TASK_TURN_SHARE = 0.25

FAMILIES = ("qa", "longform_qa", "task", "open_chat", "assistant")

TASK_EN = regex.compile(
    r"\b(?:book(?:ing|ed)?|reserv(?:e|ed|ing|ation|ations)|order(?:ing|ed)?|tickets?|hotels?|restaurants?|"
    r"taxi|cab|flights?|trains?|appointments?|check[- ]in|check[- ]out|deliver(?:y|ed)?|pick[- ]?up|"
    r"table for|rent(?:al)?|itinerar(?:y|ies))\b", regex.IGNORECASE)
TASK_ZH = regex.compile(r"预订|预定|订票|订餐|订房|订位|预约|酒店|宾馆|餐厅|饭店|餐馆|出租车|打车|航班|机票|火车|高铁|"
                        r"地铁|入住|外卖|车票")
QUESTION_START_EN = regex.compile(
    r"^(?:what|why|how|when|where|who|whom|which|whose|is|are|can|could|should|would|will|do|does|did|"
    r"explain|describe)\b", regex.IGNORECASE)
QUESTION_ZH = regex.compile(r"什么|为什么|怎么|怎样|如何|哪|谁|吗[？?。]?$|呢[？?。]?$|是否|多少|几")


def has_task_keywords(text: str) -> bool:
    """Whether a turn mentions booking/ordering/travel vocabulary (English or Chinese)."""
    return bool(TASK_EN.search(text) or TASK_ZH.search(text))


def is_question(text: str) -> bool:
    """Whether a prompt reads as a question (EN or ZH)."""
    stripped = text.strip()
    if not stripped:
        return False
    last_line = stripped.rsplit("\n", 1)[-1].strip()
    return (stripped.endswith(("?", "？")) or last_line.endswith(("?", "？"))
            or bool(QUESTION_START_EN.match(stripped)) or bool(QUESTION_ZH.search(last_line)))


def passage_length(context: str, first_user_turn: str) -> int:
    """Tokens of the passage: the context, else the first user turn's text before its last paragraph break."""
    if context.strip():
        return count_length_tokens(context)
    head, sep, _ = first_user_turn.rpartition("\n\n")
    return count_length_tokens(head) if sep else 0


def classify_family(user_turns: Sequence[str], assistant_turns: Sequence[str], context: str = "") -> str:
    """The family of a conversation from its user turns, assistant turns and context (see the module rules)."""
    if not user_turns or not assistant_turns:
        return "assistant"
    answer_lengths = [count_length_tokens(t) for t in assistant_turns]
    if passage_length(context, user_turns[0]) >= PASSAGE_MIN and median(answer_lengths) <= SHORT_ANSWER_MAX:
        return "qa"
    multi = len(user_turns) >= 2
    if not multi and not context.strip() and is_question(user_turns[0]) and answer_lengths[0] > LONG_ANSWER_MIN:
        return "longform_qa"
    turns = (*user_turns, *assistant_turns)
    if multi and sum(has_task_keywords(t) for t in turns) >= TASK_TURN_SHARE * len(turns):
        return "task"
    if multi and median([count_length_tokens(t) for t in user_turns] + answer_lengths) <= CHAT_TURN_MAX:
        return "open_chat"
    return "assistant"
