"""The data-build config: a list of sources (path, format, column mapping, language, family, license) and the
settings of splitting, length bins and buckets. See docs/data.md for the YAML reference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..config import StrictModel, deep_update, load_yaml, read_yaml_extends, validate_config
from ..errors import ConfigError
from ..text import DEFAULT_LENGTH_EDGES, DEFAULT_LENGTH_LABELS
from .formats import FORMATS
from .schema import BUCKET_FIELDS, SPLITS

#: Record fields a bucket key may use.
BUCKET_KEY_FIELDS = ("language", "track", "family", "length_bin", "source", "license")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no 'Value error,' prefix)."""
    return PydanticCustomError("invalid", message.replace("{", "(").replace("}", ")"))


def known_formats() -> tuple[str, ...]:
    """Names of the registered source formats (polyalign.data.formats)."""
    return tuple(FORMATS)


def row_formats() -> tuple[str, ...]:
    """Formats whose rows a Hugging Face dataset can be read as (every format except `hf` itself)."""
    return tuple(f for f in known_formats() if f != "hf")


class HFOptions(StrictModel):
    """How to load a Hugging Face dataset (format `hf`)."""

    shape: str = Field("fields", description="the format each row has once `columns` is applied: fields, turns, "
                                             "utterances, messages, sharegpt, alpaca, oasst or polyalign")
    name: str | None = Field(None, description="dataset configuration (subset) name, e.g. 'all'")
    split: str = Field("train", description="which split of the dataset to read, e.g. train, validation")
    revision: str | None = Field(None, description="a git revision of the hub dataset (pin it for reproducibility)")
    data_files: str | list[str] | dict[str, Any] | None = Field(
        None, description="data_files passed to datasets.load_dataset")
    streaming: bool = Field(False, description="stream rows instead of downloading the whole dataset first")

    @field_validator("shape")
    @classmethod
    def _known_shape(cls, value: str) -> str:
        shapes = row_formats()
        if value not in shapes:
            raise _invalid(f"unknown row shape {value!r}; known shapes: {', '.join(shapes)}")
        return value


class SourceConfig(StrictModel):
    """One input: a file, a folder of files, or a Hugging Face dataset."""

    name: str = Field(description="short unique name of the source (letters, digits, _ . -); stored in "
                                  "each record's `source`")
    path: str = Field(description="a file or folder, relative to the YAML file's folder or absolute; for "
                                  "format `hf` also a hub id such as 'rajpurkar/squad_v2'")
    format: str = Field(description="messages, sharegpt, alpaca, oasst, polyalign, fields, turns, utterances or "
                                    "hf (see docs/data.md)")
    columns: dict[str, str] = Field(default_factory=dict, description="field the format expects -> the row's "
                                    "column path (dotted, list indices as numbers: 'answers.text.0')")
    explode: list[str] = Field(default_factory=list, description="list-valued column paths to expand into one "
                               "row per element, outermost first (e.g. ['paragraphs', 'paragraphs.qas'])")
    keep_if: dict[str, list[Any]] = Field(default_factory=dict, description="column path -> allowed values; "
                                          "other rows are dropped and counted as filtered")
    meta_columns: list[str] = Field(default_factory=list, description="column paths copied into each record's "
                                    "meta")
    language: Literal["en", "zh", "auto"] = Field("auto", description="the language of every record, or auto: "
                                                  "the item's own en/zh language field, else detected from text")
    family: str = Field("auto", description="response family of every record (assistant, qa, longform_qa, "
                                            "open_chat, knowledge_chat, task, ...) or auto: the rule-based "
                                            "classifier of polyalign.data.families")
    license: str = Field("", description="license of the source (stored in each record); empty: the item's own "
                                         "`license` field")
    split: Literal["train", "val", "test"] | None = Field(None, description="put every conversation of this "
                                                          "source in this split instead of the hashed one")
    group_by: str | list[str] | None = Field(None, description="column path (or a list of paths, read together) "
                                             "whose value puts conversations in one split unit (e.g. "
                                             "meta.tree_id: all threads of an OASST tree stay in one split; "
                                             "context: all questions on one passage do); default: each "
                                             "conversation is its own unit")
    skip_empty: bool = Field(False, description="drop (and count) items whose response is missing or empty, "
                                                "e.g. SQuAD v2 unanswerable questions, instead of failing")
    limit: int | None = Field(None, ge=1, description="read at most this many items (rows or conversations)")
    hf: HFOptions | None = Field(None, description="loading options for format `hf`")

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise _invalid("use letters, digits, '_', '.' or '-' only")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        formats = known_formats()
        if value not in formats:
            raise _invalid(f"unknown format {value!r}; known formats: {', '.join(formats)}")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_paths(cls, value: str | list[str] | None) -> str | list[str] | None:
        """One column path or a non-empty list of distinct, non-empty ones."""
        paths = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise _invalid("give a column path or a non-empty list of column paths (or leave group_by out)")
        if any(not p.strip() for p in paths):
            raise _invalid("column paths must not be empty")
        if len(set(paths)) != len(paths):
            raise _invalid(f"column paths must be distinct; got {paths}")
        return value

    @field_validator("family")
    @classmethod
    def _family_chars(cls, value: str) -> str:
        if not _LABEL_RE.match(value):
            raise _invalid("use letters, digits, '_', '.' or '-' only ('|' and '+' are reserved)")
        return value

    @model_validator(mode="after")
    def _hf_options(self) -> SourceConfig:
        if self.hf is not None and self.format != "hf":
            raise _invalid("`hf` options apply only to format: hf")
        if self.format == "hf" and self.hf is None:
            self.hf = HFOptions()
        known = FORMATS[self.row_format].fields
        unknown = sorted(set(self.columns) - set(known))
        if unknown:
            raise _invalid(f"columns: unknown field(s) {unknown} for format {self.row_format!r}; "
                             f"it reads {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _group_by_applies(self) -> SourceConfig:
        """group_by is refused where it would be ignored (OASST trees group themselves)."""
        if self.group_by and self.row_format == "oasst":
            raise _invalid("group_by does not apply to format oasst: the threads of a message tree already share "
                           "the tree id as their conversation id, so a tree stays in one split")
        return self

    @property
    def group_paths(self) -> list[str]:
        """The `group_by` column paths as a list (empty without group_by)."""
        if self.group_by is None:
            return []
        return [self.group_by] if isinstance(self.group_by, str) else list(self.group_by)

    @property
    def row_format(self) -> str:
        """The format each row is parsed as (the `hf.shape` for Hugging Face datasets)."""
        return self.hf.shape if self.format == "hf" and self.hf else self.format


class SplitRatios(StrictModel):
    """Shares of conversations per split (they must sum to 1)."""

    train: float = Field(0.8, ge=0, le=1, description="share of conversations in train")
    val: float = Field(0.1, ge=0, le=1, description="share of conversations in val")
    test: float = Field(0.1, ge=0, le=1, description="share of conversations in test")

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise _invalid(f"split ratios must sum to 1, got {total:g}")
        return self

    def as_dict(self) -> dict[str, float]:
        """{split: ratio} in the order train, val, test."""
        return {s: getattr(self, s) for s in SPLITS}


class DataConfig(StrictModel):
    """`polyalign data build` config."""

    sources: list[SourceConfig] = Field(min_length=1, description="the inputs, read in this order")
    length_edges: list[int] = Field(default_factory=lambda: list(DEFAULT_LENGTH_EDGES),
                                    description="upper edges (inclusive) of the length bins, in length-rule "
                                                "tokens")
    length_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LENGTH_LABELS),
                                     description="one label per length bin (len(length_edges) + 1)")
    split_ratios: SplitRatios = Field(default_factory=SplitRatios, description="train/val/test shares")
    seed: int = Field(0, description="seed of the conversation-level split hash")
    min_bucket_size: int = Field(20, ge=1, description="buckets with fewer TRAIN records are merged into a "
                                                       "neighbouring length bin (see docs/data.md)")
    bucket_key: list[str] = Field(default_factory=lambda: list(BUCKET_FIELDS),
                                  description=f"record fields joined by '|' into bucket_id; any of "
                                              f"{', '.join(BUCKET_KEY_FIELDS)}")
    skip_invalid: bool = Field(False, description="skip and count invalid lines/conversations instead of "
                                                  "stopping at the first one")
    languages: list[Literal["en", "zh"]] | None = Field(None, description="keep only records in these languages "
                                                        "(null: all); the others are counted as filtered. The "
                                                        "split of a record does not depend on it")

    @field_validator("length_edges")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or any(e <= 0 for e in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise _invalid("must be a non-empty list of positive, strictly increasing integers")
        return value

    @field_validator("length_labels")
    @classmethod
    def _label_chars(cls, value: list[str]) -> list[str]:
        for label in value:
            if not _LABEL_RE.match(label):
                raise _invalid(f"label {label!r}: use letters, digits, '_', '.' or '-' only")
        if len(set(value)) != len(value):
            raise _invalid("labels must be distinct")
        return value

    @field_validator("bucket_key")
    @classmethod
    def _key_fields(cls, value: list[str]) -> list[str]:
        bad = [f for f in value if f not in BUCKET_KEY_FIELDS]
        if bad or not value or len(set(value)) != len(value):
            raise _invalid(f"must be distinct fields among {', '.join(BUCKET_KEY_FIELDS)}; got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if len(self.length_labels) != len(self.length_edges) + 1:
            raise _invalid(f"length_labels needs {len(self.length_edges) + 1} labels for "
                             f"{len(self.length_edges)} edges, got {len(self.length_labels)}")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _invalid(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self


def is_local(path: str | Path) -> bool:
    """Whether a source path names something on this machine (else, for format hf, a hub id)."""
    return Path(path).exists()


def load_data_config(path: str | Path, overrides: dict[str, Any] | None = None) -> DataConfig:
    """Load a data config; resolve source paths against the YAML file's folder and check that file sources
    exist (a ConfigError naming the YAML line otherwise). Hub ids of `hf` sources are kept as they are."""
    path = Path(path)
    data = read_yaml_extends(path, "data config")
    _, lines = load_yaml(path)
    if overrides:
        data = deep_update(data, overrides)
    config = validate_config(data, DataConfig, file=path, lines=lines)
    return resolve_paths(config, path.parent, file=path, lines=lines)


def resolve_paths(config: DataConfig, base_dir: str | Path, *, file: str | Path | None = None,
                  lines: dict[tuple, int] | None = None) -> DataConfig:
    """Make source paths absolute (relative ones are taken from `base_dir`) and check they exist."""
    base_dir = Path(base_dir).resolve()
    for i, source in enumerate(config.sources):
        raw = Path(source.path).expanduser()
        candidate = raw if raw.is_absolute() else base_dir / raw
        if candidate.exists():
            source.path = str(candidate.resolve())
            continue
        if source.format == "hf" and not raw.is_absolute() and not source.path.startswith("."):
            continue  # a hub id, loaded by `datasets` at build time
        where = str(file) if file else "<config>"
        line = (lines or {}).get(("sources", i, "path"))
        if line:
            where += f":{line}"
        raise ConfigError(f"{where}: field 'sources.{i}.path': path not found: {candidate}")
    return config
