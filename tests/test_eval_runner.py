"""`evaluate` and `compare_runs` end to end on a small synthetic suite: metrics.json, ceilings, caching, reports,
and bad input (unknown ids, missing or empty predictions, another suite)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir

from polyalign.errors import InputError
from polyalign.eval import featurizers
from polyalign.eval.compare import compare_runs
from polyalign.eval.registry import load_all
from polyalign.eval.runner import evaluate
from polyalign.eval.headline import HEADLINE_METRICS
from polyalign.eval.suite import build_suite, load_suite


def _rows(suite, predict):
    return [{"id": r.id, "sample": 0, "bucket_id": r.bucket_id, "language": r.language, "track": r.track,
             "family": r.family, "length_bin": r.length_bin, "prediction": predict(r)} for r in suite.items]


def _write(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _half(text: str) -> str:
    return text[: max(1, len(text) // 2)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_data_dir(root / "data", {"train": make_records(600, seed=2, split="train"),
                                          "val": make_records(40, seed=2, split="val"),
                                          "test": make_records(260, seed=2, split="test")})
    fn, names = feature_fn()
    suite_dir = build_suite(data, root / "suite", cap_per_bucket=30, ref_pool=80, min_pool=20, feature_fn=fn,
                            feature_names=names)
    suite = load_suite(suite_dir)
    preds = _write(root / "half" / "predictions.jsonl", _rows(suite, lambda r: _half(r.response)))
    result = evaluate(preds, suite_dir, root / "runs" / "half", feature_fn=fn, feature_names=names, seed=0)
    return {"root": root, "suite_dir": suite_dir, "suite": suite, "fn": fn, "names": names, "result": result,
            "run": root / "runs" / "half"}


def _evaluate(world, rows, name, **kwargs):
    path = _write(world["root"] / name / "predictions.jsonl", rows)
    kwargs.setdefault("figures", False)  # figures are checked on the fixture's run and the compare report
    return evaluate(path, world["suite_dir"], world["root"] / "runs" / name, feature_fn=world["fn"],
                    feature_names=world["names"], **kwargs)


def _no_nan(constant):
    raise AssertionError(f"metrics.json holds {constant} (not valid JSON)")


def test_metrics_json_has_every_metric_with_aggregates_and_ceilings(world):
    result = json.loads((world["run"] / "metrics.json").read_text(encoding="utf-8"), parse_constant=_no_nan)
    registry = load_all()
    assert set(result["metrics"]) | set(HEADLINE_METRICS) == set(registry)
    for name, block in result["metrics"].items():
        spec = registry[name]
        assert block["direction"] == spec.direction
        if spec.ceiling:
            assert block["ceiling"] is not None, name
        else:
            assert block["ceiling"] is None, name
    f1 = result["metrics"]["f1"]["model"]
    values = list(f1["per_bucket"].values())
    n = [result["buckets"][b]["n_scored"] for b in f1["per_bucket"]]
    assert f1["macro"] == pytest.approx(np.mean(values))
    assert f1["weighted"] == pytest.approx(np.average(values, weights=n))
    assert f1["median"] == pytest.approx(np.median(values))
    en = [v for b, v in f1["per_bucket"].items() if b.startswith("en|")]
    assert f1["by_language"]["en"]["macro"] == pytest.approx(np.mean(en))
    gap = result["metrics"]["feature_gap"]
    assert gap["model"]["headline"] == gap["model"]["median"]
    assert gap["model"]["headline"] > gap["ceiling"]["headline"]  # half-truncated answers are less human
    assert result["metadata"]["suite_version"] == world["suite"].version
    assert result["metadata"]["gaps"]["missing"] == 0
    assert "tdm" in result["metrics"] and result["metrics"]["tdm"]["model"]["by_track"].get("multi")


def test_gold_responses_as_predictions_reproduce_the_ceiling_exactly(world):
    result = _evaluate(world, _rows(world["suite"], lambda r: r.response), "gold")
    for name in ("feature_gap", "coverage_feature", "coverage_joint", "c2st_acc", "c_mauve", "mauve", "length_ks",
                 "bucket_match", "tdm", "distinct_2", "self_bleu"):
        block = result["metrics"][name]
        assert block["model"]["headline"] == pytest.approx(block["ceiling"]["headline"]), name
    assert result["metrics"]["f1"]["model"]["macro"] == pytest.approx(1.0)
    assert result["metrics"]["em"]["model"]["macro"] == pytest.approx(1.0)
    assert result["metrics"]["bucket_match"]["ceiling"]["macro"] == pytest.approx(1.0)


def test_second_method_reuses_the_cached_human_side(world, monkeypatch):
    assert list((world["suite_dir"] / "cache").glob("human-*.pkl"))

    def refuse(*args, **kwargs):
        raise AssertionError("the featurizer was refit although the human side is cached")

    monkeypatch.setattr(featurizers.CharNgramSVD, "fit", refuse)
    result = _evaluate(world, _rows(world["suite"], lambda r: r.prompt), "echo")
    assert result["metadata"]["human_cache_key"] == world["result"]["metadata"]["human_cache_key"]
    assert result["metrics"]["c2st_acc"]["ceiling"] == world["result"]["metrics"]["c2st_acc"]["ceiling"]


def test_unknown_ids_bucket_mismatch_duplicates_and_bad_rows_are_located_errors(world):
    rows = _rows(world["suite"], lambda r: r.response)
    bad = [dict(r) for r in rows]
    bad[3]["id"] = "not-in-suite"
    with pytest.raises(InputError, match=r"predictions.jsonl:4: field 'id'.*not an item of suite"):
        _evaluate(world, bad, "bad_id")
    bad = [dict(r) for r in rows]
    bad[5]["bucket_id"] = "en|single|qa|xlong"
    with pytest.raises(InputError, match=r":6: field 'bucket_id'"):
        _evaluate(world, bad, "bad_bucket")
    with pytest.raises(InputError, match="duplicate prediction"):
        _evaluate(world, rows + rows[:1], "dup")
    bad = [dict(r) for r in rows]
    bad[0]["prediction"] = None
    with pytest.raises(InputError, match=r":1: field 'prediction'"):
        _evaluate(world, bad, "none")


def test_missing_predictions_fail_by_default_and_are_reported_with_allow_missing(world):
    rows = _rows(world["suite"], lambda r: r.response)[10:]
    with pytest.raises(InputError, match="10 of .* suite items have no prediction"):
        _evaluate(world, rows, "missing")
    rows[0]["prediction"] = "   "
    result = _evaluate(world, rows, "missing_ok", allow_missing=True)
    gaps = result["metadata"]["gaps"]
    assert gaps["missing"] == 10 and gaps["empty_predictions"] == 1
    assert gaps["scored"] == len(world["suite"].items) - 10
    assert sum(b["n_scored"] for b in result["buckets"].values()) == gaps["scored"]
    report = (world["root"] / "runs" / "missing_ok" / "report.md").read_text(encoding="utf-8")
    assert "missing 10, empty predictions 1" in report


def test_predictions_made_for_another_suite_are_refused(world):
    path = _write(world["root"] / "other" / "predictions.jsonl", _rows(world["suite"], lambda r: r.response))
    (path.parent / "manifest.json").write_text(json.dumps({"stage": "generate", "suite_version": "0123abcd"}))
    with pytest.raises(InputError, match="generated for suite 0123abcd"):
        evaluate(path, world["suite_dir"], world["root"] / "runs" / "other", feature_fn=world["fn"],
                 feature_names=world["names"])


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.external, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.imgs.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                self.external.append((tag, key, value))
        if tag in ("link", "iframe"):  # an inline <script> (the sample browser's) is fine; one with src is not
            self.external.append((tag, "tag", ""))


def check_html(path: Path, sections: set[str]) -> _Assets:
    """Parse a report: every image embedded, nothing external, the expected sections present."""
    parser = _Assets()
    parser.feed(path.read_text(encoding="utf-8"))
    assert parser.imgs and all(src.startswith("data:image/png;base64,") for src in parser.imgs)
    assert not parser.external, parser.external
    assert sections <= parser.ids, sections - parser.ids
    return parser


def test_report_html_is_self_contained_with_every_plot_section(world):
    parser = check_html(world["run"] / "report.html", {"headline", "heatmaps", "lengths", "frontier", "projection",
                                                       "buckets", "samples"})
    assert len(parser.imgs) >= 8
    md = (world["run"] / "report.md").read_text(encoding="utf-8")
    assert "| c2st_acc | →0.5 |" in md and "human ceiling" in md


def test_compare_puts_methods_and_the_ceiling_in_one_report(world):
    _evaluate(world, _rows(world["suite"], lambda r: r.response[::-1]), "reversed", figures=True)
    runs = [world["run"], world["root"] / "runs" / "reversed"]
    out = world["root"] / "compare"
    result = compare_runs(runs, out, names=["half", "reversed"])
    table = result["tables"]["overall"]
    assert list(table) == ["half", "reversed", "human ceiling"]
    assert table["human ceiling"]["c2st_acc"] == world["result"]["metrics"]["c2st_acc"]["ceiling"]["headline"]
    assert table["half"]["f1"] == world["result"]["metrics"]["f1"]["model"]["headline"]
    assert {"by_language/en", "by_language/zh", "by_track/multi", "by_track/single"} <= set(result["tables"])
    check_html(out / "report.html", {"tables", "bars", "frontier", "projection", "samples"})
    assert "| human ceiling |" in (out / "report.md").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="unique"):
        compare_runs(runs, out, names=["a", "a"])


def test_compare_refuses_runs_on_different_suites(world, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    result = json.loads((world["run"] / "metrics.json").read_text(encoding="utf-8"))
    result["metadata"]["suite_version"] = "ffffffffffffffff"
    (other / "metrics.json").write_text(json.dumps(result), encoding="utf-8")
    with pytest.raises(InputError, match="suite_version"):
        compare_runs([world["run"], other], tmp_path / "cmp", names=["a", "b"])
    with pytest.raises(InputError, match="not an evaluation run"):
        compare_runs([tmp_path], tmp_path / "cmp")


def test_one_sample_per_item_is_scored_and_the_others_are_counted(world):
    from polyalign.eval.predictions import load_predictions

    suite = world["suite"]
    rows = _rows(suite, lambda r: "first") + [dict(r, sample=1, prediction="second") for r in _rows(suite, str)]
    path = _write(world["root"] / "samples" / "predictions.jsonl", rows)
    default = load_predictions(path, suite)
    assert default.sample == 0 and set(default.texts) == {"first"}
    assert default.gaps["rows_of_other_samples"] == len(suite.items)
    chosen = load_predictions(path, suite, sample=1)
    assert set(chosen.texts) == {"second"}


def test_compare_shows_each_rounds_table_and_plot(world, tmp_path):
    import base64
    import re
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_rounds import synthetic_rounds_table

    from polyalign.eval.rounds_plot import write_rounds_plot
    from polyalign.io import write_json

    folder = tmp_path / "runs" / "rounds_half"
    table = synthetic_rounds_table([0.93, 0.81, None], method="half")
    write_json(folder / "rounds.json", table)
    png = write_rounds_plot(table, folder / "rounds.png")
    out = tmp_path / "runs" / "compare"
    result = compare_runs([world["run"]], out, names=["half"], rounds={"half": folder})
    assert result["rounds"] == {"half": str(folder)}
    parser = check_html(out / "report.html", {"rounds", "tables"})
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in parser.imgs]
    assert png.read_bytes() in embedded
    md = (out / "report.md").read_text(encoding="utf-8")
    link = re.search(r"!\[half: per-round[^\]]*\]\(([^)]+)\)", md).group(1)
    assert link == "../rounds_half/rounds.png" and (out / link).resolve() == png.resolve()
    assert "| 1 | policy 1 | 0.930 |" in md and "| 2 | policy 2 | 0.810 |" in md and "| 3 | policy 3 | – |" in md
    with pytest.raises(InputError, match="not among the methods"):
        compare_runs([world["run"]], out, names=["half"], rounds={"other": folder})
    with pytest.raises(InputError, match="no rounds.json"):
        compare_runs([world["run"]], out, names=["half"], rounds={"half": tmp_path})
