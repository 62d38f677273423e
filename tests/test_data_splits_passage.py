"""Splits by passage, tree and conversation: no QA passage, OASST tree or conversation spans two splits.

On the real bundled build (configs/data/bundled.yaml over ../shared/data, read and split exactly as
`polyalign data build` does), and for every passage-carrying source shape of configs/data/hub.yaml on small local
datasets with the same columns and several questions per passage. Plus the `group_by` forms this relies on (one
column path, or a list of paths read together) and their errors.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from polyalign.data.formats import Row, split_group_value
from polyalign.data.build import collect_records, split_and_dedup
from polyalign.data.schema import Record
from polyalign.data.sources import DataConfig, SourceConfig, load_data_config
from polyalign.errors import ConfigError, InputError


# ------------------------------------------------------------------------------------------------ units

def passage_of(record: Record) -> str:
    """The passage a QA record asks about: its context, else the user turn before its last blank line (the
    bundled QA files put "passage, blank line, question" in the user turn)."""
    if record.context:
        return record.context
    passage, sep, _ = record.prompt.rpartition("\n\n")
    assert sep, f"{record.id}: a QA record without a context or a passage before a blank line"
    return passage


def tree_of(record: Record) -> str:
    """The OASST tree of a thread: meta.tree_id (en), else the first user turn all threads of a tree share."""
    tree = record.meta.get("tree_id")
    if tree:
        return str(tree)
    return record.history[0]["content"] if record.history else record.prompt


def question_of(record: Record) -> str:
    """The question a long-form answer replies to (Stack Exchange: site and question id)."""
    site, qid = record.meta.get("site"), record.meta.get("question_id")
    return f"{site}:{qid}" if qid is not None else record.prompt


def units_of(source: SourceConfig) -> dict[str, Callable[[Record], str]]:
    """The units of a bundled source that must each stay in one split."""
    units: dict[str, Callable[[Record], str]] = {"conversation": lambda r: r.conversation_id}
    if source.family == "qa":
        units["passage"] = passage_of
    if source.family == "longform_qa":
        units["question"] = question_of
    if "oasst" in Path(source.path).name:
        units["tree"] = tree_of
    return units


def spanning_units(records: Iterable[Record], unit: Callable[[Record], str]) -> dict[str, set[str]]:
    """{unit value: splits} for every unit value whose records lie in more than one split."""
    splits: dict[str, set[str]] = defaultdict(set)
    for r in records:
        splits[unit(r)].add(r.split)
    return {k: s for k, s in splits.items() if len(s) > 1}


def leak_report(config: DataConfig, records: list[Record]) -> dict[str, int]:
    """'<source>: <unit>' -> how many of its units span two splits, for every source and unit of it."""
    by_source: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_source[r.source].append(r)
    out = {}
    for source in config.sources:
        for name, unit in units_of(source).items():
            out[f"{source.name}: {name}"] = len(spanning_units(by_source[source.name], unit))
    return out


def split_build(config: DataConfig) -> list[Record]:
    """The records of a build with their splits, read, split and deduplicated as `polyalign data build` does."""
    records, _ = collect_records(config, skip_invalid=False)
    kept, _ = split_and_dedup(config, records)
    return kept


# -------------------------------------------------------------------------------------------- bundled

@pytest.fixture(scope="module")
def bundled(repo_root, shared_data_dir) -> tuple[DataConfig, list[Record]]:
    """configs/data/bundled.yaml and its records with their splits (about 3 s; no features or references)."""
    config = load_data_config(repo_root / "configs" / "data" / "bundled.yaml")
    return config, split_build(config)


def test_bundled_no_passage_tree_or_conversation_spans_two_splits(bundled):
    config, records = bundled
    report = leak_report(config, records)
    checked = {key.split(": ")[1] for key in report}
    assert {"conversation", "passage", "tree", "question"} <= checked
    assert sum(key.endswith(": passage") for key in report) >= 3  # en_xquad, zh_cmrc2018, zh_drcd
    assert sum(key.endswith(": tree") for key in report) == 2  # en_oasst1, zh_oasst1
    leaks = {key: n for key, n in report.items() if n}
    assert not leaks, f"units spanning two splits: {leaks}"


def test_bundled_passages_are_split_units_not_questions(bundled):
    """XQuAD has several questions per passage: every passage is in one split, and all three splits get some."""
    _, records = bundled
    xquad = [r for r in records if r.source == "en_xquad"]
    by_passage: dict[str, set[str]] = defaultdict(set)
    for r in xquad:
        by_passage[passage_of(r)].add(r.split)
    assert len(xquad) > 1.5 * len(by_passage)  # several questions per passage
    assert {s for splits in by_passage.values() for s in splits} == {"train", "val", "test"}


# ------------------------------------------------------------------------------------------------ hub

N_PASSAGES, N_QUESTIONS = 60, 4


def dolly_rows(split: str) -> list[dict[str, Any]]:
    """databricks-dolly-15k rows {instruction, context, response, category}: several instructions on one
    reference passage, and rows without a context (each its own split unit)."""
    rows = [{"instruction": f"Instruction {q} on text {p}: summarize it.", "category": "summarization",
             "context": f"Reference text {p} ({split}) that several instructions use, copied from Wikipedia.",
             "response": f"A summary of text {p}, take {q}."} for p in range(N_PASSAGES) for q in range(N_QUESTIONS)]
    rows += [{"instruction": f"Write a short poem about the number {i}.", "category": "creative_writing",
              "context": "", "response": f"Number {i}, a poem."} for i in range(N_PASSAGES)]
    return rows


def squad_rows(split: str, lang: str = "en") -> list[dict[str, Any]]:
    """SQuAD v2 (en) / CMRC 2018 (zh) rows {id, title, context, question, answers: {text, answer_start}},
    several per passage (plus, in SQuAD v2, an unanswerable one)."""
    rows = []
    for p in range(N_PASSAGES):
        context = (f"第{p}段（{split}）：这一段讲的是第{p}件事情，它发生在很久以前。" if lang == "zh" else
                   f"Passage {p} of {split}: this paragraph is about thing number {p}, which happened long ago.")
        for q in range(N_QUESTIONS):
            question = f"关于第{p}段的第{q}个问题是什么？" if lang == "zh" else f"What is question {q} on passage {p}?"
            rows.append({"id": f"{lang}-{split}-{p}-{q}", "title": f"Article {p // 3}", "context": context,
                         "question": question, "answers": {"text": [f"answer {p}.{q}"], "answer_start": [0]}})
    if lang == "en":  # SQuAD v2 only
        rows.append({"id": f"{lang}-{split}-unanswerable", "title": "Article 0", "context": rows[0]["context"],
                     "question": "Is this one unanswerable?", "answers": {"text": [], "answer_start": []}})
    return rows


def coqa_rows(split: str) -> list[dict[str, Any]]:
    """CoQA rows {source, story, questions, answers: {input_text, answer_start, answer_end}}; a story may come
    back in more than one row."""
    rows = []
    for p in range(N_PASSAGES):
        story = f"Story {p} of {split}: Anna {p} has a red bike and rides it to school every morning."
        for q in range(N_QUESTIONS):
            questions = [f"Row {q}: what does Anna {p} have?", f"Row {q}: what color is it?"]
            rows.append({"source": "wikipedia", "story": story, "questions": questions,
                         "answers": {"input_text": [f"a bike {q}", f"red {q}"], "answer_start": [0, 1],
                                     "answer_end": [1, 2]}})
    return rows


def natural_questions_rows(split: str) -> list[dict[str, Any]]:
    """sentence-transformers/natural-questions rows {query, answer}: the answer is a Wikipedia passage, and
    several queries share one."""
    return [{"query": f"query {q} about topic {p}",
             "answer": f"Topic {p} ({split}) is a long Wikipedia passage that answers several different queries."}
            for p in range(N_PASSAGES) for q in range(N_QUESTIONS)]


def drcd_rows(split: str) -> list[dict[str, Any]]:
    """DRCD rows, one per article: {id, title, paragraphs: [{id, context, qas: [{id, question, answers}]}]}."""
    rows = []
    for a in range(N_PASSAGES // 3):
        paragraphs = []
        for p in range(3):
            pid = f"{a}-{p}"
            qas = [{"id": f"{pid}-{q}", "question": f"第{a}篇第{p}段的第{q}个问题？",
                    "answers": [{"id": "1", "text": f"答案{pid}-{q}", "answer_start": 0}]} for q in range(N_QUESTIONS)]
            paragraphs.append({"id": pid, "context": f"第{a}篇文章（{split}）的第{p}段，讲了一件事。", "qas": qas})
        rows.append({"id": str(a), "title": f"文章{a}", "paragraphs": paragraphs})
    return rows


#: hub id -> rows of one split, for every hub.yaml dataset whose items carry a passage.
HUB_ROWS: dict[str, Callable[[str], list[dict[str, Any]]]] = {
    "databricks/databricks-dolly-15k": dolly_rows,
    "rajpurkar/squad_v2": squad_rows,
    "hfl/cmrc2018": lambda split: squad_rows(split, "zh"),
    "stanfordnlp/coqa": coqa_rows,
    "sentence-transformers/natural-questions": natural_questions_rows,
    "voidful/DRCD": drcd_rows,
}
#: hub datasets whose passage is the response (not a context).
PASSAGE_IS_RESPONSE = {"sentence-transformers/natural-questions"}


def carries_passage(source: SourceConfig) -> bool:
    """Whether a hub.yaml source's items come with a passage (a context column, family qa, or a passage as
    the response)."""
    return "context" in source.columns or source.family == "qa" or source.path in PASSAGE_IS_RESPONSE


@pytest.fixture(scope="module")
def hub_config(repo_root) -> DataConfig:
    return load_data_config(repo_root / "configs" / "data" / "hub.yaml")


@pytest.fixture(scope="module")
def hub_local(hub_config, tmp_path_factory) -> tuple[DataConfig, list[Record]]:
    """hub.yaml's passage-carrying sources, each pointed at a saved local dataset with the same columns (every
    split the config reads), built in one config as `polyalign data build` would."""
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hub_passages")
    sources = [s for s in hub_config.sources if carries_passage(s)]
    splits_of: dict[str, set[str]] = defaultdict(set)
    for s in sources:
        splits_of[s.path].add(s.hf.split)
    folders = {}
    for hub_id, splits in splits_of.items():
        folders[hub_id] = root / hub_id.replace("/", "__")
        datasets.DatasetDict({split: datasets.Dataset.from_list(HUB_ROWS[hub_id](split))
                              for split in sorted(splits)}).save_to_disk(str(folders[hub_id]))
    data = hub_config.model_dump(mode="json")
    data["sources"] = [{**s.model_dump(mode="json", exclude_none=True), "path": str(folders[s.path])}
                       for s in sources]
    config = DataConfig.model_validate(data)
    return config, split_build(config)


def test_every_hub_passage_source_has_a_local_shape(hub_config):
    sources = [s for s in hub_config.sources if carries_passage(s)]
    assert {s.path for s in sources} == set(HUB_ROWS)
    assert len(sources) >= 8  # dolly, squad_v2 x2, coqa x2, natural_questions, cmrc2018 x2, drcd


def test_hub_shapes_no_passage_spans_two_splits(hub_config, hub_local):
    config, records = hub_local
    hub_id = {s.name: s.path for s in hub_config.sources}
    by_source: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_source[r.source].append(r)
    leaks = {}
    for source in config.sources:
        assert by_source[source.name], source.name
        passage = (lambda r: r.response) if hub_id[source.name] in PASSAGE_IS_RESPONSE else (lambda r: r.context)
        recs = [r for r in by_source[source.name] if passage(r)]  # records without a passage: own units
        n_passages = len({passage(r) for r in recs})
        assert len(recs) >= 2 * n_passages, (source.name, len(recs), n_passages)  # several records per passage
        spanning = spanning_units(recs, passage)
        if spanning:
            leaks[source.name] = len(spanning)
        if not source.split:  # hashed sources: passages, not questions, are spread over the splits
            assert {r.split for r in recs} == {"train", "val", "test"}, source.name
    assert not leaks, f"passages spanning two splits: {leaks}"


# --------------------------------------------------------------------------------------------- group_by

def test_group_by_list_reads_paths_together():
    row = Row("f.jsonl", 3, {"meta": {"title": "Cats", "paragraph_index": 2}})
    one = split_group_value(row, ["meta.title", "meta.paragraph_index"])
    assert json.loads(one) == ["Cats", 2]
    assert one != split_group_value(Row("f.jsonl", 4, {"meta": {"title": "Cats", "paragraph_index": 3}}),
                                    ["meta.title", "meta.paragraph_index"])
    assert split_group_value(row, ["meta.title"]) == "Cats"  # one path: the value itself, as before
    long = Row("f.jsonl", 5, {"context": "x" * 200})
    assert split_group_value(long, ["context"]).startswith("sha1:")
    with pytest.raises(InputError, match=r"f\.jsonl:3: field 'meta\.nope': missing group_by column"):
        split_group_value(row, ["meta.title", "meta.nope"])
    with pytest.raises(InputError, match=r"f\.jsonl:3: field 'meta': group_by value must be a string, a number"):
        split_group_value(row, ["meta"])
    blank = Row("f.jsonl", 6, {"context": " ", "meta": {"title": None}})
    assert split_group_value(blank, ["context"]) is None  # no passage: the conversation is its own unit
    assert split_group_value(blank, ["context", "meta.title"]) is None


def test_group_by_config_forms():
    assert SourceConfig(name="a", path="x", format="messages", group_by="meta.tree_id").group_paths == \
        ["meta.tree_id"]
    assert SourceConfig(name="a", path="x", format="messages", group_by=["meta.title", "meta.paragraph_index"]
                        ).group_paths == ["meta.title", "meta.paragraph_index"]
    assert SourceConfig(name="a", path="x", format="messages").group_paths == []
    for bad, message in (([], "non-empty list"), (["a", "a"], "distinct"), ([""], "must not be empty")):
        with pytest.raises(ValueError, match=message):
            SourceConfig(name="a", path="x", format="messages", group_by=bad)
    with pytest.raises(ValueError, match="group_by does not apply to format oasst"):
        SourceConfig(name="a", path="x", format="oasst", group_by="message_tree_id")


def test_group_by_list_in_yaml_names_the_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "d.jsonl").write_text("", encoding="utf-8")
    cfg.write_text("sources:\n  - name: a\n    path: d.jsonl\n    format: messages\n    group_by: []\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:5: field .sources\.0\.group_by.: give a column path"):
        load_data_config(cfg)


def test_fixed_split_source_sharing_a_passage_is_an_error(tmp_path):
    """A passage in a hashed source and in a fixed-split one would leak: the build refuses, naming the group."""
    def write(name: str, ids: range) -> Path:
        rows = [{"id": f"{name}{i}", "context": "One shared passage about cats.", "messages": [
            {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}
            for i in ids]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    config = DataConfig(sources=[
        SourceConfig(name="dev", path=str(write("dev", range(3))), format="messages", language="en", family="qa",
                     group_by="context", split="test"),
        SourceConfig(name="train", path=str(write("train", range(3, 40))), format="messages", language="en",
                     family="qa", group_by="context", split="train")])
    with pytest.raises(InputError, match=r"field 'meta\.split_group': split group .* would be in test .*"
                                         r"and train .*shares a group_by value"):
        split_build(config)
