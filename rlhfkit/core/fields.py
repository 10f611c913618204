"""Config dataclasses as the one definition of every setting: their fields, the documentation written under each
field (attribute docstrings, as TRL's configs keep help next to the field), and building one from a YAML file or a
mapping with errors that name the file, line and field.

The command line (`rlhfkit.cli.config_options`) and the pipeline config (`rlhfkit.pipeline.config`) are generated
from these, so a default or a help text exists once.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import yaml

from rlhfkit.core.errors import ConfigError


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (inherited fields included), whitespace folded."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field's type, resolved (the modules use `from __future__ import annotations`)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def field_default(field: dataclasses.Field) -> Any:
    """The field's default value (a fresh one for `default_factory` fields)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ConfigError(f"{field.name} has no default")


def defaults(cls: type) -> dict[str, Any]:
    """Every field of `cls` with its default."""
    return {field.name: field_default(field) for field in dataclasses.fields(cls)}


def line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at `loc` (the deepest one that exists)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == key:
                node, line = value_node, key_node.start_mark.line + 1
                break
        else:
            break
    return line


def read_yaml_mapping(path: str | Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """The mapping a YAML config file holds, and its node tree (for line numbers)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of settings to values")
    return data, root


def build(cls: type, values: dict[str, Any], *, where: str = "settings", root: yaml.Node | None = None,
          given: frozenset[str] = frozenset()) -> Any:
    """An instance of dataclass `cls` from `values` (types checked and converted, e.g. YAML's "1e-4" to 1e-4),
    validated by its `validate()`. Every problem is reported with its place: `where`:LINE for keys read from a
    file (`root`), "command line" for the names in `given`."""
    from pydantic import TypeAdapter, ValidationError

    known = field_types(cls)
    problems = []
    for key in values:
        if key not in known:
            problems.append(f"{_place(key, where, root, given)}: {key}: unknown setting (known: "
                            f"{', '.join(known)})")
    if problems:
        raise ConfigError(f"invalid {cls.__name__}:\n  " + "\n  ".join(problems))
    try:
        config = TypeAdapter(cls).validate_python(values)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "(top level)"
            problems.append(f"{_place(field, where, root, given)}: {field}: {error['msg']}")
        raise ConfigError(f"invalid {cls.__name__}:\n  " + "\n  ".join(problems)) from None
    if hasattr(config, "validate"):
        try:
            config.validate()
        except ValueError as exc:
            raise ConfigError(_validation_message(str(exc), cls, known, where, root, given)) from None
    return config


def _validation_message(message: str, cls: type, known: dict[str, Any], where: str, root: yaml.Node | None,
                        given: frozenset[str]) -> str:
    """A `validate()` failure ("Owner: field must ...") with the place of the field it names: the command line
    (naming the flag, --field-name), the file and line, or the defaults."""
    text = message.removeprefix(f"{cls.__name__}: ")
    field = max((name for name in known if re.match(rf"{name}\b", text)), key=len, default=None)
    if field is None:
        return f"{where}: {message}"
    if field in given:
        return f"command line: --{field.replace('_', '-')}{text[len(field):]}"
    return f"{_place(field, where, root, given)}: {text}"


def _place(field: str, where: str, root: yaml.Node | None, given: frozenset[str]) -> str:
    if field in given:
        return "command line"
    line = line_of(root, (field,)) if root is not None else None
    return f"{where}:{line}" if line else where


def load(cls: type, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """`cls` from a YAML file of its fields (None: the defaults), with `overrides` (flags) on top."""
    data, root = read_yaml_mapping(path) if path is not None else ({}, None)
    overrides = overrides or {}
    return build(cls, {**data, **overrides}, where=str(path) if path is not None else "settings", root=root,
                 given=frozenset(overrides))


def to_yaml(config: Any) -> str:
    """A config's values as YAML, each preceded by its documentation (what `--show-config` prints)."""
    docs = field_docs(type(config))
    out = []
    for field in dataclasses.fields(config):
        for line in textwrap.wrap(docs.get(field.name, ""), 110):
            out.append(f"# {line}")
        out.append(yaml.safe_dump({field.name: getattr(config, field.name)}, default_flow_style=True,
                                  width=1000).strip()[1:-1])
    return "\n".join(out) + "\n"
