"""The endpoint backend against a REAL OpenAI-compatible server: `transformers serve` (pinned transformers, its
[serving] extra) on the tiny test model, started here on localhost; faults are injected by a small real HTTP
proxy in front of it (tests/served.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir
from served import FaultProxy, free_port

from polyalign.endpoint.client import EndpointError
from polyalign.endpoint.config import EndpointConfig
from polyalign.endpoint.generate import PART_FILE, generate_predictions_endpoint
from polyalign.errors import ConfigError
from polyalign.generate import DecodingConfig, generate_predictions
from polyalign.models.chat import prompt_messages

GREEDY = DecodingConfig(max_new_tokens=10, do_sample=False, batch_size=8)
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(served_tiny):
    return served_tiny


def _endpoint(url: str, world, **kw) -> EndpointConfig:
    return EndpointConfig(url=url, model_name=str(world["model"]), **{**FAST, **kw})


def _rows(path: Path) -> list[dict]:
    return sorted((json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()),
                  key=lambda r: (r["id"], r["sample"]))


def _normalize(metrics):
    """The metric values of a metrics.json (metadata names the predictions file and its manifest)."""
    return {k: v for k, v in metrics.items() if k != "metadata"}


def test_served_and_local_greedy_give_identical_predictions_and_metrics(world, tmp_path):
    from polyalign.eval.runner import evaluate
    from polyalign.eval.suite import build_suite, load_suite

    data = write_data_dir(tmp_path / "data", {"train": make_records(300, seed=4, split="train"),
                                              "test": make_records(60, seed=4, split="test")})
    fn, names = feature_fn()
    suite_dir = build_suite(data, tmp_path / "suite", cap_per_bucket=4, ref_pool=40, min_pool=10, feature_fn=fn,
                            feature_names=names)
    items = load_suite(suite_dir).items
    local = generate_predictions(world["model"], items, tmp_path / "local", GREEDY, device="cpu")
    served = generate_predictions_endpoint(_endpoint(world["url"], world, concurrency=3), items,
                                           tmp_path / "served", GREEDY)
    a, b = _rows(local), _rows(served)
    assert len(a) == len(items) and a == b
    assert len({r["prediction"] for r in a}) > len(a) // 3  # varied text, not one string for every prompt
    manifest = json.loads((tmp_path / "served" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["backend"] == "endpoint"
    assert manifest["endpoint_report"]["retries_total"] == 0 and manifest["new_tokens"] > 0
    m_local = evaluate(local, suite_dir, tmp_path / "eval_local", feature_fn=fn, feature_names=names, seed=0,
                       figures=False)
    m_served = evaluate(served, suite_dir, tmp_path / "eval_served", feature_fn=fn, feature_names=names, seed=0,
                        figures=False)
    assert json.dumps(_normalize(m_local), sort_keys=True) == json.dumps(_normalize(m_served), sort_keys=True)


def test_500s_429s_dropped_connections_and_timeouts_are_retried_and_counted(world, tmp_path):
    records = make_records(5, 1, split="test")
    reference = _rows(generate_predictions_endpoint(_endpoint(world["url"], world), records, tmp_path / "ref",
                                                    GREEDY))
    faults = ["500", "429", "503", "drop", ("delay", 2.5)]
    with FaultProxy(world["url"], faults=faults) as proxy:
        out = generate_predictions_endpoint(_endpoint(proxy.url, world, concurrency=1, timeout_s=1.0, max_retries=5), records,
                                            tmp_path / "faulty", GREEDY)
    assert _rows(out) == reference  # nothing lost, nothing doubled
    report = json.loads((tmp_path / "faulty" / "manifest.json").read_text())["endpoint_report"]
    assert report["retries"] == {"429": 1, "500": 1, "503": 1, "connect": 1, "timeout": 1}
    assert report["requests"] == 5 + 5 and report["failed_requests"] == 0


def test_retries_are_bounded_then_a_clear_error_and_finished_items_are_kept(world, tmp_path):
    records = make_records(4, 2, split="test")
    with FaultProxy(world["url"], faults=[None, "500", "500", "500"]) as proxy:
        with pytest.raises(EndpointError, match=r"HTTP 500.*gave up after 2 retries.*item\(s\) finished") as info:
            generate_predictions_endpoint(_endpoint(proxy.url, world, concurrency=1, max_retries=2), records,
                                          tmp_path / "o", GREEDY)
    assert not (tmp_path / "o" / "predictions.jsonl").exists()
    kept = len((tmp_path / "o" / PART_FILE).read_text().splitlines())  # the first item, and one that was in flight
    assert 1 <= kept < 4 and f"({kept} item(s) finished now" in str(info.value)


def test_server_down_is_a_clear_error(world, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointError, match="cannot reach the server.*ConnectError.*gave up after 1 retries"):
        generate_predictions_endpoint(_endpoint(dead, world, max_retries=1), make_records(2, 0), tmp_path / "o",
                                      GREEDY)
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_api_key_required_missing_wrong_and_never_written(world, tmp_path, monkeypatch, capfd):
    for name in ("POLYALIGN_API_KEY", "OPENAI_API_KEY", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    records = make_records(3, 5, split="test")
    with pytest.raises(ConfigError, match=r"demands an API key.*\$MY_KEY"):
        generate_predictions_endpoint(_endpoint(world["url"], world, require_api_key=True, api_key_env=["MY_KEY"]),
                                      records, tmp_path / "none", GREEDY)
    assert not (tmp_path / "none").exists()
    secret = "sk-test-" + "7f3a9c" * 4
    with FaultProxy(world["url"], require_key=secret) as proxy:
        monkeypatch.setenv("MY_KEY", secret + "x")
        with pytest.raises(EndpointError, match=r"HTTP 401 \(check the API key in \$MY_KEY\)") as info:
            generate_predictions_endpoint(_endpoint(proxy.url, world, api_key_env=["MY_KEY"]), records,
                                          tmp_path / "wrong", GREEDY)
        assert secret not in str(info.value)
        monkeypatch.setenv("MY_KEY", secret)
        generate_predictions_endpoint(_endpoint(proxy.url, world, api_key_env=["MY_KEY"], require_api_key=True),
                                      records, tmp_path / "ok", GREEDY)
        assert all(h.get("authorization") == f"Bearer {secret}" for h in proxy.headers[-3:])
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    out, err = capfd.readouterr()
    assert secret.encode() not in written and secret not in out + err


def test_a_server_that_ignores_max_tokens_is_caught(world, tmp_path):
    def ignore_limit(body):
        return {**body, "max_tokens": body["max_tokens"] + 6}

    with FaultProxy(world["url"], rewrite=ignore_limit) as proxy:
        with pytest.raises(EndpointError, match=r"16 completion tokens for max_tokens=10.*ignores the token limit"):
            generate_predictions_endpoint(_endpoint(proxy.url, world, concurrency=1), make_records(2, 0, "test"),
                                          tmp_path / "o", GREEDY)


def test_transformers_serve_ignores_n_which_is_caught_and_separate_requests_work(world, tmp_path):
    sampling = DecodingConfig(max_new_tokens=6, num_samples=2, seed=3)
    records = make_records(3, 6, split="test")
    with pytest.raises(EndpointError, match=r"asked for n=2 choices, got 1: the server ignores `n`"):
        generate_predictions_endpoint(_endpoint(world["url"], world), records, tmp_path / "n", sampling)
    out = generate_predictions_endpoint(_endpoint(world["url"], world, samples_per_request="separate"), records,
                                        tmp_path / "sep", sampling)
    rows = _rows(out)
    assert [(r["id"], r["sample"]) for r in rows] == [(r.id, k) for r in sorted(records, key=lambda r: r.id)
                                                      for k in (0, 1)]


def test_decoding_the_api_cannot_carry_is_refused_before_any_request(world, tmp_path):
    with FaultProxy(world["url"]) as proxy:
        endpoint = _endpoint(proxy.url, world)
        for decoding, what in ((DecodingConfig(top_k=5), "top_k"), (DecodingConfig(repetition_penalty=1.2),
                                                                   "repetition_penalty"),
                               (DecodingConfig(max_prompt_tokens=64), "needs the served model's tokenizer")):
            with pytest.raises(ConfigError, match=what):
                generate_predictions_endpoint(endpoint, make_records(2, 0), tmp_path / what, decoding)
        assert proxy.bodies == []
        # listed as accepted: sent; transformers serve rejects the unknown field (422), an error, not retried
        with pytest.raises(EndpointError, match="HTTP 422"):
            generate_predictions_endpoint(_endpoint(proxy.url, world, extra_params=["top_k"]), make_records(2, 0),
                                          tmp_path / "k", DecodingConfig(top_k=5))
        assert proxy.bodies[-1]["top_k"] == 5


def test_prompts_are_cut_as_local_generation_cuts_them(world, tmp_path):
    cut = GREEDY.model_copy(update={"max_prompt_tokens": 24})
    records = make_records(6, 2, split="test")
    local = generate_predictions(world["model"], records, tmp_path / "local", cut, device="cpu")
    served = generate_predictions_endpoint(_endpoint(world["url"], world, tokenizer=str(world["model"])), records,
                                           tmp_path / "served", cut)
    assert _rows(local) == _rows(served)
    assert json.loads((tmp_path / "served" / "manifest.json").read_text())["n_prompts_cut"] > 0


RUN = """
import sys
from records_factory import make_records
from polyalign.endpoint.config import EndpointConfig
from polyalign.endpoint.generate import generate_predictions_endpoint
from polyalign.generate import DecodingConfig
generate_predictions_endpoint(EndpointConfig(url=sys.argv[1], model_name=sys.argv[2], concurrency=2),
                              make_records(16, 8, split="test"), sys.argv[3],
                              DecodingConfig(max_new_tokens=10, do_sample=False))
"""


def test_killed_mid_run_then_resumed_nothing_twice_nothing_lost(world, tmp_path):
    records = make_records(16, 8, split="test")
    prompt_of = {prompt_messages(r)[-1]["content"]: r.id for r in records}
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    with FaultProxy(world["url"], faults=[("delay", 0.4)] * 16) as slow:
        proc = subprocess.Popen([sys.executable, "-c", RUN, slow.url, str(world["model"]), str(out)], env=env,
                                start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            part = out / PART_FILE
            if part.exists() and len(part.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
        exited = proc.poll()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert exited is None, "the run finished before it could be killed"
    done_at_kill = {json.loads(line)["id"] for line in (out / PART_FILE).read_text().splitlines() if line.endswith("}")}
    assert 4 <= len(done_at_kill) < 16 and not (out / "predictions.jsonl").exists()
    with FaultProxy(world["url"]) as proxy:
        path = generate_predictions_endpoint(_endpoint(proxy.url, world, concurrency=2), records, out,
                                             DecodingConfig(max_new_tokens=10, do_sample=False))
    asked_again = {prompt_of[b["messages"][-1]["content"]] for b in proxy.bodies}
    assert asked_again.isdisjoint(done_at_kill) and len(proxy.bodies) == 16 - len(done_at_kill)
    rows = _rows(path)
    assert [r["id"] for r in rows] == sorted(r.id for r in records)  # every item once
    fresh = generate_predictions_endpoint(_endpoint(world["url"], world), records, tmp_path / "fresh",
                                          DecodingConfig(max_new_tokens=10, do_sample=False))
    assert rows == _rows(fresh)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_skipped_done"] == len(done_at_kill) and manifest["n_generated_now"] == 16 - len(done_at_kill)


def test_resume_refuses_other_settings_and_a_finished_run_is_not_sent_again(world, tmp_path):
    records = make_records(3, 9, split="test")
    with FaultProxy(world["url"]) as proxy:
        endpoint = _endpoint(proxy.url, world)
        generate_predictions_endpoint(endpoint, records, tmp_path / "o", GREEDY)
        n = len(proxy.bodies)
        generate_predictions_endpoint(endpoint, records, tmp_path / "o", GREEDY)
        assert len(proxy.bodies) == n == 3
        with pytest.raises(ConfigError, match="different model, decoding"):
            generate_predictions_endpoint(endpoint, records, tmp_path / "o",
                                          GREEDY.model_copy(update={"max_new_tokens": 11}))


def test_cli_generate_and_eval_with_an_endpoint(world, tmp_path):
    from typer.testing import CliRunner

    from polyalign.cli import app

    data = write_data_dir(tmp_path / "data", {"train": make_records(300, seed=5, split="train"),
                                              "test": make_records(40, seed=5, split="test")})
    runner = CliRunner(env={"COLUMNS": "250"})
    common = ["--endpoint", world["url"], "--model-name", str(world["model"])]
    res = runner.invoke(app, ["generate", *common, "--records", f"{data}:test", "--limit", "3", "--out",
                              str(tmp_path / "gen"), "--set", "max_new_tokens=5", "--set", "do_sample=false", "-q"])
    assert res.exit_code == 0, res.output
    assert "3 predictions" in res.output and "endpoint: 3 requests, retries: none" in res.output
    res = runner.invoke(app, ["generate", *common, "--model", str(world["model"]), "--records", f"{data}:test",
                              "--out", str(tmp_path / "x")])
    assert "exactly one of" in str(res.exception)
    res = runner.invoke(app, ["suite", "--data", str(data), "--out", str(tmp_path / "suite"), "--cap-per-bucket",
                              "3", "--ref-pool", "40", "--min-pool", "10"])
    assert res.exit_code == 0, res.output
    decoding = tmp_path / "d.yaml"
    decoding.write_text("max_new_tokens: 5\ndo_sample: false\n")
    res = runner.invoke(app, ["eval", *common, "--suite", str(tmp_path / "suite"), "--out", str(tmp_path / "ev"),
                              "--decoding", str(decoding)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["metadata"]["predictions_manifest"]["backend"] == "endpoint"
