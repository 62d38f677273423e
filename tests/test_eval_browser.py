"""The sample browser of report.html: the data it embeds (every item, every method, answers, finish, lengths),
escaping against adversarial text, and the page driven through its controls in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from eval_helpers import feature_fn
from records_factory import make_records, write_data_dir

from polyalign.eval import browser
from polyalign.eval.compare import compare_runs
from polyalign.eval.runner import evaluate
from polyalign.eval.suite import build_suite, load_suite, select_suite
from polyalign.text import count_length_tokens, normalize_text

ADV = ('</script><script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
       '<!-- 你好，世界 & "quotes" \u2028 </SCRIPT >')


def _write(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


class _Tags(HTMLParser):
    """Start tags (with attributes) as an HTML parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small suite whose first multi-turn item carries ADV in every text field; three evaluated methods: 'rev'
    (every item; finish alternates), 'adv' (ADV everywhere, one item missing), 'gone' (its predictions file is
    edited after scoring); a comparison of the three."""
    root = tmp_path_factory.mktemp("browser")
    test, train = make_records(160, seed=5, split="test"), make_records(500, seed=6, split="train")
    chosen = {r.id for r in select_suite(test, train, cap_per_bucket=6, ref_pool=30, seed=0)[0]}
    target = next(r for r in test if r.history and r.id in chosen)  # the draw is seeded by ids, not texts
    target.prompt, target.response, target.context = "prompt " + ADV, "human " + ADV, "passage " + ADV
    target.history[0]["content"] = "turn " + ADV
    data = write_data_dir(root / "data", {"train": train, "val": [],
                                          "test": test})
    fn, names = feature_fn()
    suite_dir = build_suite(data, root / "suite", cap_per_bucket=6, ref_pool=30, min_pool=20, feature_fn=fn,
                            feature_names=names)
    suite = load_suite(suite_dir)
    assert any(r.id == target.id for r in suite.items), "the adversarial item must be in the suite"
    rows = {
        "rev": [{"id": r.id, "prediction": r.response[::-1], "finish": "length" if i % 2 else "stop"}
                for i, r in enumerate(suite.items)],
        "adv": [{"id": r.id, "prediction": f"{ADV} {i}"} for i, r in enumerate(suite.items)][1:],
        "gone": [{"id": r.id, "prediction": "same answer"} for r in suite.items],
    }
    runs = {}
    for name, method_rows in rows.items():
        preds = _write(root / "gen" / name / "predictions.jsonl", method_rows)
        evaluate(preds, suite_dir, root / "runs" / name, feature_fn=fn, feature_names=names, figures=False,
                 allow_missing=True, name=name)
        runs[name] = root / "runs" / name
    _write(root / "gen" / "gone" / "predictions.jsonl", rows["gone"][:-1])  # regenerated after scoring
    cmp = compare_runs(list(runs.values()), root / "cmp")
    return {"root": root, "suite": suite, "rows": rows, "runs": runs, "target": target, "cmp": cmp}


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _expected(rows, suite):
    by_id = {r["id"]: r for r in rows}
    out = []
    for r in suite.items:
        row = by_id.get(r.id)
        if row is None:
            out.append(None)
            continue
        text = normalize_text(row["prediction"])
        out.append([text, row.get("finish"), count_length_tokens(text)])
    return out


def test_each_run_report_embeds_every_item_with_its_answer(world):
    suite = world["suite"]
    for name, run in world["runs"].items():
        data = browser.read_embedded(_page(run / "report.html"))
        assert data["methods"] == [name]
        assert [it["id"] for it in data["items"]] == [r.id for r in suite.items]
        if name != "gone":  # 'gone' was scored on the file as it was before the edit
            assert [it["answers"][0] for it in data["items"]] == _expected(world["rows"][name], suite)
    adv = browser.read_embedded(_page(world["runs"]["adv"] / "report.html"))
    assert adv["items"][0]["answers"] == [None]  # the missing item is shown as missing, not dropped


def test_comparison_embeds_every_item_and_each_method_it_can_still_show(world):
    suite, page = world["suite"], _page(world["root"] / "cmp" / "report.html")
    data = browser.read_embedded(page)
    assert data["methods"] == ["rev", "adv"]
    assert "changed since it was scored" in data["notes"]["gone"]
    assert world["cmp"]["samples"] == {"shown": ["rev", "adv"], "missing": {"gone": data["notes"]["gone"]}}
    assert "gone: answers not shown" in html.unescape(page)  # said on the page, not silently left out
    assert [it["id"] for it in data["items"]] == [r.id for r in suite.items]
    for k, name in enumerate(data["methods"]):
        assert [it["answers"][k] for it in data["items"]] == _expected(world["rows"][name], suite)
    for it, r in zip(data["items"], suite.items):
        assert it["bucket"] == r.bucket_id and (it["language"], it["track"]) == (r.language, r.track)
        assert it["context"] == "|".join(str(getattr(r, f)) for f in suite.context_key)
        assert it["human"] == [r.response, count_length_tokens(r.response)]
        assert it["turns"] == [[t["role"], t["content"]] for t in r.history] + [["user", r.prompt]]
        assert it["passage"] == r.context


def test_adversarial_text_cannot_escape_the_data_tag(world):
    target = world["target"]
    for page in (_page(world["root"] / "cmp" / "report.html"), _page(world["runs"]["adv"] / "report.html")):
        section = page[page.index('<section id="samples">'):]
        start = section.index('id="sb-data">') + len('id="sb-data">')
        body = section[start:section.index("</script>", start)]
        assert not re.search(r"[<>]", body) and "\u2028" not in body
        item = next(it for it in json.loads(body)["items"] if it["id"] == target.id)
        assert item["turns"][0][1] == target.history[0]["content"] and item["turns"][-1][1] == target.prompt
        assert item["human"][0] == target.response and item["passage"] == target.context
        assert json.loads(body)["items"][1]["answers"][-1][0] == normalize_text(f"{ADV} 1")
        # what an HTML parser sees: the section's two scripts (data, code), no injected tag anywhere
        tags = _tags(section)
        assert [a.get("type") for t, a in tags if t == "script"] == ["application/json", None]
        assert not any(t == "img" or "onerror" in a for t, a in tags)


def test_the_browser_code_loads_nothing_from_the_network():
    code = browser._asset("samples.js") + browser._asset("samples.css")
    for needle in ("http:", "https:", "//cdn", "fetch(", "XMLHttpRequest", "import(", "url(", "innerHTML", "eval("):
        assert needle not in code, needle


def test_embed_json_round_trips_and_escapes():
    data = {"a": ADV, "zh": "中文「引号」", "n": [1, None, 2.5]}
    text = browser.embed_json(data)
    assert json.loads(text) == data
    assert not set("<>&\u2028\u2029") & set(text)
    assert "中文" in text  # readable, not \\u-escaped


@pytest.fixture(scope="module")
def chromium(repo_root):
    sys.path.insert(0, str(repo_root / "benchmarks"))
    try:
        import screenshot_report
    finally:
        sys.path.pop(0)
    if screenshot_report.find_browser() is None:  # a real component: `make test` installs it
        pytest.fail("chromium is not installed: run `make browser` (apt-get install -y chromium)")
    return screenshot_report


DRIVE = """
setTimeout(function () {
  function rows() {
    return Array.prototype.map.call(document.querySelectorAll('#sb-rows .sb-item'), function (e) {
      return {id: e.getAttribute('data-id'), bucket: e.getAttribute('data-bucket'),
              methods: Array.prototype.map.call(e.querySelectorAll('.sb-answer'),
                                                function (a) { return a.getAttribute('data-method'); }),
              texts: Array.prototype.map.call(e.querySelectorAll('.sb-text, .sb-turn'),
                                              function (a) { return a.textContent; })};
    });
  }
  function set(id, value) {
    var s = document.getElementById(id); s.value = value; s.dispatchEvent(new Event('change'));
  }
  var out = {first: rows(), status0: document.getElementById('sb-status').textContent};
  set('sb-size', '100');
  out.all = rows();
  set('sb-bucket', BUCKET);
  out.bucket = rows();
  document.querySelector('#sb-methods input[value="adv"]').click();
  out.method = rows();
  set('sb-bucket', '');
  set('sb-search', SEARCH);
  out.search = rows();
  out.status = document.getElementById('sb-status').textContent;
  out.title = document.title;
  out.imgs = document.querySelectorAll('#samples img').length;
  var pre = document.createElement('pre'); pre.id = 'drive-result'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500);
"""


def test_browser_filters_by_bucket_and_method_in_headless_chromium(world, chromium, tmp_path):
    suite, target = world["suite"], world["target"]
    buckets = sorted({r.bucket_id for r in suite.items})
    bucket = target.bucket_id
    js = DRIVE.replace("BUCKET", json.dumps(bucket)).replace("SEARCH", json.dumps(suite.items[3].id))
    page = chromium.with_script(world["root"] / "cmp" / "report.html", tmp_path / "driven.html", js)
    dom = chromium.dump_dom(page)
    found = re.search(r'<pre id="drive-result">(.*?)</pre>', dom, re.S)
    assert found, "the driving script did not finish"
    out = json.loads(html.unescape(found.group(1)))
    ids = [r.id for r in suite.items]
    assert [r["id"] for r in out["first"]] == ids[:20]  # first page, suite order
    assert [r["id"] for r in out["all"]] == ids[:100]
    assert len(buckets) > 1 and len(ids) > len([i for i in suite.items if i.bucket_id == bucket])
    assert [r["id"] for r in out["bucket"]] == [r.id for r in suite.items if r.bucket_id == bucket][:100]
    assert all(r["methods"] == ["human", "rev", "adv"] for r in out["bucket"])
    assert [r["id"] for r in out["method"]] == [r["id"] for r in out["bucket"]]
    assert all(r["methods"] == ["human", "rev"] for r in out["method"])
    assert [r["id"] for r in out["search"]] == [suite.items[3].id]
    assert out["status"].startswith("items 1–1 of 1 matching")
    # the adversarial item rendered as text: no script ran, no image was made, the text is shown verbatim
    assert out["title"] == "PolyAlign comparison" and out["imgs"] == 0
    shown = next(r for r in out["bucket"] if r["id"] == target.id)
    assert any(t.endswith(target.response) for t in shown["texts"])
    assert any(t.endswith(target.history[0]["content"]) for t in shown["texts"])
