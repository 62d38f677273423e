"""Preference pairs: each pair type on fixtures, weights against a hand computation, no pair with chosen ==
rejected, one batched critic call, and validation of pairs files."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from hdpo_fixtures import bundled_records, prediction_rows
from polyalign.errors import InputError, PolyAlignError
from polyalign.models.chat import prompt_messages
from polyalign.pairs import PairsConfig, bucket_rarity, build_pairs, human_ranked_candidates, load_pairs, \
    pair_weights, same_text
from polyalign.text import normalize_text


class FakeCritic:
    """Distance = a fixed function of the text; counts its calls."""

    method = "fake"

    def __init__(self, known_buckets=None):
        self.calls = 0
        self.known_buckets = known_buckets
        self.metrics = {}

    def known(self, bucket_ids):
        return np.array([self.known_buckets is None or b in self.known_buckets for b in bucket_ids])

    def score(self, texts, languages, bucket_ids, unknown="error"):
        self.calls += 1
        assert unknown in ("error", "pooled")
        return np.array([distance(t) for t in texts])


def distance(text: str) -> float:
    return (len(text) % 13) / 4.0


def record(rid="r1", bucket="en|single|assistant", response="The human answer.", alternatives=()):
    return {"id": rid, "language": "en", "track": "single", "family": "assistant", "bucket_id": bucket,
            "prompt": "What?", "response": response, "history": [], "context": "",
            "alternatives": list(alternatives)}


def config(**kw):
    return PairsConfig(data="unused", critic="unused", out="unused", **kw)


def test_human_over_model_pairs():
    recs = [record("r1"), record("r2", response="Another human reply.")]
    preds = [{"id": "r1", "sample": 0, "prediction": "A model answer."},
             {"id": "r1", "sample": 1, "prediction": "  The human   answer. "},  # equal after normalization
             {"id": "r2", "sample": 0, "prediction": "   "},  # empty
             {"id": "r2", "sample": 1, "prediction": "Model text two."}]
    critic = FakeCritic()
    rows, summary = build_pairs(recs, preds, critic, config(types=["human_over_model"], profile=True,
                                                            weights={"enabled": False}))
    assert critic.calls == 1
    assert [(r["record_id"], r["chosen"], r["rejected"]) for r in rows] == [
        ("r1", "The human answer.", "A model answer."), ("r2", "Another human reply.", "Model text two.")]
    for r, rec in zip(rows, recs):
        assert r["pair_type"] == "human_over_model" and r["weight"] == 1.0
        assert r["d_chosen"] == distance(r["chosen"]) and r["d_rejected"] == distance(r["rejected"])
        assert r["prompt"] == prompt_messages(rec, True) and r["prompt"][0]["role"] == "system"
        assert set(r) == {"id", "record_id", "pair_type", "bucket_id", "language", "track", "family", "prompt",
                          "chosen", "rejected", "d_chosen", "d_rejected", "weight"}
    assert summary["skipped"] == {"human_over_model:chosen_equals_rejected": 1, "human_over_model:empty_rejected": 1}
    assert len({r["id"] for r in rows}) == len(rows)
    capped, _ = build_pairs(recs, preds + [{"id": "r1", "sample": 2, "prediction": "Third."}], FakeCritic(),
                            config(types=["human_over_model"], max_samples_per_record=1))
    assert [r["rejected"] for r in capped] == ["A model answer."]


def test_human_ranked_candidates_by_hand():
    alts = [{"content": "The human answer.", "rank": 0}, {"content": "Second best.", "rank": 1},
            {"content": "Third A.", "rank": 2}, {"content": "Third B.", "rank": 2}, {"content": "no rank"}]
    skipped = Counter()
    pairs = human_ranked_candidates("The human answer.", alts, 10, skipped)
    assert [(a, b) for a, b, _, _ in pairs] == [
        ("The human answer.", "Second best."), ("The human answer.", "Third A."), ("The human answer.", "Third B."),
        ("Second best.", "Third A."), ("Second best.", "Third B.")]  # equal ranks give no pair
    assert skipped["human_ranked:alternative_without_rank_or_text"] == 1
    capped = human_ranked_candidates("The human answer.", alts, 3, Counter())
    assert [(ra, rb) for _, _, ra, rb in capped] == [(0, 1), (0, 2), (0, 2)]


def test_human_ranked_pairs_on_bundled_oasst(shared_data_dir):
    recs = [r for r in bundled_records(shared_data_dir, per_file=60) if r["alternatives"]]
    assert recs, "the bundled OASST files carry ranked alternatives"
    rows, summary = build_pairs(recs, [], FakeCritic(), config(types=["human_ranked"], max_ranked_pairs_per_record=2))
    assert rows and summary["by_type"] == {"human_ranked": len(rows)}
    by_record = {}
    for r in rows:
        by_record.setdefault(r["record_id"], []).append(r)
    assert max(len(v) for v in by_record.values()) <= 2
    rank_of = {}  # best rank of each distinct text (the data repeats some texts under two ranks)
    for rec in recs:
        ranks = rank_of.setdefault(rec["id"], {normalize_text(rec["response"]): 0})
        for a in rec["alternatives"]:
            key = normalize_text(a["content"])
            ranks[key] = min(ranks.get(key, a["rank"]), a["rank"])
    for r in rows:
        ranks = rank_of[r["record_id"]]
        assert ranks[normalize_text(r["chosen"])] < ranks[normalize_text(r["rejected"])]
        assert not same_text(r["chosen"], r["rejected"])


def test_critic_ranked_pairs():
    recs = [record("r1"), record("r2")]
    texts = ["aa", "aaaaaa", "aaaa", "a b"]  # fake distances 0.5, 1.5, 1.0, 0.75
    preds = [{"id": "r1", "sample": k, "prediction": t} for k, t in enumerate(texts)]
    preds.append({"id": "r2", "sample": 0, "prediction": "only one"})
    rows, summary = build_pairs(recs, preds, FakeCritic(), config(types=["critic_ranked"]))
    assert [(r["chosen"], r["rejected"], r["d_chosen"], r["d_rejected"]) for r in rows] == [
        ("aa", "aaaaaa", 0.5, 1.5)]
    assert summary["skipped"]["critic_ranked:fewer_than_2_distinct_samples"] == 1
    rows, summary = build_pairs(recs, preds, FakeCritic(), config(types=["critic_ranked"], critic_ranked_min_gap=2))
    assert rows == [] and summary["skipped"]["critic_ranked:gap_too_small"] == 1


def test_pair_weights_by_hand():
    buckets = ["a", "a", "a", "a", "a", "a", "b", "b", "c"]
    d_pos = np.array([0.1, 0.5, 0.2, 0.0, 1.0, 0.3, 0.2, 0.0, 0.1])
    d_neg = np.array([0.6, 0.2, 0.2, 3.0, 1.0, 0.4, 1.2, 0.5, 0.1])
    # N = 9, B = 3: gaps a: max(0, 9/18 - 1) = 0, b: 9/6 - 1 = 0.5, c: 9/3 - 1 = 2 -> rarity a 0, b 0.25, c 1
    assert bucket_rarity(buckets) == {"a": 0.0, "b": 0.25, "c": 1.0}
    alpha, beta_w, w_min, w_max = 0.5, 1.0, 0.5, 2.0
    raw = []
    for b, p, n in zip(buckets, d_pos, d_neg):
        w = 1 + alpha * {"a": 0.0, "b": 0.25, "c": 1.0}[b] + beta_w * max(0.0, n - p)
        raw.append(min(max(w, w_min), w_max))
    expected = np.array(raw) / np.mean(raw)
    got = pair_weights(buckets, d_pos, d_neg, alpha=alpha, beta_w=beta_w, w_min=w_min, w_max=w_max)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got.mean() == pytest.approx(1.0)
    assert raw[3] == 2.0  # the large gap was clipped
    np.testing.assert_allclose(pair_weights(["a", "b"], [0, 0], [0, 0]), [1.0, 1.0])  # balanced, no gap
    with pytest.raises(PolyAlignError, match="NaN"):
        pair_weights(["a"], [math.nan], [0.0])


def test_weights_in_built_pairs_average_one_and_follow_the_formula(shared_data_dir):
    recs = bundled_records(shared_data_dir, per_file=40)
    preds = prediction_rows(recs, samples=2)
    rows, summary = build_pairs(recs, preds, FakeCritic(), config(types=["human_over_model", "human_ranked"]))
    w = np.array([r["weight"] for r in rows])
    assert w.mean() == pytest.approx(1.0) and w.std() > 0
    expected = pair_weights([r["bucket_id"] for r in rows], [r["d_chosen"] for r in rows],
                            [r["d_rejected"] for r in rows])
    np.testing.assert_allclose(w, expected)
    assert summary["weight"]["mean"] == pytest.approx(1.0)
    assert summary["n_pairs"] == len(rows) == sum(summary["by_bucket"].values())
    # no pair anywhere has chosen == rejected
    assert not any(same_text(r["chosen"], r["rejected"]) for r in rows)


def test_unknown_buckets_are_skipped_or_refused():
    recs = [record("r1", bucket="known"), record("r2", bucket="new")]
    preds = [{"id": "r1", "prediction": "m1"}, {"id": "r2", "prediction": "m2"}]
    critic = FakeCritic(known_buckets={"known"})
    rows, summary = build_pairs(recs, preds, critic, config(types=["human_over_model"]))
    assert [r["record_id"] for r in rows] == ["r1"]
    assert summary["skipped"]["record_bucket_unknown_to_critic"] == 1
    with pytest.raises(PolyAlignError, match="unknown to the critic"):
        build_pairs(recs, preds, critic, config(types=["human_over_model"], unknown_bucket="error"))
    rows, _ = build_pairs(recs, preds, critic, config(types=["human_over_model"], unknown_bucket="pooled"))
    assert len(rows) == 2


def test_nan_distances_from_the_critic_are_an_error():
    class NaNCritic(FakeCritic):
        def score(self, texts, languages, bucket_ids, unknown="error"):
            return np.full(len(texts), np.nan)

    with pytest.raises(PolyAlignError, match="NaN"):
        build_pairs([record()], [{"id": "r1", "prediction": "x"}], NaNCritic(), config(types=["human_over_model"]))


def good_row(**over):
    row = {"id": "p1", "record_id": "r1", "pair_type": "human_over_model", "bucket_id": "b", "language": "en",
           "track": "single", "family": "assistant", "prompt": [{"role": "user", "content": "hi"}],
           "chosen": "human", "rejected": "model", "d_chosen": 0.1, "d_rejected": 0.9, "weight": 1.0}
    row.update(over)
    return row


@pytest.mark.parametrize("bad, field", [
    ({"rejected": None}, "rejected"), ({"rejected": "  "}, "rejected"), ({"d_chosen": math.nan}, "d_chosen"),
    ({"d_rejected": math.inf}, "d_rejected"), ({"rejected": " human "}, "rejected"), ({"weight": 0}, "weight"),
    ({"prompt": []}, "prompt"), ({"pair_type": "other"}, "pair_type")])
def test_load_pairs_rejects_bad_rows(tmp_path, bad, field):
    path = tmp_path / "pairs.jsonl"
    row = good_row(**bad)
    path.write_text(json.dumps(good_row()) + "\n" + json.dumps(row) + "\n")  # NaN / Infinity as Python writes them
    with pytest.raises(InputError) as exc:
        load_pairs(path)
    assert exc.value.line == 2 and exc.value.field == field and str(path) in str(exc.value)
    rows, skipped = load_pairs(path, skip_invalid=True)
    assert len(rows) == 1 and skipped == {field: 1}
