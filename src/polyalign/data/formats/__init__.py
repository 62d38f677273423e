"""Source formats: read a source (JSONL / JSON files or a Hugging Face dataset) and yield raw conversations,
each with its (file, line) provenance, so that validation errors can name file, line and field.

Formats (see docs/data.md for an example of each), one module per family:
  messages    {id, lang, messages: [{role, content}], ranked_alternatives, meta, context}  (chat.py)
  sharegpt    {id, conversations: [{from, value}], system}  (chat.py)
  alpaca      {instruction, input, output, history: [[user, assistant], ...], system}, one record per row
              (single_turn.py)
  fields      one turn from named fields {id, prompt, response, context, history, system}  (single_turn.py)
  turns       parallel lists {id, prompts: [...], responses: [...], context}, CoQA-like  (dialogue.py)
  utterances  one alternating list {id, utterances: [...]}, first speaker = user, DailyDialog-like  (dialogue.py)
  oasst       OASST message rows or tree exports; threads are rebuilt from the tree  (oasst.py)
  polyalign   our own Record JSONL (records/{split}.jsonl of a build)  (records.py)
  hf          a Hugging Face dataset (hub id or local folder); its rows are parsed as `hf.shape`  (registry.py)

A source's `columns` maps a field the format expects to the row's column path (dotted, list indices as
numbers, e.g. ``answers.text.0``), so any of the formats can read differently named columns. Rows come from
readers.py (files, folders, datasets; `explode`, `keep_if`); base.py and fields.py hold what the formats share;
registry.py maps names to formats and reads a source.
"""

from .base import ASSISTANT, ROLE_ALIASES, SYSTEM, USER, Filtered, Format, Item, RawConversation, Row, Skip, Turn, \
    bad, error_reason, get_path, row_converter, set_path, split_group_value
from .fields import Fields
from .readers import hf_label, load_hf_dataset, source_rows
from .registry import FORMATS, format_fields, read_source

__all__ = ["ASSISTANT", "FORMATS", "Fields", "Filtered", "Format", "Item", "ROLE_ALIASES", "RawConversation", "Row",
           "SYSTEM", "Skip", "Turn", "USER", "bad", "error_reason", "format_fields", "get_path", "hf_label",
           "load_hf_dataset", "read_source", "row_converter", "set_path", "source_rows", "split_group_value"]
