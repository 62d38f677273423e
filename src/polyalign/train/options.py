"""Trainer options declared once, on the trainer's TRL config dataclass (`BucketSFTConfig`, `HDPOConfig`).

Each option is a dataclass field made with `option(...)`: its default, its help text, its bounds and its place
in the YAML run config (`yaml="balance.dro.eta"`). Everything else is derived from those fields:

- `section_model` builds the pydantic model of a YAML section (e.g. `balance:`), so that a run config keeps
  strict validation with file:line:field errors and has exactly the trainer's defaults;
- `option_values` reads a run config back at the same paths, giving the keyword arguments of the TRL config;
- `check_options` validates the bounds and choices again in the dataclass's `__post_init__`, for callers that
  build the TRL config directly.

An option marked `off=value` is an HDPO term that `value` turns off (plain DPO is every term off).
"""

from __future__ import annotations

import dataclasses
import keyword
import operator
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..config import StrictModel
from ..errors import ConfigError

BOUNDS = {"gt": (operator.gt, ">"), "ge": (operator.ge, ">="), "lt": (operator.lt, "<"), "le": (operator.le, "<=")}
_NO_OFF = object()


class SectionModel(StrictModel):
    """Base of the generated YAML sections: strict, and a key that is a Python keyword (`lambda`) is read by its
    YAML name."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              populate_by_name=True)


def option(default: Any, help: str, *, yaml: str, off: Any = _NO_OFF, **bounds: float) -> Any:
    """A trainer option: a dataclass field with its default, help text, YAML path and bounds (gt, ge, lt, le);
    `off` is the value that turns an HDPO term off."""
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"option(): unknown bound(s) {sorted(unknown)}")
    metadata: dict[str, Any] = {"help": help, "yaml": yaml, **bounds}
    if off is not _NO_OFF:
        metadata["off"] = off
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(config: Any) -> list[dataclasses.Field]:
    """The option fields of a config dataclass or instance (those with a YAML path), in the order its class body
    declares them (an option that overrides a TRL field, like `beta`, keeps its place in our declarations)."""
    cls = config if isinstance(config, type) else type(config)
    options = {f.name: f for f in dataclasses.fields(cls) if "yaml" in f.metadata}
    declared = [name for name in vars(cls).get("__annotations__", {}) if name in options]
    return [options[name] for name in declared] + [f for name, f in options.items() if name not in declared]


def attribute_name(key: str) -> str:
    """The Python attribute of a YAML key (`lambda` -> `lambda_`)."""
    return f"{key}_" if keyword.iskeyword(key) else key


def section_model(config_cls: Any, section: str, name: str, doc: str,
                  nested: dict[str, tuple[type[BaseModel], str]] | None = None) -> type[BaseModel]:
    """The pydantic model of the YAML section `section` (a dotted path): one field per option directly under it
    (same type, default, description and bounds), then the `nested` sub-sections (key -> (model, description))."""
    fields: dict[str, Any] = {}
    for f in option_fields(config_cls):
        parent, _, key = f.metadata["yaml"].rpartition(".")
        if parent != section:
            continue
        bounds = {k: f.metadata[k] for k in BOUNDS if k in f.metadata}
        alias = {"alias": key} if attribute_name(key) != key else {}
        fields[attribute_name(key)] = (f.type, Field(f.default, description=f.metadata["help"], **alias, **bounds))
    for key, (model, description) in (nested or {}).items():
        fields[key] = (model, Field(default_factory=model, description=description))
    if not fields:
        raise TypeError(f"{config_cls.__name__} has no option under '{section}'")
    return create_model(name, __base__=SectionModel, __doc__=doc, **fields)


def value_at(run_config: BaseModel, path: str) -> Any:
    """The value of a run config at a dotted YAML path."""
    node: Any = run_config
    for key in path.split("."):
        node = getattr(node, attribute_name(key))
    return node


def option_values(run_config: BaseModel, config_cls: Any) -> dict[str, Any]:
    """The options of `config_cls` read from a run config at their YAML paths (field name -> value)."""
    return {f.name: value_at(run_config, f.metadata["yaml"]) for f in option_fields(config_cls)}


def reserved_training_keys(config_cls: Any) -> dict[str, str]:
    """Option names that a `training:` mapping must not set, each with where the run config sets it."""
    out = {}
    for f in option_fields(config_cls):
        parent, _, key = f.metadata["yaml"].rpartition(".")
        out[f.name] = f"in {parent}" if key == f.name else f"as {f.metadata['yaml']}"
    return out


def _choices(annotation: Any) -> tuple[Any, ...] | None:
    return get_args(annotation) if get_origin(annotation) is Literal else None


def check_options(config: Any) -> None:
    """Bounds and choices of every option of a config dataclass; a ConfigError names the field."""
    for f in option_fields(config):
        value = getattr(config, f.name)
        choices = _choices(f.type)
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if value is None or isinstance(value, bool):
            continue
        for key, (holds, sign) in BOUNDS.items():
            if key in f.metadata and not holds(value, f.metadata[key]):
                raise ConfigError(f"{f.name} must be {sign} {f.metadata[key]}, got {value}")


def require_config(trainer_cls: type, config_cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A trainer's `args` (keyword, or the second positional argument after the model); a ConfigError unless it is
    a `config_cls`, where the trainer reads its options."""
    config = kwargs.get("args", args[1] if len(args) > 1 else None)
    if not isinstance(config, config_cls):
        raise ConfigError(f"{trainer_cls.__name__} needs args={config_cls.__name__}(...) (its options live there), "
                          f"got {type(config).__name__}")
    return config
