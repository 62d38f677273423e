"""Configuration: strict pydantic models loaded from YAML, with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _yaml_line_index(text: str) -> dict[tuple, int]:
    """Map each key path (tuple of keys/indices) in a YAML document to its 1-based line."""
    index: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: Any, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                index[sub] = key.start_mark.line + 1
                walk(value, sub)
                index[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
    return index


def format_validation_error(exc: ValidationError, *, file: str | Path | None = None,
                            lines: dict[tuple, int] | None = None, prefix: tuple = ()) -> str:
    """One readable line per pydantic error: file:line: field 'a.b': message."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "<root>"
        line = None
        if lines:
            probe = loc
            while probe and probe not in lines:
                probe = probe[:-1]
            line = lines.get(probe)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the config reference in docs/)"
        where = str(file) if file else "<config>"
        if line:
            where += f":{line}"
        out.append(f"{where}: field '{field}': {msg}")
    return "\n".join(out)


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file; return (data, key-path → line index)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return (data if data is not None else {}), _yaml_line_index(text)


def read_yaml_extends(path: str | Path, what: str = "YAML config", seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping laid over the file it `extends:` (in the same folder, so that relative paths in both mean
    the same), recursively."""
    path = Path(path)
    data, _ = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: must name a {what} file")
    parent_path = (path.parent / parent).resolve()
    if parent_path.parent != path.parent.resolve():
        raise ConfigError(f"{path}: extends: {parent} must be in the same folder (relative paths in both files "
                          f"are read from that folder)")
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(f"{path}: extends: {parent} extends this file again (a cycle)")
    if not parent_path.exists():
        raise ConfigError(f"{path}: extends: config file not found: {parent_path}")
    return deep_update(read_yaml_extends(parent_path, what, (*seen, path.resolve())), data)


def load_config(path: str | Path, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Load a YAML file (over the file it `extends:`, if any) into a strict config model; relative paths stay
    relative to the working directory."""
    data = read_yaml_extends(path)
    _, lines = load_yaml(path)
    if overrides:
        data = deep_update(data, overrides)
    return validate_config(data, model, file=path, lines=lines)


def validate_config(data: Any, model: type[M], *, file: str | Path | None = None,
                    lines: dict[tuple, int] | None = None, prefix: tuple = ()) -> M:
    """Validate a mapping against a config model, raising ConfigError with located messages."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file=file, lines=lines, prefix=prefix)) from None


def deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `updates` into a copy of `base`."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n"}


def parse_override(items: list[str]) -> dict[str, Any]:
    """Turn ['a.b=1', 'c=x'] into {'a': {'b': 1}, 'c': 'x'} (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # YAML 1.1 reads yes/no/on/off as booleans; in an override they are meant as words ("save_strategy=no")
        node[parts[-1]] = value if value.strip().lower() in _YAML11_WORDS else yaml.safe_load(value)
    return out
