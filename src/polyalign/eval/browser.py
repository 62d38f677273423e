"""The sample browser of report.html: every suite item's prompt (the full multi-turn context), the human answer
and each method's answer side by side, filterable by bucket, context group, language, track and method, with a
text search. The data rides in the page as JSON inside a <script type="application/json"> tag (escaped so that
no text can close it); the inline script renders it with textContent only, one page of items at a time."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..data.schema import Record
from ..errors import PolyAlignError
from ..io import sha256_file
from ..text import count_length_tokens
from .views import context_id

SECTION_ID = "samples"
DATA_ID = "sb-data"
NOTE = ("Every suite item: the conversation before the response (earlier turns, the context passage the model "
        "sees before the prompt, the prompt), the held-out human answer and each method's answer. Length: the "
        "bilingual length rule (words, CJK characters, punctuation marks). 'cut' = the answer hit "
        "max_new_tokens. Filters and search run in the page; nothing is loaded from the network.")


@dataclass
class Answer:
    """One method's answer to one item: text (None: no prediction), finish ('stop', 'length' = cut at
    max_new_tokens, None = unknown) and length under the length rule."""

    text: str | None
    finish: str | None = None

    def as_json(self) -> list[Any] | None:
        if self.text is None:
            return None
        return [self.text, self.finish, count_length_tokens(self.text)]


def answers_of(texts: Sequence[str | None], finish: Sequence[str | None]) -> list[Answer]:
    """Answers aligned with the suite's items (from polyalign.eval.predictions.Predictions)."""
    finish = list(finish) or [None] * len(texts)
    return [Answer(t, f) for t, f in zip(texts, finish)]


def browser_data(items: Sequence[Record], answers: Mapping[str, Sequence[Answer]], *,
                 context_key: Sequence[str], notes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON the browser embeds: methods (in order), per item its id, bucket, context group, language, track,
    family, turns ([role, text]; the last is the prompt), context passage, human answer [text, length] and one
    [text, finish, length] (or null) per method; `notes` say why a method has no answers."""
    methods = list(answers)
    for name, rows in answers.items():
        if len(rows) != len(items):
            raise ValueError(f"{name}: {len(rows)} answers for {len(items)} items")
    out_items = []
    for i, r in enumerate(items):
        turns = [[t["role"], t["content"]] for t in r.history] + [["user", r.prompt]]
        out_items.append({"id": r.id, "bucket": r.bucket_id, "context": context_id(r, context_key),
                          "language": r.language, "track": r.track, "family": r.family,
                          "turns": turns, "passage": r.context,
                          "human": [r.response, count_length_tokens(r.response)],
                          "answers": [answers[m][i].as_json() for m in methods]})
    return {"methods": methods, "notes": dict(notes or {}), "context_key": "|".join(context_key),
            "items": out_items}


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: '<', '>' and '&' as \\u escapes (no '</script>' nor
    '<!--' can appear), and the two JavaScript line separators escaped as well. JSON.parse reads it unchanged."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _asset(name: str) -> str:
    return (resources.files("polyalign") / "resources" / "report" / name).read_text(encoding="utf-8")


def render_section(data: Mapping[str, Any] | None, *, unavailable: str | None = None) -> str:
    """The <section id="samples"> of report.html: controls, the embedded data, the inline style and script.
    Without data, a note saying why (`unavailable`)."""
    head = f'<section id="{SECTION_ID}"><h2>Sample browser</h2>'
    if data is None:
        return head + f'<p class="note">Not available: {html.escape(unavailable or "no answers")}</p></section>'
    notes = "".join(f'<p class="note">{html.escape(m)}: {html.escape(why)}</p>'
                    for m, why in data.get("notes", {}).items())
    return (f"{head}<p class=\"note\">{html.escape(NOTE)}</p>{notes}<style>{_asset('samples.css')}</style>"
            '<div id="sb-controls"></div><div id="sb-status" class="meta"></div><div id="sb-rows"></div>'
            '<div id="sb-pager"></div>'
            f'<script type="application/json" id="{DATA_ID}">{embed_json(data)}</script>'
            f"<script>{_asset('samples.js')}</script></section>")


def read_embedded(page: str) -> Any:
    """The data embedded in a report.html (tests and tools): the JSON of the sb-data script tag."""
    start_tag = f'<script type="application/json" id="{DATA_ID}">'
    start = page.index(start_tag) + len(start_tag)
    return json.loads(page[start:page.index("</script>", start)])


# ---------------------------------------------------------------------------------------------------------------
# A comparison: each run's answers again, from the predictions file its metrics.json names.


def locate(recorded: str | Path, run_dir: Path) -> Path | None:
    """A path recorded by `polyalign eval`: as written (relative to where eval ran), else relative to each folder
    above the run (the workdir moved or the command runs elsewhere); None when none exists."""
    path = Path(recorded)
    if path.exists():
        return path
    if not path.is_absolute():
        for parent in Path(run_dir).resolve().parents:
            if (parent / path).exists():
                return parent / path
    return None


def run_answers(run: Mapping[str, Any], run_dir: Path, suite: Any) -> tuple[list[Answer] | None, str | None]:
    """(answers aligned with `suite.items`, None), or (None, why not): the predictions file is gone or is not the
    one that was scored (its sha256 differs)."""
    from .predictions import load_predictions

    meta = run["metadata"]
    path = locate(meta["predictions"], run_dir)
    if path is None:
        return None, f"predictions file {meta['predictions']} not found"
    if sha256_file(path) != meta.get("predictions_sha256"):
        return None, f"{path} changed since it was scored (sha256 differs)"
    try:
        preds = load_predictions(path, suite, sample=meta.get("sample"), allow_missing=True)
    except PolyAlignError as exc:
        return None, str(exc)
    return answers_of(preds.texts, preds.finish), None
