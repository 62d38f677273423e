"""The evaluation verbs (`polyalign suite | eval | compare`), the registry and its docs, the hidden-states
featurizer, and a real screenshot of a report (skipped without Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from eval_helpers import feature_fn
from model_factory import make_tiny_model_dir
from records_factory import make_records, write_data_dir
from typer.testing import CliRunner

from polyalign.cli import app
from polyalign.errors import InputError
from polyalign.eval.featurizers import HiddenStates, make_featurizer
from polyalign.eval.registry import DIRECTIONS, FAMILIES, load_all, render_markdown

runner = CliRunner(env={"COLUMNS": "250"})


def test_docs_metrics_md_is_generated_from_the_registry(repo_root):
    assert (repo_root / "docs" / "metrics.md").read_text(encoding="utf-8") == render_markdown(), \
        "docs/metrics.md is stale: python -m polyalign.eval.registry > docs/metrics.md"


def test_every_metric_is_documented_with_family_direction_and_formula():
    registry = load_all()
    # every per-group metric is computed through its registration (the scorers only loop over the registry)
    assert all(spec.score is not None for spec in registry.values() if spec.scope == "bucket")
    for spec in registry.values():
        assert spec.family in FAMILIES and spec.direction in DIRECTIONS
        assert spec.description and spec.formula and spec.function.startswith("polyalign.eval.")
    assert all(registry[m].ceiling for m in ("feature_gap", "coverage_joint", "c2st_acc", "mauve", "c_mauve",
                                             "length_w1", "bucket_match", "tdm"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return write_data_dir(root / "data", {"train": make_records(400, seed=3, split="train"),
                                          "val": make_records(30, seed=3, split="val"),
                                          "test": make_records(150, seed=3, split="test")})


def _invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_suite_eval_compare_from_the_command_line(data_dir, tmp_path):
    suite = tmp_path / "suite"
    out = _invoke(["suite", "--data", data_dir, "--out", suite, "--cap-per-bucket", 20, "--ref-pool", 60])
    assert "suite written to" in out
    items = [json.loads(line) for line in (suite / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": r["response"][::-1]}, ensure_ascii=False)
                             + "\n" for r in items), encoding="utf-8")
    out = _invoke(["eval", "--predictions", preds, "--suite", suite, "--out", tmp_path / "runs" / "rev"])
    assert "held-out humans" in out and "c2st_acc" in out and "report:" in out
    shutil.copytree(tmp_path / "runs" / "rev", tmp_path / "runs" / "rev2")
    rounds = tmp_path / "runs" / "rounds_b"
    rounds.mkdir()
    (rounds / "rounds.json").write_text(json.dumps({"method": "b", "context_key": ["language"], "rows": [
        {"round": 1, "policy": "p", "critic_auc": 0.9, "length_by_context": {"en": {"model": 3.0, "human": 4.0}}}]}))
    out = _invoke(["compare", tmp_path / "runs" / "rev", tmp_path / "runs" / "rev2", "--names", "a,b",
                   "--out", tmp_path / "cmp", "--rounds", f"b={rounds}"])
    assert "held-out humans" in out and (tmp_path / "cmp" / "report.html").exists()
    assert "paired tests: 0 of" in out  # the same run twice: no difference can be significant
    assert "## Rounds" in (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="NAME=FOLDER"):
        _invoke(["compare", tmp_path / "runs" / "rev", "--out", tmp_path / "cmp2", "--rounds", str(rounds)])


def test_eval_argument_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="exactly one of"):
        _invoke(["eval", "--suite", tmp_path, "--out", tmp_path / "o"])
    with pytest.raises(InputError, match="not an evaluation suite"):
        _invoke(["eval", "--predictions", tmp_path / "p.jsonl", "--suite", tmp_path, "--out", tmp_path / "o"])


def test_bad_input_prints_one_line_and_exits_2(tmp_path):
    polyalign = shutil.which("polyalign", path=str(sys.executable).rsplit("/", 1)[0])
    proc = subprocess.run([polyalign, "eval", "--predictions", str(tmp_path / "p.jsonl"), "--suite", str(tmp_path),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "not an evaluation suite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_eval_with_a_model_generates_with_the_shared_decoding_then_scores(data_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    model = make_tiny_model_dir(tmp_path)
    suite = tmp_path / "suite"
    _invoke(["suite", "--data", data_dir, "--out", suite, "--cap-per-bucket", 12, "--ref-pool", 40])
    decoding = tmp_path / "decoding.yaml"
    decoding.write_text("max_new_tokens: 6\nbatch_size: 32\nseed: 0\n", encoding="utf-8")
    out = _invoke(["eval", "--model", model, "--suite", suite, "--out", tmp_path / "run", "--decoding", decoding])
    assert "held-out humans" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    n_items = sum(1 for _ in open(suite / "items.jsonl", encoding="utf-8"))
    assert metrics["metadata"]["gaps"]["scored"] == n_items
    assert metrics["metadata"]["predictions_manifest"]["config"]["decoding"]["max_new_tokens"] == 6


def test_hidden_states_featurizer_mean_pools_the_last_hidden_state(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model_dir = make_tiny_model_dir(tmp_path)
    featurizer = make_featurizer("hidden-states", model=str(model_dir), batch_size=2, device="cpu")
    texts = ["你好，世界。", "Hello there, how are you doing today?", "ok"]
    got = featurizer.transform(texts)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        ids = tokenizer(texts[1], return_tensors="pt")
        hidden = model(**ids, output_hidden_states=True).hidden_states[-1][0]
    assert got.shape == (3, model.config.hidden_size)
    np.testing.assert_allclose(got[1], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert featurizer.spec()["model"] == str(model_dir)
    with pytest.raises(ValueError, match="needs a model"):
        make_featurizer("hidden-states")
    assert isinstance(featurizer, HiddenStates)


def test_report_screenshot_in_headless_chromium(tmp_path, repo_root):
    sys.path.insert(0, str(repo_root / "benchmarks"))
    try:
        from screenshot_report import find_browser, screenshot
    finally:
        sys.path.pop(0)
    if find_browser() is None:  # a real component: `make test` installs it, so a missing browser is a failure
        pytest.fail("chromium is not installed: run `make browser` (apt-get install -y chromium)")
    from polyalign.eval import plots, report

    fn, names = feature_fn()
    figure = plots.length_overlay({"en": np.array([3.0, 5, 8, 13])}, {"m": {"en": np.array([2.0, 4, 9])}})
    html = report.page("shot", f'<section id="lengths"><img src="data:image/png;base64,{figure}"></section>')
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    png = screenshot(page, tmp_path / "shot.png", width=800, height=600)
    from PIL import Image

    image = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert image.shape == (600, 800)
    assert image.std() > 5  # the embedded figure rendered (not a blank page)
