"""Batched generation: rows and manifest, batched = one-at-a-time (greedy), seeding, resume, bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from model_factory import make_tiny_model_dir
from records_factory import make_records, write_data_dir

from polyalign.errors import ConfigError, InputError, PolyAlignError
from polyalign.generate import DecodingConfig, generate_predictions, generate_texts, load_records_arg, \
    render_prompts
from polyalign.models.chat import prompt_messages

torch.set_num_threads(1)
GREEDY = DecodingConfig(max_new_tokens=12, do_sample=False, batch_size=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("gen"))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predictions_rows_and_manifest(model_dir: Path, tmp_path: Path) -> None:
    records = make_records(12, 7, split="test")
    path = generate_predictions(model_dir, records, tmp_path / "g", DecodingConfig(max_new_tokens=8, num_samples=2,
                                                                                  batch_size=5))
    rows = _rows(path)
    assert len(rows) == 24 and {(r["id"], r["sample"]) for r in rows} == {(r.id, k) for r in records for k in (0, 1)}
    by_id = {r.id: r for r in records}
    for row in rows:
        rec = by_id[row["id"]]
        assert (row["bucket_id"], row["language"], row["track"], row["family"], row["length_bin"]) == \
               (rec.bucket_id, rec.language, rec.track, rec.family, rec.length_bin)
        assert isinstance(row["prediction"], str)
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["decoding"]["num_samples"] == 2
    assert manifest["n_rows"] == 24 and manifest["new_tokens"] > 0


def test_batched_greedy_equals_one_prompt_at_a_time(model_dir: Path) -> None:
    from polyalign.models.loading import load_causal_lm, load_tokenizer

    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir, device="cpu")
    records = make_records(8, 9)
    texts, lengths, _ = render_prompts(tok, [prompt_messages(r) for r in records], None)
    assert len(set(lengths)) > 1  # prompts of different lengths: left padding matters
    batched, stats = generate_texts(model, tok, texts, GREEDY)
    single = [generate_texts(model, tok, [t], GREEDY)[0][0] for t in texts]
    assert batched == single
    assert stats.n_sequences == 8 and stats.new_tokens > 0 and stats.tokens_per_second > 0


def test_sampling_is_seeded(model_dir: Path, tmp_path: Path) -> None:
    records = make_records(6, 3)
    cfg = DecodingConfig(max_new_tokens=10, seed=5)
    a = _rows(generate_predictions(model_dir, records, tmp_path / "a", cfg))
    b = _rows(generate_predictions(model_dir, records, tmp_path / "b", cfg))
    c = _rows(generate_predictions(model_dir, records, tmp_path / "c", cfg.model_copy(update={"seed": 6})))
    assert a == b and a != c


def test_resume_skips_done_rows_and_refuses_other_settings(model_dir: Path, tmp_path: Path) -> None:
    records = make_records(10, 4)
    out = tmp_path / "r"
    generate_predictions(model_dir, records[:4], out, GREEDY)
    generate_predictions(model_dir, records, out, GREEDY)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = _rows(out / "predictions.jsonl")
    assert len(rows) == 10 and manifest["n_generated_now"] == 6 and manifest["n_skipped_done"] == 4
    assert len({r["id"] for r in rows}) == 10
    with pytest.raises(ConfigError, match="different model, decoding"):
        generate_predictions(model_dir, records, out, GREEDY.model_copy(update={"max_new_tokens": 13}))


def test_long_prompts_are_cut_from_the_left(model_dir: Path, tmp_path: Path) -> None:
    records = make_records(6, 2)
    generate_predictions(model_dir, records, tmp_path / "t", GREEDY.model_copy(update={"max_prompt_tokens": 24}))
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["n_prompts_cut"] > 0


def test_bad_input(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PolyAlignError, match="does not exist"):
        generate_predictions(tmp_path / "no-model", make_records(2, 0), tmp_path / "x", GREEDY)
    with pytest.raises(InputError, match="no records"):
        generate_predictions(model_dir, [], tmp_path / "x", GREEDY)
    with pytest.raises(ValueError, match="do_sample"):
        DecodingConfig(num_samples=2, do_sample=False)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(PolyAlignError, match="vLLM"):
            generate_predictions(model_dir, make_records(2, 0), tmp_path / "v", GREEDY, backend="vllm")
    assert not (tmp_path / "x").exists()


def test_records_argument(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data", {"train": make_records(5, 0), "test": make_records(4, 1, "test")})
    records, _ = load_records_arg(str(data))
    assert len(records) == 4 and records[0].split == "test"
    records, _ = load_records_arg(f"{data}:train")
    assert len(records) == 5
    records, _ = load_records_arg(str(data / "records" / "test.jsonl"))
    assert len(records) == 4
    with pytest.raises(InputError, match="not found"):
        load_records_arg(str(tmp_path / "nothing"))


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.8)])
def test_inverse_cdf_sampler_draws_from_the_right_distribution(temperature, top_k, top_p) -> None:
    """Chi-square test of the fast sampler against the softmax it must sample from (fixed seed)."""
    import numpy as np
    from scipy import stats

    from polyalign.generate import sample_from_logits

    logits = torch.tensor([0.1, 1.0, -1.0, 2.0, 0.5, -0.3])
    probs = torch.softmax(logits / temperature, -1).double()
    if top_k:
        probs[torch.argsort(probs, descending=True)[top_k:]] = 0
    if top_p < 1:
        order = torch.argsort(probs, descending=True)
        before = probs[order].cumsum(0) - probs[order]
        probs[order[before >= top_p]] = 0
    probs = probs / probs.sum()
    torch.manual_seed(0)
    draws = sample_from_logits(logits.repeat(50_000, 1), temperature=temperature, top_k=top_k, top_p=top_p)
    observed = np.bincount(draws.numpy(), minlength=6)
    keep = probs.numpy() > 0
    assert observed[~keep].sum() == 0  # nothing outside the top-k / nucleus set
    assert stats.chisquare(observed[keep], probs.numpy()[keep] * observed.sum()).pvalue > 0.01


def test_cli_per_bucket_generates_a_stratified_sample(model_dir: Path, tmp_path: Path) -> None:
    from collections import Counter

    from typer.testing import CliRunner

    from polyalign.cli import app

    records = make_records(40, 3)
    data = write_data_dir(tmp_path / "data", {"train": records})
    out = tmp_path / "samples"
    result = CliRunner().invoke(app, ["generate", "--model", str(model_dir), "--records", f"{data}:train",
                                      "--per-bucket", "2", "--out", str(out), "--set", "max_new_tokens=4",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    counts = Counter(row["bucket_id"] for row in _rows(out / "predictions.jsonl"))
    assert counts == {b: min(n, 2) for b, n in Counter(r.bucket_id for r in records).items()}


def test_rows_say_whether_max_new_tokens_cut_the_response(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import polyalign.generate as gen
    from polyalign.models.loading import load_tokenizer

    records = make_records(6, 3, split="test")
    vocab = len(load_tokenizer(model_dir))
    decoding = DecodingConfig(max_new_tokens=3, do_sample=False)
    monkeypatch.setattr(gen, "_eos_ids", lambda model, tokenizer: [vocab + 7])  # no token ends a response
    cut = _rows(generate_predictions(model_dir, records, tmp_path / "cut", decoding))
    assert {r["finish"] for r in cut} == {"length"}
    monkeypatch.setattr(gen, "_eos_ids", lambda model, tokenizer: list(range(vocab)))  # every token does
    stopped = _rows(generate_predictions(model_dir, records, tmp_path / "stop", decoding))
    assert {r["finish"] for r in stopped} == {"stop"}


def test_resume_after_a_kill_mid_batch_writes_the_same_rows(model_dir: Path, tmp_path: Path) -> None:
    """A kill after some rows of a batch (and one row torn in half): the resumed run regenerates the batches of an
    uninterrupted run, so predictions.jsonl ends byte-identical."""
    records = make_records(10, 4)
    cfg = DecodingConfig(max_new_tokens=10, seed=5, batch_size=4)
    whole = (generate_predictions(model_dir, records, tmp_path / "a", cfg)).read_bytes()
    killed = generate_predictions(model_dir, records, tmp_path / "b", cfg)
    lines = killed.read_bytes().splitlines(keepends=True)
    killed.write_bytes(b"".join(lines[:5]) + lines[5][:7])
    generate_predictions(model_dir, records, tmp_path / "b", cfg)
    assert killed.read_bytes() == whole
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["n_generated_now"] == 5
