"""Generation through an OpenAI-compatible endpoint, writing the artifact local generation writes.

`generate_predictions_endpoint(endpoint, records, out_dir, decoding)` sends each record's chat messages (the same
`prompt_messages` as local generation; cut from the left with the served model's tokenizer when
decoding.max_prompt_tokens is set) with at most `endpoint.concurrency` requests in flight. Each finished item is
appended as one line to `out_dir/predictions.part.jsonl` (flushed; a line torn by a kill is dropped on resume),
so a killed run resumes without generating a finished item again. When every item is done, `predictions.jsonl`
(the rows of polyalign.generate: id, sample, bucket fields, prediction, finish) is written atomically, with
`manifest.json` (decoding, endpoint config without the key, retries by reason, what the server could not be
checked on)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..generate import PREDICTIONS_FILE, DecodingConfig, _check_resume, _complete, _get, _messages, _row
from ..io import make_manifest, write_json, write_jsonl
from .client import ChatClient, EndpointError
from .config import EndpointConfig
from .pool import read_part, run_resumable
from .params import RequestPlan, read_choices, request_plan, request_seed

PART_FILE = "predictions.part.jsonl"


def fit_messages(tokenizer: Any, conversations: Sequence[list[dict[str, str]]],
                 max_prompt_tokens: int) -> tuple[list[list[dict[str, str]]], int]:
    """The conversations cut from the left to fit `max_prompt_tokens` of the chat template (the cut of local
    generation, polyalign.generate.render_prompts, returned as messages); returns (conversations, number cut)."""
    from ..models.chat import chat_token_count, fit_chat

    out, n_cut = [], 0
    for messages in conversations:
        n = chat_token_count(tokenizer, messages)
        if n > max_prompt_tokens:
            out.append(fit_chat(tokenizer, messages, None, max_prompt_tokens, n_tokens=n).prompt)
            n_cut += 1
        else:
            out.append(list(messages))
    return out, n_cut


def complete_item(client: ChatClient, plan: RequestPlan, decoding: DecodingConfig, endpoint: EndpointConfig,
                  record: Any, messages: list[dict[str, str]]) -> tuple[list[dict[str, Any]], int | None]:
    """The prediction rows of one record (every sample) and its completion tokens (None if unreported)."""
    item_id = str(_get(record, "id"))
    rows: list[dict[str, Any]] = []
    tokens: int | None = 0
    for r in range(plan.requests_per_prompt):
        body = {**plan.fields, "messages": messages}
        if endpoint.send_seed:
            body["seed"] = request_seed(decoding.seed, item_id, r)
        answer = client.post(body)
        choices, used = read_choices(answer, plan, decoding.max_new_tokens, f"item {item_id}")
        tokens = None if used is None or tokens is None else tokens + used
        for choice in choices:
            rows.append(_row(record, len(rows), choice.text, choice.finish == "length"))
    return rows, tokens


def generate_predictions_endpoint(endpoint: EndpointConfig, records: Sequence[Any], out_dir: str | Path,
                                  decoding: DecodingConfig | None = None, *, profile: bool = False,
                                  on_item: Callable[[int, int], None] | None = None) -> Path:
    """Generate predictions for `records` through `endpoint` into out_dir/predictions.jsonl (resumable; see the
    module doc) and return that file's path. `on_item(done, total)` reports progress in records."""
    decoding = decoding or DecodingConfig()
    started = time.time()
    if not records:
        raise InputError("no records to generate for")
    ids = [str(_get(r, "id")) for r in records]
    if len(set(ids)) != len(ids):
        raise InputError("record ids are not unique", field="id")
    plan = request_plan(decoding, endpoint)   # refuses what the endpoint cannot honour, before any request
    endpoint.api_key()                        # refuses a missing required key, before anything is written
    out_dir = Path(out_dir)
    identity = {"endpoint": endpoint.chat_url, "model": endpoint.model_name, "decoding": decoding.model_dump(),
                "profile": profile, "prompt_tokenizer": endpoint.tokenizer}
    _check_resume(out_dir, identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    part, path = out_dir / PART_FILE, out_dir / PREDICTIONS_FILE
    done = read_part(part, key="id")
    todo = [r for r in records if str(_get(r, "id")) not in done]
    if not todo and path.exists() and _complete(out_dir, identity):
        return path
    config = {"decoding": decoding.model_dump(), "profile": profile, "backend": "endpoint",
              "endpoint": endpoint.public()}
    base = {"identity": identity, "backend": "endpoint", "n_records": len(records),
            "n_samples_per_record": decoding.num_samples}
    write_json(out_dir / "manifest.json", make_manifest(stage="generate", config=config,
                                                        inputs={"model": endpoint.model_name}, seed=decoding.seed,
                                                        extra={**base, "status": "running"}))
    conversations = [_messages(r, profile) for r in todo]
    n_cut = 0
    if decoding.max_prompt_tokens is not None:
        from ..models.loading import load_tokenizer

        conversations, n_cut = fit_messages(load_tokenizer(endpoint.tokenizer, chat=True), conversations,
                                            decoding.max_prompt_tokens)
    gen_started = time.perf_counter()

    def task(record: Any, messages: list[dict[str, str]]) -> tuple[str, Callable[[], dict[str, Any]]]:
        def call() -> dict[str, Any]:
            rows, used = complete_item(client, plan, decoding, endpoint, record, messages)
            return {"rows": rows, "tokens": used}
        return str(_get(record, "id")), call

    n_before = len(records) - len(todo)
    progress = (lambda n: on_item(n_before + n, len(records))) if on_item else None
    with ChatClient(endpoint) as client:
        try:
            n_new = run_resumable([task(r, m) for r, m in zip(todo, conversations)], part, endpoint.concurrency,
                                  progress, key="id")
        except EndpointError as exc:
            n_kept = len(read_part(part, key="id")) - len(done)
            raise EndpointError(f"{exc} ({n_kept} item(s) finished now are kept in {part}; run again to "
                                f"resume)") from exc
        stats = client.stats.as_dict()
    seconds = time.perf_counter() - gen_started
    finished = read_part(part, key="id")
    used = [finished[i].get("tokens") for i in set(ids) - set(done)]
    tokens = None if any(u is None for u in used) else sum(used)
    rows = [row for record in records for row in finished[str(_get(record, "id"))]["rows"]]
    write_jsonl(path, rows)
    write_json(out_dir / "manifest.json", make_manifest(
        stage="generate", config=config, inputs={"model": endpoint.model_name}, seed=decoding.seed,
        started=started, extra={
            **base, "status": "complete", "n_rows": len(rows), "n_generated_now": n_new * decoding.num_samples,
            "n_skipped_done": len(records) - len(todo), "n_prompts_cut": n_cut,
            "new_tokens": tokens, "generation_seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 2) if tokens and seconds > 0 else None,
            "endpoint_report": {**stats, "unverified": plan.unverified, "not_applicable": plan.not_applicable,
                                "finish": {f: sum(r["finish"] == f for r in rows) for f in ("stop", "length")}}}))
    return path
