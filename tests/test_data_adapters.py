"""Each source format, on fixtures written here: conversations become records with the right history,
prompt, response, alternatives and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyalign.data.formats import FORMATS, Filtered, Skip, get_path, read_source
from polyalign.data.normalize import normalize_conversation
from polyalign.data.sources import DataConfig, SourceConfig, load_data_config
from polyalign.errors import ConfigError, InputError


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def records_of(source: SourceConfig, edges=(40, 120, 240), labels=("short", "medium", "long", "xlong")):
    out = []
    for item in read_source(source):
        if isinstance(item, InputError):
            raise item
        if isinstance(item, Filtered):
            continue
        try:
            out.extend(normalize_conversation(item, source, length_edges=edges, length_labels=labels))
        except Skip:
            continue
    return out


def source(path, fmt, **kw) -> SourceConfig:
    return SourceConfig(name=kw.pop("name", "src"), path=str(path), format=fmt, **kw)


# ------------------------------------------------------------------------------------------------ messages

def test_messages_k_assistant_turns_give_k_records(tmp_path):
    conv = {"id": "c1", "lang": "en", "license": "MIT", "meta": {"track": "chitchat", "upstream": "x"},
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi  there"}, {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."},
                         {"role": "user", "content": "Good."}, {"role": "assistant", "content": "Bye  now."}],
            "ranked_alternatives": [{"content": "Bye now.", "rank": 0}, {"content": "See you.", "rank": 1},
                                    {"content": "Later!", "rank": 2}]}
    path = write_jsonl(tmp_path / "m.jsonl", [conv])
    recs = records_of(source(path, "messages", language="en", family="open_chat"))
    assert [r.id for r in recs] == ["c1#0", "c1#1", "c1#2"]
    assert [r.turn_index for r in recs] == [0, 1, 2]
    assert {r.conversation_id for r in recs} == {"c1"}
    assert recs[0].history == [] and recs[0].track == "single" and recs[0].prompt == "Hi there"
    assert recs[2].history == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]
    assert recs[2].prompt == "Good." and recs[2].response == "Bye now." and recs[2].track == "multi"
    # alternatives only on the last assistant turn, without the response itself
    assert recs[0].alternatives == [] and recs[1].alternatives == []
    assert recs[2].alternatives == [{"content": "See you.", "rank": 1}, {"content": "Later!", "rank": 2}]
    assert recs[2].meta["system"] == "Be brief." and recs[2].meta["upstream"] == "x"
    assert recs[2].license == "MIT" and recs[2].source == "src"
    assert recs[2].length == 3 and recs[2].length_bin == "short"


def test_messages_without_id_gets_source_line_id(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "q?"},
                                                            {"role": "assistant", "content": "a"}]}] * 2)
    recs = records_of(source(path, "messages", name="mine", language="en"))
    assert [r.id for r in recs] == ["mine-1#0", "mine-2#0"]


def test_trailing_user_turn_is_dropped(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "c", "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}])
    recs = records_of(source(path, "messages", language="en"))
    assert len(recs) == 1 and recs[0].response == "b"


# ------------------------------------------------------------------------------------------------ sharegpt

def test_sharegpt(tmp_path):
    row = {"id": "s1", "conversations": [{"from": "system", "value": "You are kind."},
                                         {"from": "human", "value": "Name a fruit."},
                                         {"from": "gpt", "value": "Apple."},
                                         {"from": "user", "value": "Another?"},
                                         {"from": "assistant", "value": "Pear."}]}
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    recs = records_of(source(path, "sharegpt", language="en"))
    assert [(r.prompt, r.response) for r in recs] == [("Name a fruit.", "Apple."), ("Another?", "Pear.")]
    assert all(r.meta["system"] == "You are kind." for r in recs)
    assert all(t["role"] != "system" for r in recs for t in r.history)


def test_sharegpt_unknown_speaker_names_the_field(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "alien", "value": "x"}]}])
    with pytest.raises(InputError, match=r"s\.jsonl:1: field 'conversations\[0\]\.from': unknown role"):
        records_of(source(path, "sharegpt", language="en"))


# -------------------------------------------------------------------------------------------------- alpaca

def test_alpaca_one_record_per_row_with_history_and_context(tmp_path):
    rows = [{"instruction": "Summarize.", "input": "A long passage.", "output": "Short."},
            {"instruction": "And now?", "input": "", "output": "Done.",
             "history": [["First question", "First answer"], ["Second", "Second answer"]]}]
    path = tmp_path / "a.json"  # a JSON array file; each element's line is where it starts
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n", encoding="utf-8")
    recs = records_of(source(path, "alpaca", name="alp", language="en", family="assistant"))
    assert len(recs) == 2
    assert recs[0].context == "A long passage." and recs[0].prompt == "Summarize." and recs[0].history == []
    assert recs[1].history[0] == {"role": "user", "content": "First question"} and len(recs[1].history) == 4
    assert recs[1].track == "multi" and recs[1].turn_index == 2 and recs[1].id == "alp-3#2"


def test_json_array_errors_name_the_element_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"instruction": "x", "output": "y"},\n {"instruction": "x"}\n]', encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.json:3: field 'output': missing required field"):
        records_of(source(path, "alpaca", language="en"))


# --------------------------------------------------------------------------------------------------- oasst

OASST_ROWS = [
    {"message_id": "p1", "parent_id": None, "role": "prompter", "text": "Tell me a joke.", "lang": "en",
     "message_tree_id": "t1", "rank": None},
    {"message_id": "a1", "parent_id": "p1", "role": "assistant", "text": "Second best joke.", "lang": "en",
     "message_tree_id": "t1", "rank": 1},
    {"message_id": "a0", "parent_id": "p1", "role": "assistant", "text": "Best joke.", "lang": "en",
     "message_tree_id": "t1", "rank": 0},
    {"message_id": "a2", "parent_id": "p1", "role": "assistant", "text": "Worst joke.", "lang": "en",
     "message_tree_id": "t1", "rank": 2},
    {"message_id": "ax", "parent_id": "p1", "role": "assistant", "text": "Deleted joke.", "lang": "en",
     "message_tree_id": "t1", "rank": None, "deleted": True},
    {"message_id": "p2", "parent_id": "a1", "role": "prompter", "text": "Another one?", "lang": "en",
     "message_tree_id": "t1"},
    {"message_id": "a3", "parent_id": "p2", "role": "assistant", "text": "Only reply.", "lang": "en",
     "message_tree_id": "t1"},
    {"message_id": "p3", "parent_id": "ax", "role": "prompter", "text": "Under deleted.", "lang": "en",
     "message_tree_id": "t1"},
    {"message_id": "a4", "parent_id": "p3", "role": "assistant", "text": "Orphan.", "lang": "en",
     "message_tree_id": "t1"},
    {"message_id": "q1", "parent_id": None, "role": "prompter", "text": "Hola", "lang": "es",
     "message_tree_id": "t2"},
    {"message_id": "r1", "parent_id": "q1", "role": "assistant", "text": "Hola!", "lang": "es",
     "message_tree_id": "t2", "rank": 0},
]


def test_oasst_threads_best_reply_and_alternatives(tmp_path):
    path = write_jsonl(tmp_path / "o.jsonl", OASST_ROWS)
    src = source(path, "oasst", family="assistant")
    items = list(read_source(src))
    filtered = sorted(i.reason for i in items if isinstance(i, Filtered))
    assert filtered == ["oasst: an ancestor message was deleted or failed review", "oasst: deleted message"]
    recs = records_of(src)  # language auto: the Spanish tree is dropped
    assert [r.id for r in recs] == ["t1#p1", "t1#p2"]
    first, second = recs
    assert first.response == "Best joke." and first.conversation_id == "t1" and first.language == "en"
    assert first.alternatives == [{"content": "Second best joke.", "rank": 1}, {"content": "Worst joke.", "rank": 2}]
    # the follow-up thread continues the rank-1 reply it was written under
    assert second.history == [{"role": "user", "content": "Tell me a joke."},
                              {"role": "assistant", "content": "Second best joke."}]
    assert second.response == "Only reply." and second.alternatives == [] and second.turn_index == 1


def test_oasst_tree_export_is_flattened(tmp_path):
    tree = {"message_tree_id": "t9", "prompt": {
        "message_id": "p", "role": "prompter", "text": "Q?", "lang": "en", "replies": [
            {"message_id": "a", "role": "assistant", "text": "A1", "rank": 1, "replies": []},
            {"message_id": "b", "role": "assistant", "text": "A0", "rank": 0, "replies": []}]}}
    path = write_jsonl(tmp_path / "trees.jsonl", [tree])
    (rec,) = records_of(source(path, "oasst", language="en", family="assistant"))
    assert rec.response == "A0" and rec.alternatives == [{"content": "A1", "rank": 1}]


def test_oasst_missing_parent_is_an_error(tmp_path):
    rows = [{"message_id": "p", "parent_id": "nowhere", "role": "prompter", "text": "Q", "message_tree_id": "t"},
            {"message_id": "a", "parent_id": "p", "role": "assistant", "text": "A", "message_tree_id": "t"}]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    with pytest.raises(InputError, match=r"o\.jsonl:1: field 'parent_id': parent message 'nowhere' not found"):
        records_of(source(path, "oasst", language="en"))


# ------------------------------------------------------------------------------------------------ polyalign

def test_polyalign_records_roundtrip(tmp_path):
    row = {"id": "x#3", "conversation_id": "x", "source": "elsewhere", "language": "zh", "prompt": "你好吗？",
           "response": "我很好。", "history": [{"role": "user", "content": "嗨"}, {"role": "assistant", "content": "你好"}],
           "family": "open_chat", "turn_index": 3, "alternatives": [{"content": "还行", "rank": 1}],
           "length_bin": "whatever", "meta": {"k": 1}}
    path = write_jsonl(tmp_path / "p.jsonl", [row])
    (rec,) = records_of(source(path, "polyalign"))
    assert (rec.id, rec.conversation_id, rec.language, rec.family, rec.turn_index) == ("x#3", "x", "zh", "open_chat", 3)
    assert rec.track == "multi" and rec.length == 4 and rec.length_bin == "short"  # recomputed
    assert rec.alternatives == [{"content": "还行", "rank": 1}] and rec.meta["origin_source"] == "elsewhere"


def test_polyalign_unknown_field(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prompt": "p", "response": "r", "respnse": "typo"}])
    with pytest.raises(InputError, match="field 'respnse': unknown field"):
        records_of(source(path, "polyalign", language="en"))


# -------------------------------------------------------------------------- fields / turns / utterances + columns

def test_fields_with_column_mapping_and_dotted_paths(tmp_path):
    rows = [{"qid": 7, "question": "Who wrote it?", "passage": "Text by Ann.", "answers": {"text": ["Ann", "A."]},
             "extra": {"topic": "books"}}]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    src = source(path, "fields", language="en", family="qa", meta_columns=["extra.topic"],
                 columns={"id": "qid", "prompt": "question", "context": "passage", "response": "answers.text.0"})
    (rec,) = records_of(src)
    assert (rec.id, rec.prompt, rec.context, rec.response) == ("7#0", "Who wrote it?", "Text by Ann.", "Ann")
    assert rec.meta["extra.topic"] == "books"


def test_fields_missing_mapped_column_names_source_path(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "Q?", "answers": {"text": []}}])
    src = source(path, "fields", language="en", columns={"prompt": "question", "response": "answers.text.0"})
    with pytest.raises(InputError, match=r"f\.jsonl:1: field 'answers\.text\.0': missing required field"):
        records_of(src)
    src = source(path, "fields", language="en", skip_empty=True,
                 columns={"prompt": "question", "response": "answers.text.0"})
    assert records_of(src) == []
    assert [i.reason for i in read_source(src)] == ["empty or missing response (skip_empty)"]


def test_turns_coqa_like(tmp_path):
    row = {"id": "story1", "story": "Once upon a time there was a cat named Tom.",
           "questions": ["Who is it about?", "What is his name?"],
           "answers": {"input_text": ["a cat", "Tom"], "answer_start": [0, 1]}}
    path = write_jsonl(tmp_path / "c.jsonl", [row])
    src = source(path, "turns", language="en", family="qa",
                 columns={"context": "story", "prompts": "questions", "responses": "answers.input_text"})
    recs = records_of(src)
    assert [(r.prompt, r.response, r.turn_index) for r in recs] == [("Who is it about?", "a cat", 0),
                                                                     ("What is his name?", "Tom", 1)]
    assert recs[1].context == row["story"] and recs[1].history[-1] == {"role": "assistant", "content": "a cat"}


def test_utterances_dailydialog_like(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"dialog": ["Hi!", "Hello.", "Coffee?", "Sure.", "Now?"]}])
    recs = records_of(source(path, "utterances", language="en", columns={"utterances": "dialog"}))
    assert [r.response for r in recs] == ["Hello.", "Sure."]  # the unanswered last utterance yields nothing


def test_explode_and_keep_if(tmp_path):
    article = {"title": "T", "paragraphs": [
        {"context": "第一段文字。", "qas": [{"id": "q1", "question": "问一？", "answers": [{"text": "答一"}]},
                                       {"id": "q2", "question": "问二？", "answers": [{"text": "答二"}]}]},
        {"context": "第二段。", "qas": [{"id": "q3", "question": "问三？", "answers": [{"text": "答三"}]}]}]}
    path = write_jsonl(tmp_path / "drcd.jsonl", [article])
    src = source(path, "fields", language="zh", family="qa", explode=["paragraphs", "paragraphs.qas"],
                 keep_if={"paragraphs.qas.id": ["q1", "q3"]},
                 columns={"id": "paragraphs.qas.id", "context": "paragraphs.context",
                          "prompt": "paragraphs.qas.question", "response": "paragraphs.qas.answers.0.text"})
    recs = records_of(src)
    assert [(r.id, r.context, r.response) for r in recs] == [("q1#0", "第一段文字。", "答一"), ("q3#0", "第二段。", "答三")]


def test_get_path():
    row = {"a": {"b": [10, {"c": "x"}]}}
    assert get_path(row, "a.b.0") == 10 and get_path(row, "a.b.1.c") == "x" and get_path(row, "a.b.-1.c") == "x"
    assert get_path(row, "a.z", None) is None
    with pytest.raises(KeyError):
        get_path(row, "a.b.5")


def test_limit_and_language_auto(tmp_path):
    rows = [{"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for i, (q, a) in enumerate([("你好吗？", "我很好。"), ("How are you?", "Fine."), ("x", "y")])]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    recs = records_of(source(path, "messages", limit=2))
    assert [r.language for r in recs] == ["zh", "en"]


# ---------------------------------------------------------------------------------------- Hugging Face

@pytest.fixture(scope="module")
def hf_datasets(tmp_path_factory):
    datasets = pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("hf")
    squad = datasets.Dataset.from_list([
        {"id": "s1", "title": "Cats", "context": "Cats are small mammals kept as pets.", "question": "What are cats?",
         "answers": {"text": ["small mammals"], "answer_start": [9]}},
        {"id": "s2", "title": "Cats", "context": "Cats sleep a lot.", "question": "Can cats fly?",
         "answers": {"text": [], "answer_start": []}},  # SQuAD v2 unanswerable
    ])
    squad.save_to_disk(str(root / "squad"))
    coqa = datasets.DatasetDict({"validation": datasets.Dataset.from_list([
        {"source": "wiki", "story": "Anna has a red bike. She rides it to school.",
         "questions": ["What does Anna have?", "What color?", "Where does she ride?"],
         "answers": {"input_text": ["a bike", "red", "to school"], "answer_start": [0, 1, 2],
                     "answer_end": [1, 2, 3]}}])})
    coqa.save_to_disk(str(root / "coqa"))
    return root


def test_hf_squad_like_from_disk(hf_datasets):
    src = source(hf_datasets / "squad", "hf", language="en", family="qa", skip_empty=True,
                 columns={"id": "id", "prompt": "question", "context": "context", "response": "answers.text.0"},
                 meta_columns=["title"])
    recs = records_of(src)
    assert len(recs) == 1
    assert (recs[0].id, recs[0].prompt, recs[0].response, recs[0].context) == (
        "s1#0", "What are cats?", "small mammals", "Cats are small mammals kept as pets.")
    assert recs[0].meta["title"] == "Cats"
    strict = source(hf_datasets / "squad", "hf", language="en",
                    columns={"prompt": "question", "response": "answers.text.0"})
    with pytest.raises(InputError, match=r"squad\[train\]:2: field 'answers\.text\.0'"):
        records_of(strict)


def test_hf_coqa_like_multiturn_from_disk(hf_datasets):
    src = source(hf_datasets / "coqa", "hf", language="en", family="qa",
                 hf={"shape": "turns", "split": "validation"},
                 columns={"context": "story", "prompts": "questions", "responses": "answers.input_text"})
    recs = records_of(src)
    assert [r.response for r in recs] == ["a bike", "red", "to school"]
    assert [r.track for r in recs] == ["single", "multi", "multi"] and recs[2].context.startswith("Anna")
    wrong = source(hf_datasets / "coqa", "hf", hf={"shape": "turns", "split": "nope"})
    with pytest.raises(InputError, match="split 'nope' not in the saved dataset"):
        records_of(wrong)


# ------------------------------------------------------------------------------------------ config errors

def test_unknown_format_lists_known_formats(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - name: a\n    path: x.jsonl\n    format: csv\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_data_config(cfg)
    msg = str(exc.value)
    assert "c.yaml:4" in msg and "sources.0.format" in msg and "unknown format 'csv'" in msg
    for name in FORMATS:
        assert name in msg


def test_unknown_column_target_is_a_config_error():
    with pytest.raises(ValueError, match="unknown field"):
        SourceConfig(name="a", path="x", format="fields", columns={"respnse": "answer"})


def test_paths_relative_to_yaml_and_missing_path(tmp_path):
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "data.jsonl", [])
    cfg = tmp_path / "sub" / "c.yaml"
    cfg.write_text("sources:\n  - {name: a, path: ../data.jsonl, format: messages}\n", encoding="utf-8")
    loaded = load_data_config(cfg)
    assert loaded.sources[0].path == str((tmp_path / "data.jsonl").resolve())
    cfg.write_text("sources:\n  - name: a\n    path: ../missing.jsonl\n    format: messages\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: field 'sources\.0\.path': path not found"):
        load_data_config(cfg)


def test_hub_yaml_parses_and_validates(repo_root):
    cfg = load_data_config(repo_root / "configs" / "data" / "hub.yaml")
    assert isinstance(cfg, DataConfig) and len(cfg.sources) >= 8
    names = " ".join(s.path for s in cfg.sources)
    for hub_id in ("databricks/databricks-dolly-15k", "OpenAssistant/oasst1", "hfl/cmrc2018", "rajpurkar/squad_v2",
                   "stanfordnlp/coqa"):
        assert hub_id in names
    assert all(s.format == "hf" and s.license for s in cfg.sources)


def test_bundled_yaml_declares_every_file(repo_root, shared_data_dir):
    cfg = load_data_config(repo_root / "configs" / "data" / "bundled.yaml")
    paths = {Path(s.path).name for s in cfg.sources}
    assert paths == {p.name for p in shared_data_dir.glob("*.jsonl")}
    assert all(s.license and s.family != "auto" for s in cfg.sources)


def test_group_by_column(tmp_path):
    rows = [{"id": f"c{i}", "meta": {"tree": "T1" if i < 2 else "T2"}, "messages": [
        {"role": "user", "content": "Same root question?" if i < 2 else "Other?"},
        {"role": "assistant", "content": f"Answer {i}."}]} for i in range(3)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    recs = records_of(source(path, "messages", language="en", group_by="meta.tree"))
    assert [r.meta["split_group"] for r in recs] == ["T1", "T1", "T2"]
    recs = records_of(source(path, "messages", language="en", group_by="messages.0.content"))
    assert recs[0].meta["split_group"] == recs[1].meta["split_group"] != recs[2].meta["split_group"]
    with pytest.raises(InputError, match="field 'meta.nope': missing group_by column"):
        records_of(source(path, "messages", language="en", group_by="meta.nope"))
