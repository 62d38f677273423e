"""Rounds and cross-fitting (docs/hdpo.md, Rounds): rounds = 1 leaves the stage graph and its cache keys as they
were; the round graph of configs/pipeline/rounds.yaml; the cross-fitted critic never scores a text with a member
that saw it; the per-round length table against a direct computation; and, on the tiny pipeline, a multi-round
run interrupted in round 2 and rerun equals an uninterrupted one, with the SPIN row never touching a critic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from polyalign.critic.crossfit import CrossFitCritic, assign_folds, member_rows, text_key
from polyalign.errors import ConfigError, PolyAlignError
from polyalign.eval.rounds import length_by_group
from polyalign.io import read_json, sha256_json
from polyalign.pipeline.config import load_pipeline_config
from polyalign.pipeline.graph import select
from polyalign.pipeline.run import run_pipeline
from polyalign.pipeline.stages import Wiring, build_stages
from test_pipeline_run import small_config

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "configs" / "pipeline"
GOLDEN = Path(__file__).parent / "data" / "stage_keys_golden.json"
SHARED = REPO.parent / "shared"  # where configs/data/*.yaml point (../../../shared/data)


def stage_snapshot(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Name, deps, config hash and inputs of every stage (the parts of its cache key; the checkout's and the
    bundled data's paths replaced by <repo> and <shared>, so that the snapshot does not depend on where the clone
    lies), as tests/data/stage_keys_golden.json holds them from the code before rounds."""
    w = Wiring(load_pipeline_config(path, overrides), path)

    def portable(text: str) -> str:
        return text.replace(str(SHARED.resolve()), "<shared>").replace(str(REPO.resolve()), "<repo>")

    out = {}
    for s in build_stages(w):
        text = portable(json.dumps(s.config, sort_keys=True, default=str))
        out[s.name] = {"deps": list(s.deps), "config": sha256_json(json.loads(text)),
                       "inputs": [portable(str(p)) for p in s.inputs]}
    return out


@pytest.mark.parametrize("name", ["demo.yaml", "ladder.yaml"])
def test_one_round_keeps_every_stage_and_key(name, shared_data_dir):
    golden = json.loads(GOLDEN.read_text())[name]
    assert stage_snapshot(PIPELINES / name) == golden
    explicit = {m: {"rounds": 1} for m in load_pipeline_config(PIPELINES / name).preference}
    assert stage_snapshot(PIPELINES / name, {"preference": explicit}) == golden


def test_rounds_graph(shared_data_dir):
    path = PIPELINES / "rounds.yaml"
    w = Wiring(load_pipeline_config(path), path)
    w.preflight()
    stages = {s.name: s for s in build_stages(w)}
    assert stages["hdpo_r1"].deps == ("bucket_sft", "pairs_bucket_sft")
    assert stages["samples_hdpo_r2"].deps == ("data", "hdpo_r1")
    assert stages["critic_hdpo_r2"].deps == ("data", "samples_bucket_sft", "samples_hdpo_r2")
    assert stages["critic_hdpo_r3"].deps == ("data", "samples_hdpo_r2", "samples_hdpo_r3"), "replay: 1"
    assert stages["pairs_hdpo_r3"].deps == ("data", "critic_hdpo_r3", "samples_hdpo_r3")
    assert stages["hdpo"].deps == ("hdpo_r2", "pairs_hdpo_r3")
    # each round starts from (and is referenced against) the previous round's model
    assert w.preference_config("hdpo").model == w.model_path("hdpo_r2")
    assert w.preference_config("hdpo", round=1).model == w.model_path("bucket_sft")
    # round 1 of the 3-round HDPO trains exactly the ladder's HDPO (same settings, same pairs)
    ladder = Wiring(load_pipeline_config(PIPELINES / "ladder.yaml", {"workdir": "runs/rounds"}),
                    PIPELINES / "ladder.yaml")
    assert stages["hdpo_r1"].config == {s.name: s for s in build_stages(ladder)}["hdpo"].config
    assert w.round_pairs_config("hdpo", 2).critic == w.dir("critic_hdpo_r2")
    # SPIN: no critic anywhere below its stages
    spin = {s.name for s in select(list(stages.values()), ["rounds_spin", "spin"])}
    assert not any(n == "critic" or n.startswith("critic_") for n in spin)
    assert {"pairs_spin_r1", "pairs_spin_r2", "pairs_spin_r3", "spin_r1", "spin_r2", "spin"} <= spin
    pairs = w.round_pairs_config("spin", 2)
    assert pairs.critic is None and pairs.types == ["human_over_model"] and not pairs.weights.enabled
    assert [w.config.label(m) for m in ("hdpo_r1", "hdpo", "spin_r2")] == ["HDPO r1", "HDPO", "SPIN r2"]
    # the comparison shows the per-round tables; without the on-policy term no training stage reads a critic
    assert {"rounds_hdpo", "rounds_spin"} <= set(stages["compare"].deps)
    assert not w.preference_config("hdpo", round=2).on_policy.enabled


def test_on_policy_term_scores_with_the_rounds_critic(shared_data_dir):
    path = PIPELINES / "rounds.yaml"
    w = Wiring(load_pipeline_config(path, {"hdpo": {"on_policy": {"enabled": True}}}), path)
    w.preflight()
    stages = {s.name: s for s in build_stages(w)}
    expected = {"hdpo_r1": "critic", "hdpo_r2": "critic_hdpo_r2", "hdpo": "critic_hdpo_r3"}
    for k, (name, critic) in enumerate(expected.items(), start=1):
        assert w.preference_config("hdpo", round=k).on_policy.critic == str(w.dir(critic)), name
        assert stages[name].config["on_policy"]["critic"] == str(w.dir(critic)), name
        assert critic in stages[name].deps, name  # its key is part of the round's cache key
    assert stages["hdpo_r2"].deps == ("hdpo_r1", "pairs_hdpo_r2", "critic_hdpo_r2")
    # the term on for SPIN (no critic, plain DPO) is refused before any work
    with pytest.raises(ConfigError, match="on_policy.enabled"):
        Wiring(load_pipeline_config(path, {"dpo": {"on_policy": {"enabled": True}}}), path).preflight()


def test_bad_round_declarations(shared_data_dir):
    with pytest.raises(ConfigError, match="round stage name"):
        load_pipeline_config(PIPELINES / "ladder.yaml", {"preference": {
            "hdpo": {"rounds": 2}, "hdpo_r1": {"init": "sft", "pairs": "sft", "trainer": "dpo"}}})
    path = PIPELINES / "rounds.yaml"
    with pytest.raises(ConfigError, match=r"preference\.spin: critic: false trains plain DPO"):
        Wiring(load_pipeline_config(path, {"preference": {"spin": {"trainer": "hdpo"}}}), path).preflight()
    with pytest.raises(ConfigError, match="cross_fit"):
        Wiring(load_pipeline_config(path, {"critic": {"method": "band"}}), path).preflight()


# -- cross-fitting ------------------------------------------------------------------------------------------------


def test_folds_are_by_conversation_balanced_and_seeded():
    conversations = [f"c{i % 7}" for i in range(40)]
    folds = assign_folds(conversations, 2, seed=3)
    assert set(folds) == set(conversations) and sorted(np.bincount(list(folds.values()))) == [3, 4]
    assert folds == assign_folds(list(reversed(conversations)), 2, seed=3)
    with pytest.raises(PolyAlignError, match="cannot be split"):
        assign_folds(["a"], 2, seed=0)


def test_member_rows_leave_out_texts_shared_by_two_folds():
    fold_of_row = np.array([0, 0, 1, 1, 1])
    keys = ["a", "b", "a", "c", "c"]  # "a" in both folds, "c" twice in fold 1
    masks, shared = member_rows(fold_of_row, keys, 2)
    assert shared.tolist() == [True, False, True, False, False]
    assert masks[0].tolist() == [False, False, False, True, True]  # member 0: fold 1 without "a"
    assert masks[1].tolist() == [False, True, False, False, False]


class _Member:
    """A stand-in member: every text scores j + 1 (so the score names the member that gave it)."""

    method = "learned"
    feature_names = ["f"]

    def __init__(self, j: int):
        self.j = j

    @staticmethod
    def featurizer(texts, languages):
        return np.zeros((len(texts), 1))

    def known(self, bucket_ids):
        return np.ones(len(bucket_ids), dtype=bool)

    def score_features(self, x, bucket_ids, *, texts=None, unknown="error"):
        return np.full(len(x), float(self.j + 1))


def test_crossfit_scores_each_text_with_a_member_that_never_saw_it():
    # member j trained on every fold but j: member 0 saw conversation c1 (fold 1), member 1 saw c0 (fold 0)
    seen = [{text_key("human of c1"), text_key("sample of c1")}, {text_key("human of c0"), text_key("sample of c0")}]
    critic = CrossFitCritic([_Member(0), _Member(1)], {"c0": 0, "c1": 1}, seen)
    texts = ["human of c0", "sample of c0", "human of c1", "sample  of c1", "a new text", "human of c1"]
    conversations = ["c0", "c0", "c1", "c1", None, None]
    scores = critic.score(texts, ["en"] * 6, ["b"] * 6, conversations=conversations)
    assert scores.tolist() == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]  # the max over members blind to it; "human of c1"
    for text, conversation, score in zip(texts, conversations, scores):  # with no conversation: member 1 only
        member = int(score) - 1
        assert text_key(text) not in seen[member]
        assert conversation is None or critic.fold_of[conversation] == member
    with pytest.raises(PolyAlignError, match="in-sample"):  # a text of c0 that member 0 saw through fold 1
        critic.score(["human of c1"], ["en"], ["b"], conversations=["c0"])


def test_length_by_group_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    model_len, human_len = rng.integers(1, 50, 30).astype(float), rng.integers(1, 50, 20).astype(float)
    model_g, human_g = [("en", "zh", "x")[i % 3] for i in range(30)], [("en", "zh")[i % 2] for i in range(20)]
    table = length_by_group(model_len, model_g, human_len, human_g)
    for g in ("en", "zh", "x"):
        m = [v for v, k in zip(model_len, model_g) if k == g]
        h = [v for v, k in zip(human_len, human_g) if k == g]
        assert table[g]["model"] == pytest.approx(sum(m) / len(m)) and table[g]["n_model"] == len(m)
        if h:
            assert table[g]["human"] == pytest.approx(sum(h) / len(h))
            assert table[g]["ratio"] == pytest.approx((sum(m) / len(m)) / (sum(h) / len(h)))
        else:
            assert table[g]["human"] is None and table[g]["ratio"] is None


# -- the tiny pipeline --------------------------------------------------------------------------------------------

ROUND_STAGES = ("samples_hdpo_r2", "critic_hdpo_r2", "pairs_hdpo_r2", "hdpo", "samples_hdpo_r3", "rounds_hdpo",
                "samples_spin_r2", "pairs_spin_r2", "spin", "samples_spin_r3", "rounds_spin")


class Interrupted(Exception):
    pass


def rounds_config(tmp: Path, data_dir: Path) -> Path:
    """small_config with HDPO and SPIN in 2 rounds, its work folder relative (runs/) so that two copies in two
    folders have the same cache keys."""
    path = small_config(tmp, data_dir)
    raw = yaml.safe_load(path.read_text())
    raw["workdir"] = "runs"
    raw["preference"] = {"hdpo": {"init": "bucket_sft", "pairs": "bucket_sft", "trainer": "hdpo", "rounds": 2},
                         "spin": {"init": "bucket_sft", "pairs": "bucket_sft", "trainer": "dpo", "critic": False,
                                  "rounds": 2}}
    raw["methods"] = ["hdpo", "spin"]
    for trainer in ("dpo", "hdpo"):  # a step size at which 2 steps change what the tiny model samples
        raw[trainer]["training"]["learning_rate"] = 0.05
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def _artifacts(root: Path, stage: str) -> dict[str, str]:
    """Hashes of a stage's files, less what records when or where it ran (manifests, stage.json, logs)."""
    out = {}
    for p in sorted((root / stage).rglob("*")):
        if p.is_file() and p.name not in ("manifest.json", "stage.json", "bucket_metrics.jsonl") \
                and "checkpoint" not in str(p) and p.suffix != ".arrow":
            out[str(p.relative_to(root / stage))] = sha256_json(p.read_bytes().hex())
    return out


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_interrupted_rounds_rerun_equal_an_uninterrupted_run(tmp_path, shared_data_dir, monkeypatch, one_thread):
    import polyalign.critic.crossfit as crossfit
    import polyalign.critic.fit as fit
    import polyalign.critic.model as model
    import polyalign.eval.rounds as rounds

    current: list[str] = [""]
    touched: list[tuple[str, str]] = []  # (stage, critic function) for every critic fit or load

    def log(message: str) -> None:
        if message.startswith(("[run]", "[resume]")):
            current[0] = message.split()[1]

    def spy(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            touched.append((current[0], name))
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapped)

    spy(model, "load_critic")
    spy(rounds, "load_critic")
    spy(fit, "fit_critic")
    spy(crossfit, "fit_round_critic")

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.chdir(a)
    _, results = run_pipeline(rounds_config(a, shared_data_dir), targets=["rounds_hdpo", "rounds_spin"], log=log)
    names = [r.name for r in results]
    assert set(ROUND_STAGES) <= set(names) and "hdpo_r1" in names and "spin_r1" in names
    assert {s for s, _ in touched if "spin" in s} == set(), f"SPIN stages touched a critic: {touched}"
    assert {s for s, _ in touched} >= {"critic", "pairs_bucket_sft", "critic_hdpo_r2", "pairs_hdpo_r2",
                                       "rounds_hdpo"}, touched

    # b: the same config, round 1 already done (copied), interrupted when round 2's sampling starts, rerun
    for stage in {r.name for r in results} - set(ROUND_STAGES):
        shutil.copytree(a / "runs" / stage, b / "runs" / stage)
    monkeypatch.chdir(b)
    config_b = rounds_config(b, shared_data_dir)

    def interrupt(message: str) -> None:
        log(message)
        if message.startswith("[run] pairs_hdpo_r2"):
            raise Interrupted
    with pytest.raises(Interrupted):
        run_pipeline(config_b, targets=["rounds_hdpo", "rounds_spin"], log=interrupt)
    assert (b / "runs" / ".pairs_hdpo_r2.partial").exists() and not (b / "runs" / "hdpo").exists()
    _, again = run_pipeline(config_b, targets=["rounds_hdpo", "rounds_spin"], log=log)
    status = {r.name: r.status for r in again}
    assert status["hdpo_r1"] == status["critic"] == status["spin_r1"] == "cached"
    assert status["samples_hdpo_r2"] == status["critic_hdpo_r2"] == "cached"
    assert status["pairs_hdpo_r2"] == status["hdpo"] == status["rounds_hdpo"] == "ran"
    for stage in ROUND_STAGES:
        assert read_json(b / "runs" / stage / "stage.json")["cache_key"] == \
            read_json(a / "runs" / stage / "stage.json")["cache_key"], stage
        assert _artifacts(b / "runs", stage) == _artifacts(a / "runs", stage), stage
        assert _artifacts(a / "runs", stage), stage

    runs = a / "runs"
    # each round samples the previous round's model, and that model has moved: its samples differ
    texts = {stage: (runs / stage / "predictions.jsonl").read_text()
             for stage in ("samples_bucket_sft", "samples_hdpo_r2", "samples_hdpo_r3", "samples_spin_r2")}
    assert len(set(texts.values())) == 4
    assert read_json(runs / "samples_hdpo_r2" / "manifest.json")["identity"]["model"] == \
        str((runs / "hdpo_r1" / "model").resolve())
    # round 2 pairs: distances from the fold critic blind to the pair's conversation and texts
    critic = model.load_critic(runs / "critic_hdpo_r2", allow_weak=True)
    assert isinstance(critic, CrossFitCritic) and len(critic.members) == 2
    pairs = [json.loads(line) for line in (runs / "pairs_hdpo_r2" / "pairs.jsonl").read_text().splitlines()]
    records = {json.loads(line)["id"]: json.loads(line)
               for line in (runs / "data" / "records" / "train.jsonl").read_text().splitlines()}
    samples = {json.loads(line)["prediction"]
               for line in (runs / "samples_hdpo_r2" / "predictions.jsonl").read_text().splitlines()}
    assert pairs and {p["rejected"] for p in pairs if p["pair_type"] == "human_over_model"} <= samples
    for pair in pairs:
        conversation = records[pair["record_id"]].get("conversation_id") or pair["record_id"]
        fold = critic.fold_of[conversation]
        for side in ("chosen", "rejected"):
            assert text_key(pair[side]) not in critic.seen[fold], (pair["id"], side)
            assert critic.blind_members(pair[side], conversation) == [fold]
            expected = critic.members[fold].score([pair[side]], [pair["language"]], [pair["bucket_id"]],
                                                  unknown="pooled")[0]
            assert pair[f"d_{side}"] == pytest.approx(expected, rel=1e-6)
    # the SPIN pairs: human > current sample only, no distances, weight 1
    spin_pairs = [json.loads(line) for line in (runs / "pairs_spin_r2" / "pairs.jsonl").read_text().splitlines()]
    spin_samples = {json.loads(line)["prediction"]
                    for line in (runs / "samples_spin_r2" / "predictions.jsonl").read_text().splitlines()}
    assert spin_pairs and {p["pair_type"] for p in spin_pairs} == {"human_over_model"}
    assert all(p["d_chosen"] == p["d_rejected"] == 0.0 and p["weight"] == 1.0 for p in spin_pairs)
    assert {p["rejected"] for p in spin_pairs} <= spin_samples
    assert all(p["chosen"] == records[p["record_id"]]["response"] for p in spin_pairs)
    spin_manifest = read_json(runs / "spin" / "model" / "manifest.json")
    assert spin_manifest["method"] == "dpo" and spin_manifest["config"]["model"] == "runs/spin_r1/model"
    # the per-round tables
    table = read_json(runs / "rounds_hdpo" / "rounds.json")
    assert [r["round"] for r in table["rows"]] == [1, 2, 3]
    assert [r["critic_in_sample"] for r in table["rows"]] == [True, False, None]
    assert table["rows"][1]["critic_auc"] == read_json(runs / "critic_hdpo_r2" / "metrics.json")["heldout_auc"]
    assert all(r["length_by_context"] and r["mahalanobis"] is not None for r in table["rows"])
    assert (runs / "rounds_hdpo" / "rounds.md").read_text().startswith("# Rounds: HDPO")
    spin_table = read_json(runs / "rounds_spin" / "rounds.json")
    assert all(r["critic_auc"] is None and r["mean_distance"] is None for r in spin_table["rows"])


# -- the per-round plot -------------------------------------------------------------------------------------------


def synthetic_rounds_table(aucs: list[float | None], method: str = "HDPO 混合") -> dict[str, Any]:
    """A rounds.json-shaped table: one row per AUC (None: a row without a critic, as the last model's)."""
    rows = []
    for k, auc in enumerate(aucs, start=1):
        critic = auc is not None
        rows.append({"round": k, "policy": f"policy {k}", "n_samples": 10, "critic": "c" if critic else None,
                     "critic_in_sample": (k == 1) if critic else None, "critic_auc": auc,
                     "critic_auc_without_length": auc - 0.1 if critic and auc == auc else None,
                     "critic_auc_length_matched": auc - 0.05 if critic and auc == auc else None,
                     "critic_auc_length_only": 0.6 if critic else None, "critic_min_auc": 0.75 if critic else None,
                     "mean_distance": 1.0 / k if critic else None, "mean_distance_human": 0.7 if critic else None,
                     "mahalanobis": 5.0 / k, "mahalanobis_human": 0.5, "length_tokens": 10.0 * k,
                     "length_tokens_human": 40.0,
                     "length_by_context": {"en|single|qa": {"model": 10.0 * k, "human": 40.0}}})
    return {"method": method, "context_key": ["language", "track", "family"], "rows": rows}


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize("aucs", [[0.95, 0.85, None], [0.9], [float("nan"), None], [None, None]],
                         ids=["three-rounds", "one-round", "nan-auc", "no-critic"])
def test_rounds_plot_is_a_png(tmp_path, aucs):
    import warnings

    from polyalign.eval.plots import text_fonts
    from polyalign.eval.rounds import rounds_markdown
    from polyalign.eval.rounds_plot import write_rounds_plot

    table = synthetic_rounds_table(aucs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_rounds_plot(table, tmp_path / "rounds.png")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    if len(text_fonts()) > 1:  # a CJK font is installed (`make browser`): the Chinese label is drawn with it
        assert not missing, missing
    width, height = _png_size(path)
    assert width > 600 and height > 200
    assert [p.name for p in tmp_path.iterdir()] == ["rounds.png"]  # no temp file left
    assert "![per-round critic AUC, distances and lengths](rounds.png)" in rounds_markdown(table)


# -- the gate in later rounds -------------------------------------------------------------------------------------


def test_a_round_critic_below_the_gate_stops_the_run_at_its_round(tmp_path, shared_data_dir, monkeypatch,
                                                                  one_thread):
    from polyalign.errors import RefusedError

    monkeypatch.chdir(tmp_path)
    path = rounds_config(tmp_path, shared_data_dir)
    raw = yaml.safe_load(path.read_text())
    raw["preference"] = {"hdpo": {**raw["preference"]["hdpo"], "round_critic": {"min_auc": 0.99}}}
    raw["methods"] = ["hdpo"]
    raw["pairs"]["allow_weak"] = False  # the gate applies (pairs.min_auc stays 0: round 1's critic passes it)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(RefusedError) as refused:
        run_pipeline(path, targets=["hdpo"], log=lambda m: None)
    message = str(refused.value)
    for part in ("stage critic_hdpo_r2", "round 2 of 2", "below min_auc 0.99",
                 "(preference.hdpo.round_critic.min_auc)", "list hdpo_r1 in `methods:`", "pairs.allow_weak"):
        assert part in message, (part, message)
    runs = tmp_path / "runs"
    assert not (runs / "critic_hdpo_r2").exists() and not (runs / ".critic_hdpo_r2.partial").exists()
    assert not list(runs.glob(".critic_hdpo_r2*")) and not (runs / "pairs_hdpo_r2").exists()
    for stage in ("critic", "pairs_bucket_sft", "hdpo_r1", "samples_hdpo_r2"):
        assert (runs / stage / "stage.json").exists(), stage

    # the gate lowered for the round critics: round 1 and round 2's samples are reused, round 2's critic is fit
    raw["preference"]["hdpo"]["round_critic"] = {"min_auc": 0.5}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    _, results = run_pipeline(path, targets=["critic_hdpo_r2"], log=lambda m: None)
    status = {r.name: r.status for r in results}
    assert status["critic"] == status["hdpo_r1"] == status["samples_hdpo_r2"] == "cached"
    assert status["critic_hdpo_r2"] == "ran"
    metrics = read_json(runs / "critic_hdpo_r2" / "metrics.json")
    assert f"AUC human vs policy is {metrics['heldout_auc']:.3f}" in message  # the refused fit, the same numbers
    assert metrics["min_auc"] == 0.5 and read_json(runs / "critic" / "metrics.json")["min_auc"] == 0.0


def _seed_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"method": "hdpo", "context_key": ["language"], "rows": rows}


def _seed_row(k: int, auc: float | None, length: float, length_en: float | None) -> dict[str, Any]:
    by_context = {"en": {"model": length_en, "human": 10.0}} if length_en is not None else {}
    return {"round": k, "policy": f"p{k}", "critic_auc": auc, "length_tokens": length,
            "length_by_context": by_context}


def test_seed_rounds_rows_are_means_and_sample_sds_over_the_seeds():
    from polyalign.eval.rounds import seed_length_rows, seed_rounds_rows

    tables = [_seed_table([_seed_row(1, 0.9, 20.0, 30.0), _seed_row(2, 0.7, 12.0, 14.0)]),
              _seed_table([_seed_row(1, 0.8, 24.0, None), _seed_row(2, None, 16.0, 18.0)]),
              _seed_table([_seed_row(1, 0.7, 28.0, 50.0), _seed_row(2, 0.5, 14.0, 16.0)])]
    header, rows = seed_rounds_rows(tables)
    col = {name: i for i, name in enumerate(header)}
    assert rows[0][col["AUC"]] == "0.800 ± 0.100"            # mean 0.8, sd sqrt(((0.1)^2 * 2) / 2)
    assert rows[1][col["AUC"]] == "0.600 ± 0.141"            # the seed without a value is left out
    assert rows[0][col["length model"]] == "24.000 ± 4.000"
    assert rows[0][col["d model"]] == "–"                     # no seed has it
    assert rows[1][col["seeds"]] == "3" and rows[1][col["policy"]] == "p2"
    header, rows = seed_length_rows(tables)
    assert header == ["round", "en"]
    assert rows == [["1", "40.000 / 10.000"], ["2", "16.000 / 10.000"]]
    with pytest.raises(PolyAlignError, match="different rounds"):
        seed_rounds_rows([tables[0], _seed_table([_seed_row(1, 0.9, 20.0, None)])])


def test_smollm2_rounds_config_keeps_the_one_round_hdpo_and_trains_lora_rounds():
    path = PIPELINES / "smollm2_rounds.yaml"
    w = Wiring(load_pipeline_config(path), path)
    stages = {s.name: s for s in build_stages(w)}
    assert "hdpo" not in stages, "smollm2.yaml's one-round hdpo in the same work folder is left alone"
    assert stages["hdpo_rounds_r1"].deps == ("bucket_sft", "pairs_bucket_sft")
    assert stages["hdpo_rounds"].deps == ("hdpo_rounds_r2", "pairs_hdpo_rounds_r3")
    assert {"rounds_hdpo_rounds", "rounds_spin"} <= set(stages["compare"].deps)
    one = Wiring(load_pipeline_config(PIPELINES / "smollm2.yaml", {"workdir": w.config.workdir}),
                 PIPELINES / "smollm2.yaml")
    assert stages["hdpo_rounds_r1"].config == {s.name: s for s in build_stages(one)}["hdpo"].config
    later = w.preference_config("hdpo_rounds", round=2)
    assert later.model == w.model_path("hdpo_rounds_r1") and later.lora.enabled and later.lora.merge
    assert [w.config.label(m) for m in ("hdpo_rounds_r2", "hdpo_rounds", "spin_r1")] == ["HDPO-R r2", "HDPO-R",
                                                                                        "SPIN r1"]
