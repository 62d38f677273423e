"""A judge run: every (judge, item, candidate) task of a suite's items, resumable, then the summary.

Tasks are keyed by judge index, item id and method (pointwise) or method pair (pairwise). The prompt of a task is
built from `blind_item(record)` and candidate texts only (polyalign.judge.prompt); the method of a candidate is
kept here, outside the prompt. In pairwise mode the order of the two candidates is drawn from (seed, item id,
pair), so each method is shown first about half the time. An answer that is not valid JSON of the asked shape is
asked again with the error (at most `max_attempts` in all), then recorded as a failure: failures are counted per
judge, method and bucket, never dropped. A transport failure (after the client's retries) stops the run; run it
again to resume."""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import StrictModel, load_config
from ..endpoint.client import ChatClient
from ..endpoint.config import EndpointConfig
from ..endpoint.pool import read_part, run_resumable
from ..errors import ConfigError, InputError
from ..eval.predictions import load_predictions
from ..eval.suite import load_suite
from ..io import make_manifest, read_json, sha256_json, write_json
from .answer import AnswerError, parse_pairwise, parse_pointwise
from .prompt import BlindItem, blind_item, correction_messages, pairwise_messages, pointwise_messages
from .rubric import RUBRIC_FILE, Rubric, apply_caps, composite, load_rubric

PART_FILE = "judgments.part.jsonl"
JUDGE_CONFIG = RUBRIC_FILE.parent / "judge.yaml"


class JudgeConfig(StrictModel):
    """How the judge asks (configs/judge/judge.yaml)."""

    rubric: str = Field("rubric.yaml", description="Rubric YAML, relative to the judge config's folder.")
    mode: Literal["pointwise", "pairwise"] = Field("pointwise", description="One candidate per request (scores, "
                                                   "composites) or two (which is better; order seeded).")
    with_reference: bool = Field(True, description="Show the human reference answer (false: the variant "
                                 "without it; reference_alignment is then not asked).")
    max_attempts: int = Field(3, ge=1, description="Answers asked at most per task (retries after an invalid one).")
    max_tokens: int = Field(384, ge=1, description="Tokens of one judge answer.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0 = greedy).")
    seed: int = Field(0, description="Seed of the pairwise order, request seeds and the bootstrap.")
    json_mode: Literal["off", "json_object"] = Field("off", description="Send response_format json_object (only "
                                                     "for servers that enforce it; answers are validated anyway).")
    bootstrap_draws: int = Field(200, ge=10, description="Bootstrap draws of the CIs.")


def load_judge_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> tuple[JudgeConfig, Rubric]:
    """The judge config and its rubric (relative to the config's folder)."""
    path = Path(path or JUDGE_CONFIG)
    config = load_config(path, JudgeConfig, overrides)
    rubric_path = Path(config.rubric)
    return config, load_rubric(rubric_path if rubric_path.is_absolute() else path.parent / rubric_path)


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:4], "little") >> 1


def pair_order(seed: int, item_id: str, a: str, b: str) -> tuple[str, str]:
    """The seeded order in which the candidates of methods a and b are shown."""
    return (a, b) if random.Random(_seed(seed, item_id, a, b)).random() < 0.5 else (b, a)


def ask(client: ChatClient, endpoint: EndpointConfig, config: JudgeConfig, messages: list[dict[str, str]],
        parse: Any, seed: int) -> dict[str, Any]:
    """Ask until a valid answer or max_attempts: {"status", "attempts", "value", "error", "answer"}."""
    body: dict[str, Any] = {"model": endpoint.model_name, "temperature": config.temperature,
                            endpoint.max_tokens_field: config.max_tokens}
    if endpoint.send_seed:
        body["seed"] = seed
    if config.json_mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    conversation, error, text = messages, "", ""
    for attempt in range(1, config.max_attempts + 1):
        answer = client.post({**body, "messages": conversation})
        choice = (answer.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        try:
            return {"status": "ok", "attempts": attempt, "value": parse(text),
                    "truncated": choice.get("finish_reason") == "length"}
        except AnswerError as exc:
            error = str(exc)
            conversation = correction_messages(messages, text, error)
    return {"status": "failed", "attempts": config.max_attempts, "error": error, "answer": text[:500]}


def _pointwise_task(client, endpoint, config, rubric, item: BlindItem, text: str, seed: int) -> dict[str, Any]:
    dims = rubric.asked(item.reference is not None)
    if not text.strip():  # nothing to judge: the empty cap, without asking
        flags = {f: f == "empty_or_unintelligible" for f in rubric.caps}
        scores = apply_caps({d: rubric.scale.max for d in dims}, flags, rubric)
        return {"status": "ok", "attempts": 0, "scores": scores, "flags": flags, "capped": scores,
                "composites": {c: composite(scores, w, rubric.scale) for c, w in rubric.composites.items()}}
    result = ask(client, endpoint, config, pointwise_messages(rubric, item, text),
                 lambda t: parse_pointwise(t, rubric, dims), seed)
    if result["status"] == "ok":
        scores, flags = result.pop("value")
        capped = apply_caps(scores, flags, rubric)
        result.update(scores=scores, flags=flags, capped=capped,
                      composites={c: composite(capped, w, rubric.scale) for c, w in rubric.composites.items()})
    return result


def _pairwise_task(client, endpoint, config, rubric, item: BlindItem, first: str, second: str,
                   seed: int) -> dict[str, Any]:
    result = ask(client, endpoint, config, pairwise_messages(rubric, item, first, second), parse_pairwise, seed)
    if result["status"] == "ok":
        result["shown_winner"] = result.pop("value")
    return result


def run_judge(judges: Sequence[EndpointConfig], methods: dict[str, str | Path], suite_dir: str | Path,
              out_dir: str | Path, config: JudgeConfig | None = None, rubric: Rubric | None = None, *,
              per_bucket: int | None = None, limit: int | None = None, sample: int | None = None,
              on_done: Any = None) -> dict[str, Any]:
    """Judge every method's predictions on the suite's items (at most `per_bucket` per bucket and `limit` in all,
    in suite order)
    with every judge; write out_dir/judgments.jsonl, summary.json, report.md and manifest.json; return the
    summary."""
    from ..io import write_jsonl
    from .summary import summarize, write_report

    config = config or JudgeConfig()
    rubric = rubric or load_rubric()
    if not judges:
        raise ConfigError("no judge endpoint given")
    if len(methods) < (2 if config.mode == "pairwise" else 1):
        raise InputError(f"{config.mode} judging needs {'two' if config.mode == 'pairwise' else 'one'} or more "
                         f"methods")
    for judge in judges:
        judge.api_key()
    suite = load_suite(suite_dir)
    preds = {name: load_predictions(path, suite, sample=sample, allow_missing=True) for name, path in
             methods.items()}
    chosen, per = [], {}
    for i, record in enumerate(suite.items):
        per[record.bucket_id] = per.get(record.bucket_id, 0) + 1
        if per_bucket is None or per[record.bucket_id] <= per_bucket:
            chosen.append(i)
    chosen = chosen[:limit] if limit is not None else chosen
    out_dir = Path(out_dir)
    identity = {"judges": [(j.chat_url, j.model_name) for j in judges], "config": config.model_dump(),
                "rubric": rubric.model_dump(), "suite": suite.version, "items": [suite.items[i].id for i in chosen],
                "methods": {n: p.sha256 for n, p in preds.items()}, "sample": sample}
    manifest_path = out_dir / "manifest.json"
    if (out_dir / PART_FILE).exists() and manifest_path.exists() and \
            read_json(manifest_path).get("identity_sha256") != sha256_json(identity):
        raise ConfigError(f"{out_dir} holds judgments made with other judges, settings, items or predictions; use "
                          f"another --out directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    write_json(manifest_path, make_manifest(stage="judge", config=config.model_dump(), seed=config.seed,
                                            inputs={n: str(p) for n, p in methods.items()},
                                            extra={"identity_sha256": sha256_json(identity), "status": "running"}))
    clients = [ChatClient(j) for j in judges]
    tasks, meta = [], {}
    for j, (judge, client) in enumerate(zip(judges, clients)):
        for i in chosen:
            record = suite.items[i]
            item = blind_item(record, with_reference=config.with_reference)
            seed = _seed(config.seed, record.id)
            base = {"judge": j, "item": record.id, "bucket_id": record.bucket_id,
                    "context_bucket": "|".join([record.language, record.track, record.family])}
            if config.mode == "pointwise":
                for name, p in preds.items():
                    if p.texts[i] is None:
                        continue
                    key = f"{j}|{record.id}|{name}"
                    meta[key] = {**base, "method": name}
                    tasks.append((key, (lambda c=client, e=judge, it=item, t=p.texts[i], s=seed, k=key:
                                        {**meta[k], **_pointwise_task(c, e, config, rubric, it, t, s)})))
            else:
                for a, b in itertools.combinations(preds, 2):
                    if preds[a].texts[i] is None or preds[b].texts[i] is None:
                        continue
                    first, second = pair_order(config.seed, record.id, a, b)
                    key = f"{j}|{record.id}|{a}|{b}"
                    meta[key] = {**base, "pair": [a, b], "first": first, "second": second}
                    tasks.append((key, (lambda c=client, e=judge, it=item, f=preds[first].texts[i],
                                        g=preds[second].texts[i], s=seed, k=key:
                                        {**meta[k], **_pairwise_task(c, e, config, rubric, it, f, g, s)})))
    part = out_dir / PART_FILE
    try:
        n_new = run_resumable(tasks, part, max(j.concurrency for j in judges), on_done)
    finally:
        stats = [c.stats.as_dict() for c in clients]
        for c in clients:
            c.close()
    done = read_part(part)
    rows = [done[key] for key, _ in tasks]
    for row in rows:
        if config.mode == "pairwise" and row["status"] == "ok":
            row["winner"] = {"1": row["first"], "2": row["second"]}.get(row["shown_winner"], "tie")
    write_jsonl(out_dir / "judgments.jsonl", rows)
    summary = summarize(rows, rubric, config, methods=list(preds), n_judges=len(judges))
    summary["requests"] = stats
    summary["judges"] = [{"url": j.chat_url, "model_name": j.model_name} for j in judges]
    write_json(out_dir / "summary.json", summary)
    write_report(out_dir / "report.md", summary)
    write_json(manifest_path, make_manifest(stage="judge", config=config.model_dump(), seed=config.seed,
                                            inputs={n: str(p) for n, p in methods.items()}, started=started,
                                            extra={"identity_sha256": sha256_json(identity), "status": "complete",
                                                   "n_tasks": len(tasks), "n_judged_now": n_new,
                                                   "judges": summary["judges"], "requests": stats}))
    return summary
