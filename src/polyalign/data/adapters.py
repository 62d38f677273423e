"""Compatibility: the source formats live in polyalign.data.formats (one module per format family, the readers
and the registry); this module re-exports the names that were imported from here."""

from .formats import ASSISTANT, FORMATS, ROLE_ALIASES, SYSTEM, USER, Fields, Filtered, Format, Item, \
    RawConversation, Row, Skip, Turn, bad, error_reason, format_fields, get_path, hf_label, load_hf_dataset, \
    read_source, row_converter, set_path, source_rows, split_group_value

__all__ = ["ASSISTANT", "FORMATS", "Fields", "Filtered", "Format", "Item", "ROLE_ALIASES", "RawConversation", "Row",
           "SYSTEM", "Skip", "Turn", "USER", "bad", "error_reason", "format_fields", "get_path", "hf_label",
           "load_hf_dataset", "read_source", "row_converter", "set_path", "source_rows", "split_group_value"]
