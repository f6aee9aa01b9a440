"""One flag grammar for every ``cacaomap`` command, built from typed functions.

A command is a typed function with a Google docstring; :func:`build_parser` turns it
into an :mod:`argparse` parser that follows the grammar written down in
``docs/cli.md``:

- flags are kebab-case (``--reference-period``), as the commands are;
- a parameter without a default is required: before ``*`` it is positional, after it a
  required flag, and ``--help`` lists it under "required";
- a ``bool`` is a switch: ``--evidence`` turns it on, ``--no-evidence`` off;
- a list is the values after one flag (``--bbox -76.5 -8.5 -76.0 -8.0``), a mapping
  ``KEY=VALUE`` pairs after one flag (``--label-map 1=1 4=2``);
- a ``Literal`` is a choice; a dataclass parameter is a group of flags shared by every
  command that takes it (the imagery source of :mod:`cacaomap.sources`);
- ``--config FILE`` reads the flags' values from YAML (keys as the flags, either
  spelling), flags on the line win;
- ``--help`` shows the docstring's description, what the command writes (its
  ``Writes:`` section) and examples (``Examples:``).

Errors in the arguments raise :class:`UsageError`, which the entry point prints as
``cacaomap <command>: <what is wrong>`` with exit status 1, like every other user error.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import docstring_parser
import yaml


class UsageError(ValueError):
    """Arguments the command cannot take (a missing, unknown or malformed flag)."""


class CommandError(ValueError):
    """A user error found by a command itself (a combination of flags, a bad file)."""


@dataclasses.dataclass(frozen=True)
class Doc:
    """The parts of a Google docstring the help shows."""

    description: str
    params: dict[str, str]
    writes: str
    examples: str


_SECTION = re.compile(r"^(Args|Attributes|Returns|Raises|Writes|Examples|Yields|Note):\s*$")


def parse_doc(obj: Any) -> Doc:
    """Split ``obj``'s docstring into description, parameters, writes and examples."""
    text = inspect.cleandoc(obj.__doc__ or "")
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            current = match.group(1)
            sections[current] = []
        else:
            sections[current].append(line)
    parsed = docstring_parser.parse(text, docstring_parser.DocstringStyle.GOOGLE)
    params = {p.arg_name: plain(" ".join((p.description or "").split()))
              for p in parsed.params}

    def block(name: str) -> str:
        return plain(inspect.cleandoc("\n".join(sections.get(name, []))))

    return Doc(block(""), params, block("Writes"), block("Examples"))


def plain(text: str) -> str:
    """Docstring markup as a terminal shows it: ````x```` -> ``x``, ``:mod:`x``` -> ``x``."""
    return re.sub(r":[a-z]+:`([^`]+)`", r"\1", text).replace("``", "")


def flag(name: str) -> str:
    """The flag of a parameter: ``reference_period`` -> ``--reference-period``."""
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one parameter is read from the command line."""

    base: Any
    optional: bool
    many: bool
    mapping: bool
    choices: tuple[Any, ...] | None


def kind_of(annotation: Any) -> Kind:
    """Unwrap ``X | None``, ``list[X]``, ``dict[K, V]`` and ``Literal[...]``."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation}")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    many = mapping = False
    if origin in (list, tuple, Sequence):
        many = True
        annotation = typing.get_args(annotation)[0]
        origin = typing.get_origin(annotation)
    elif origin is dict:
        mapping = True
        annotation = typing.get_args(annotation)
        return Kind(annotation, optional, False, True, None)
    choices = None
    if origin is Literal:
        choices = typing.get_args(annotation)
        annotation = type(choices[0])
    return Kind(annotation, optional, many, mapping, choices)


def _converter(kind: Kind) -> Callable[[str], Any]:
    if kind.mapping:
        key_type, value_type = kind.base

        def pair(text: str) -> tuple[Any, Any]:
            key, sep, value = text.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
            return key_type(key), value_type(value)

        return pair
    return Path if kind.base is Path else kind.base  # type: ignore[no-any-return]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions, not exits."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


@dataclasses.dataclass
class Signature:
    """What :func:`build_parser` read of a function, to call it back with parsed values."""

    function: Callable[..., Any]
    #: parameter name -> (dataclass type, its field names), for grouped parameters
    groups: dict[str, tuple[Any, list[str]]]
    #: every flag's parameter name (kebab flag -> dest), for the old-spelling rewrite
    flags: dict[str, str]
    switches: set[str]
    lists: dict[str, Kind]


def _add(parser: argparse.ArgumentParser | Any, name: str, param: inspect.Parameter,
         annotation: Any, help_text: str, signature: Signature, positional: bool) -> None:
    kind = kind_of(annotation)
    help_text = help_text.replace("%", "%%")  # argparse formats help with %
    default = None if param.default is inspect.Parameter.empty else param.default
    required = param.default is inspect.Parameter.empty
    if kind.base is bool and not kind.many:
        parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                            default=bool(default), help=help_text)
        signature.switches.add(name)
        signature.flags[flag(name)] = name
        return
    options: dict[str, Any] = {"help": help_text, "type": _converter(kind)}
    if kind.choices is not None:
        options["choices"] = kind.choices
    if kind.many or kind.mapping:
        options["nargs"] = "+"
        signature.lists[name] = kind
    if kind.mapping:
        options["metavar"] = "KEY=VALUE"
    if positional:
        parser.add_argument(name, **options)
        return
    options.update(dest=name, default=default)
    if required:
        options["required"] = True
    elif default is not None and default != [] and "default" not in help_text:
        shown = default.value if hasattr(default, "value") else default
        options["help"] = f"{help_text} (default: {shown})"
    if "metavar" not in options and kind.choices is None:
        options["metavar"] = name.upper()
    parser.add_argument(flag(name), **options)
    signature.flags[flag(name)] = name


def build_parser(prog: str, function: Callable[..., Any],
                 parser_class: type[argparse.ArgumentParser] = _Parser
                 ) -> tuple[argparse.ArgumentParser, Signature]:
    """An argparse parser for ``function`` following the grammar; see the module doc."""
    doc = parse_doc(function)
    epilog = []
    if doc.writes:
        epilog.append("writes:\n" + _indent(doc.writes))
    if doc.examples:
        epilog.append("examples:\n" + _indent(doc.examples))
    parser = parser_class(prog=prog, description=doc.description,
                          epilog="\n\n".join(epilog) or None, formatter_class=_Formatter,
                          allow_abbrev=False)
    hints = typing.get_type_hints(function)
    signature = Signature(function, {}, {}, set(), {})
    required = parser.add_argument_group("required")
    optional: Any = parser._optionals
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML file of flag values (flags given here win)")
    for name, param in inspect.signature(function).parameters.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            group_doc = parse_doc(annotation)
            group = parser.add_argument_group(
                group_doc.description.splitlines()[0].rstrip("."))
            field_hints = typing.get_type_hints(annotation)
            fields = dataclasses.fields(annotation)
            for field in fields:
                fake = inspect.Parameter(
                    field.name, inspect.Parameter.KEYWORD_ONLY,
                    default=field.default if field.default is not dataclasses.MISSING
                    else inspect.Parameter.empty)
                _add(group, field.name, fake, field_hints[field.name],
                     group_doc.params.get(field.name, ""), signature, False)
            signature.groups[name] = (annotation, [f.name for f in fields])
            continue
        positional = (param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                      and param.default is inspect.Parameter.empty)
        has_default = param.default is not inspect.Parameter.empty
        target: Any = parser if positional else (optional if has_default else required)
        _add(target, name, param, annotation, doc.params.get(name, ""), signature,
             positional)
    parser._action_groups.remove(required)
    parser._action_groups.insert(1, required)
    return parser, signature


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def parse_call(parser: argparse.ArgumentParser, signature: Signature,
               args: list[str]) -> dict[str, Any]:
    """Parse ``args`` (``--config`` first) into the function's keyword arguments."""
    config = _config_file(args)
    if config is not None:
        _apply_config(parser, signature, config)
    namespace = vars(parser.parse_args(args))
    namespace.pop("config", None)
    for name, kind in signature.lists.items():
        value = namespace.get(name)
        if kind.mapping and value is not None and not isinstance(value, dict):
            namespace[name] = dict(value)
    for name, (cls, fields) in signature.groups.items():
        namespace[name] = cls(**{f: namespace.pop(f) for f in fields})
    return namespace


def _config_file(args: list[str]) -> Path | None:
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def _apply_config(parser: argparse.ArgumentParser, signature: Signature,
                  path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"argument --config: no such file: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise UsageError(f"argument --config: {path} is not a mapping of flags")
    dests = set(signature.flags.values())
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in dests:
            raise UsageError(f"argument --config: {path} sets {key!r}, which is no flag "
                             "of this command")
        kind = signature.lists.get(dest)
        if kind is not None and kind.mapping and isinstance(value, dict):
            value = {kind.base[0](k): kind.base[1](v) for k, v in value.items()}
        elif kind is not None and isinstance(value, list):
            convert = _converter(kind)
            value = [convert(str(v)) for v in value]
        elif value is not None and dest not in signature.switches:
            action = next(a for a in parser._actions if a.dest == dest)
            if callable(action.type):
                value = action.type(str(value))
        defaults[dest] = value
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False
    parser.set_defaults(**defaults)
