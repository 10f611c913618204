"""Commands whose options are generated from a config dataclass, as TRL's `TrlParser` does.

`config_command` registers a Typer command with one option per field of the config (`--field-name`, the field's
default and its documentation as help), plus `--config FILE.yaml` (the fields as keys) and `--show-config`. Values
come from the dataclass defaults, then the file, then the flags given on the command line; the result is built and
validated by `rlhfkit.core.fields.build`, so a bad value is named with its file and line or as a flag.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from rlhfkit.cli.console import console, fail
from rlhfkit.core import fields
from rlhfkit.core.errors import ConfigError

COMMAND_LINE = ("COMMANDLINE", "ENVIRONMENT")  # click's ParameterSource names: a value the user gave
TRAINING_ALIASES: dict[str, tuple[str, ...]] = {"output_dir": ("-o",), "num_train_epochs": ("--epochs",),
                                               "per_device_train_batch_size": ("--batch-size",),
                                               "system_prompt": ("--system",)}
"""Short spellings every training command accepts besides TRL's field names."""


def _option(name: str, tp: Any, doc: str, aliases: Sequence[str], show_default: bool | str = True
            ) -> typer.models.OptionInfo:
    flag = "--" + name.replace("_", "-")
    is_bool = tp is bool or set(typing.get_args(tp)) == {bool, type(None)}
    decls = [f"{flag}/--no-{flag[2:]}"] if is_bool else [flag, *aliases]
    repeated = typing.get_origin(tp) is list or any(typing.get_origin(arg) is list for arg in typing.get_args(tp))
    return typer.Option(*decls, help=_first_sentence(doc) or None, show_default=show_default,
                        metavar="TEXT (repeat)" if repeated else None)


def _first_sentence(doc: str) -> str:
    """The help line: the field's first sentence (`--show-config` prints it all)."""
    end = doc.find(". ")
    return doc if end < 0 else doc[: end + 1]


def config_parameters(classes: Mapping[str, type], aliases: Mapping[str, Sequence[str]] = {},
                      skip: Collection[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per field of the config classes (by choice name), annotated for Typer; a field whose
    default differs between them shows each default."""
    params, seen = [], set()
    class_defaults = {choice: fields.defaults(cls) for choice, cls in classes.items()}
    for cls in classes.values():
        for field in dataclasses.fields(cls):
            if field.name in seen or field.name in skip:
                continue
            seen.add(field.name)
            owners = [choice for choice, values in class_defaults.items() if field.name in values]
            values = {choice: class_defaults[choice][field.name] for choice in owners}
            default = fields.field_default(field)
            show: bool | str = True
            if len(classes) > 1 and (len(owners) < len(classes) or len({repr(v) for v in values.values()}) > 1):
                show = "; ".join(f"{value!r} for {choice}" for choice, value in values.items())
            tp = fields.field_types(cls)[field.name]
            option = _option(field.name, tp, fields.field_docs(cls).get(field.name, ""), aliases.get(field.name, ()),
                             show)
            params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[tp, option]))
    return params


def own(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """One of a config command's own arguments (its data, its models), for `config_command(arguments=...)`."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def config_command(app: typer.Typer, config: type | Mapping[str, type], run: Callable[..., None], *, name: str,
                   arguments: Sequence[inspect.Parameter] = (), aliases: Mapping[str, Sequence[str]] = {},
                   selector: str | None = None, help: str | None = None) -> None:
    """Register command `name` on `app`: `run(config, **arguments)` with `config` built from the defaults,
    `--config FILE.yaml` and the flags, and `arguments` the command's own parameters (its data).

    `config` is one dataclass, or several by choice name ({"grpo": RLTrainingConfig, "ppo": PPOTrainingConfig})
    with `selector` the option that chooses (`--algo`); the chosen class's field of that name, if it has one, gets
    the choice. A flag given for a field the chosen class lacks is refused, naming the choices it applies to."""
    classes = config if isinstance(config, Mapping) else {"": config}
    # The command's required data are checked after parsing, so that --show-config works without them.
    required = {param.name for param in arguments if param.default is inspect.Parameter.empty}
    own_params = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                         default=None if param.name in required else param.default) for param in arguments]
    extra = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Path | None, typer.Option("--config", help="YAML file of settings (the option names with underscores "
                                      "as keys); flags given here override it.")]),
        inspect.Parameter("show_config", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--show-config", help="Print the settings this command would use, each documented, "
                               "as YAML for --config, and exit.")]),
    ]
    if selector is not None:
        choice_type = typing.Literal[tuple(classes)]  # type: ignore[valid-type]
        extra.insert(0, inspect.Parameter(selector, inspect.Parameter.KEYWORD_ONLY, default=next(iter(classes)),
                                          annotation=Annotated[choice_type, typer.Option(
                                              f"--{selector}", help=f"One of {', '.join(classes)}.")]))
    settings = config_parameters(classes, aliases, skip={selector} if selector else ())
    names = {param.name for param in own_params}

    def command(context: typer.Context, **values: Any) -> None:
        path, show = values.pop("config"), values.pop("show_config")
        choice = values.pop(selector) if selector is not None else ""
        cls = classes[choice]
        mine = {key: values.pop(key) for key in names}
        given = {key: value for key, value in values.items()
                 if getattr(context.get_parameter_source(key), "name", None) in COMMAND_LINE}
        known = fields.field_types(cls)
        foreign = [key for key in given if key not in known]
        if foreign:
            where = sorted({other for other, klass in classes.items() if foreign[0] in fields.field_types(klass)})
            raise ConfigError(f"{', '.join('--' + key.replace('_', '-') for key in foreign)} only apply to "
                              f"--{selector} {', '.join(where)}")
        if selector is not None and selector in known:
            given[selector] = choice
        built = fields.load(cls, path, given)
        if show:
            console.print(fields.to_yaml(built).rstrip(), markup=False, highlight=False, soft_wrap=True)
            return
        missing = next((param for param in context.command.params
                        if param.name in required and mine[param.name] is None), None)
        if missing is not None:
            spelled = missing.opts[0] if missing.param_type_name == "option" else missing.name.upper()
            fail(f"missing {missing.param_type_name} {spelled}: `{context.command_path} --help` says what it "
                 "takes", code=2)
        run(built, **mine)

    context = inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    command.__signature__ = inspect.Signature([context, *own_params, *settings, *extra])  # type: ignore[attr-defined]
    command.__annotations__ = {param.name: param.annotation for param in command.__signature__.parameters.values()}
    command.__doc__ = help or run.__doc__
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


def _base_type(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


def with_config_file(run: Callable[..., None]) -> Callable[..., None]:
    """`run` with a `--config FILE.yaml` option whose keys are its option names (underscores): a value from the
    file is used where the command line gives none; an unknown key is refused with its file and line."""
    from pydantic import TypeAdapter

    own = inspect.signature(run, eval_str=True).parameters.values()  # the annotations as objects, not strings
    # Required ones may come from the file too: optional to the parser, checked once the file is read.
    required = {param.name for param in own if param.default is inspect.Parameter.empty}
    params = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                            default=None if param.name in required else param.default) for param in own]
    names = {param.name: param for param in params}

    def command(context: typer.Context, **values: Any) -> None:
        path = values.pop("config")
        if path is not None:
            data, root = fields.read_yaml_mapping(path)
            for key, value in data.items():
                line = fields.line_of(root, (key,))
                where = f"{path}:{line}" if line else str(path)
                if key not in names:
                    raise ConfigError(f"{where}: {key}: not an option of `{context.command_path}` (known: "
                                      f"{', '.join(sorted(names))})")
                if getattr(context.get_parameter_source(key), "name", None) in COMMAND_LINE:
                    continue  # the flag wins
                try:
                    values[key] = TypeAdapter(_base_type(names[key].annotation)).validate_python(value)
                except ValueError as exc:
                    raise ConfigError(f"{where}: {key}: {exc}") from None
        missing = next((param for param in context.command.params
                        if param.name in required and values.get(param.name) is None), None)
        if missing is not None:
            spelled = missing.opts[0] if missing.param_type_name == "option" else missing.name.upper()
            fail(f"missing {missing.param_type_name} {spelled} (give it, or {missing.name} in --config): "
                 f"`{context.command_path} --help` says what it takes", code=2)
        run(**values)

    option = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option("--config", help="YAML file of this command's options (names with underscores "
                                  "as keys); flags given here override it.")])
    context = inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    command.__signature__ = inspect.Signature([context, *params, option])  # type: ignore[attr-defined]
    command.__annotations__ = {param.name: param.annotation for param in command.__signature__.parameters.values()}
    command.__doc__, command.__name__ = run.__doc__, run.__name__
    return command


class Typer(typer.Typer):
    """rlhfkit's command groups: every command takes `--config FILE.yaml` (config commands have their own, from
    their dataclass; the others get `with_config_file`'s)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
        register = super().command(*args, **kwargs)

        def decorator(run: Callable[..., None]) -> Callable[..., None]:
            has_own = "config" in inspect.signature(run).parameters or "context" in inspect.signature(run).parameters
            register(run if has_own else with_config_file(run))
            return run

        return decorator
