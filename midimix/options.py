"""Command lines derived from config dataclasses, so that a flag can never drift from its field.

A stage declares its options once, as a dataclass whose fields carry a trailing comment:

    @dataclass
    class RenderConfig:
        sample_rate_hz: int = 44_100  # CD rate; FluidSynth's own default
        lofi: LofiConfig = field(default_factory=LofiConfig)

and `add_config_arguments` turns it into `--sample-rate-hz N` (help: the comment, with the
default) and `--lofi.lowpass-hz HZ` for the nested config. A field's `metadata=option(...)`
adds what a comment cannot say: older flag names kept as aliases, a parser for a mini-language
(genre mixes, schedules), a group heading, a mutually exclusive set, choices.

`config_from_args` builds the config from the defaults, then a saved `<stage>.config.json`
given with `--config FILE`, then the flags actually typed, in that order; the config's own
`__post_init__` checks the values, so a bad value fails the same way from Python and from the
command line. Nothing here constructs a config or imports a heavy package while the parser is
built, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import math
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from midimix.errors import ConfigError

_OPTION_KEY = "midimix.option"
CONFIG_FLAG = "config"  # dest of --config FILE


@dataclasses.dataclass(frozen=True)
class Option:
    """What a field's comment and annotation cannot say about its flag."""

    help: str | None = None  # replaces the field's comment
    aliases: tuple[str, ...] = ()  # further flags, e.g. an older name kept working
    parse: Callable[[str], Any] | None = None  # text -> value, for mini-languages
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    group: str | None = None  # heading of the --help section the flag is listed in
    exclusive: str | None = None  # fields sharing this key cannot be given together
    cli: bool = True  # False: settable from Python and --config only (callbacks, objects)


def option(**kwargs: Any) -> dict[str, Option]:
    """`field(metadata=option(aliases=("--genre-mix",), parse=parse_weights))`."""
    return {_OPTION_KEY: Option(**kwargs)}


def field_option(f: dataclasses.Field[Any]) -> Option:
    found = f.metadata.get(_OPTION_KEY)
    return found if isinstance(found, Option) else Option()


def flag_name(path: str) -> str:
    """Field path -> flag: `lofi.lowpass_hz` -> `--lofi.lowpass-hz`."""
    return "--" + path.replace("_", "-")


# ---------------------------------------------------------------------------- field comments


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}: the comments inside the field's statement (after `x: int = 1`, or
    after the closing bracket of a wrapped `field(...)`), plus the comment-only lines that
    follow it before the next statement."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen app): flags without help text
        return {}
    field_re = re.compile(r"^(\s+)([A-Za-z_]\w*)\s*:(?!=)")
    lines = source.splitlines()
    comments: dict[str, list[str]] = {}
    current: str | None = None  # the field whose statement or trailing comments we are in
    body_indent: int | None = None
    statement_start: int | None = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            row = tok.start[0] - 1
            if tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.COMMENT:
                if current is not None:
                    comments.setdefault(current, []).append(tok.string.lstrip("#").strip())
                continue
            if tok.type == tokenize.NEWLINE:
                statement_start = None
                continue
            if statement_start is None:  # the first token of a statement
                statement_start = row
                match = field_re.match(lines[row])
                indent = len(match.group(1)) if match else -1
                if match and (body_indent is None or indent == body_indent):
                    body_indent = indent
                    current = match.group(2)
                else:
                    current = None  # a method, a docstring, a nested block: no field's help
    except (tokenize.TokenError, IndentationError):
        return {}
    return {name: " ".join(parts) for name, parts in comments.items()}


# ---------------------------------------------------------------------------- types


def finite_float(text: str) -> float:
    """A float flag: NaN and infinity are refused here, before any range check can miss them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def checked_int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


_SCALAR_PARSERS: dict[Any, Callable[[str], Any]] = {
    int: checked_int,
    float: finite_float,
    str: str,
    Path: lambda text: Path(text).expanduser(),
}
_METAVARS = {int: "N", float: "X", str: "TEXT", Path: "PATH"}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a name only imported for type checking: read as text
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _none_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def wrapped(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    wrapped.__name__ = getattr(parse, "__name__", "value")
    return wrapped


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON value, got {text!r}: {error}") from None


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------- parser


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    config_file: bool = True,
    default_group: str | None = None,
    _prefix: str = "",
    _groups: dict[str, Any] | None = None,
) -> None:
    """One flag per field of the dataclass `cls` (nested dataclasses as dotted flags).

    `skip` names fields the caller sets itself (positional inputs, for example). With
    `config_file`, `--config FILE` reads a saved config that flags then override."""
    groups: dict[str, Any] = {} if _groups is None else _groups
    if config_file and not _prefix:
        parser.add_argument(
            "--config",
            dest=CONFIG_FLAG,
            type=Path,
            metavar="FILE",
            help="a saved <stage>.config.json to start from (the flags given here override it)",
        )
    heading = default_group or "settings"
    comments = field_comments(cls)
    hints = _hints(cls)
    exclusive: dict[tuple[str, str], Any] = {}
    for f in dataclasses.fields(cls):
        opt = field_option(f)
        path = _prefix + f.name
        if not f.init or not opt.cli or f.name in skip or path in skip:
            continue
        tp, optional = _strip_optional(hints.get(f.name, str))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            doc = (inspect.getdoc(tp) or tp.__name__).splitlines()[0].rstrip(".:")
            add_config_arguments(
                parser,
                tp,
                skip=skip,
                config_file=False,
                default_group=f"--{f.name}.*: {doc}",
                _prefix=path + ".",
                _groups=groups,
            )
            continue
        title = opt.group or heading
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title]
        if opt.exclusive:
            key = (title, opt.exclusive)
            if key not in exclusive:
                exclusive[key] = target.add_mutually_exclusive_group()
            target = exclusive[key]
        default = _default_of(f)
        text = opt.help or comments.get(f.name, "")
        if default is not dataclasses.MISSING:
            text = f"{text} (default: {_show_default(default)})".strip()
        kwargs: dict[str, Any] = {"dest": path, "default": argparse.SUPPRESS, "help": text}
        flags = [flag_name(path), *opt.aliases]
        if tp is bool and opt.parse is None:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            origin = typing.get_origin(tp)
            if opt.parse is not None:
                parse = opt.parse
            elif tp in _SCALAR_PARSERS:
                parse = _SCALAR_PARSERS[tp]
                kwargs["metavar"] = _METAVARS[tp]
            elif origin in (list, tuple) and typing.get_args(tp)[0] in _SCALAR_PARSERS:
                parse = _SCALAR_PARSERS[typing.get_args(tp)[0]]
                kwargs["nargs"] = "+"
            elif typing.get_origin(tp) is typing.Literal:
                parse = str
                kwargs["choices"] = typing.get_args(tp)
            else:
                parse = _json_value
                kwargs["metavar"] = "JSON"
            kwargs["type"] = _none_or(parse) if optional else parse
            if opt.choices is not None:
                kwargs["choices"] = opt.choices
                kwargs.pop("metavar", None)  # argparse then lists the choices in the usage
            if opt.metavar:
                kwargs["metavar"] = opt.metavar
        target.add_argument(*flags, **kwargs)


def given_values(args: argparse.Namespace, cls: type, _prefix: str = "") -> dict[str, Any]:
    """The fields of `cls` that were typed on the command line, nested as dicts."""
    out: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        path = _prefix + f.name
        tp, _ = _strip_optional(hints.get(f.name, str))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            nested = given_values(args, tp, path + ".")
            if nested:
                out[f.name] = nested
        elif hasattr(args, path):
            value = getattr(args, path)
            origin = typing.get_origin(tp)
            out[f.name] = tuple(value) if origin is tuple and isinstance(value, list) else value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def config_from_dict(cls: type, data: Mapping[str, Any], source: str = "config") -> Any:
    """A config from JSON-like values: nested dicts become nested configs, text paths Paths.
    Unknown keys are refused by name, so a misspelt key in a saved config does not go unseen."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a JSON object of settings, got {type(data).__name__}"
        )
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp, _ = _strip_optional(hints.get(name, str))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, Mapping):
            value = config_from_dict(tp, value, f"{source}: {name}")
        elif tp is Path and isinstance(value, str):
            value = Path(value)
        elif typing.get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:  # a value of the wrong kind reached a check
        raise ConfigError(f"{source}: {error}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"--config {path}: not a readable JSON config ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of settings")
    return data


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """Defaults < `--config FILE` < typed flags < `fixed` (values the command sets itself)."""
    data: dict[str, Any] = {}
    source = "options"
    path = getattr(args, CONFIG_FLAG, None)
    if path is not None:
        data = read_config_file(path)
        source = f"--config {path}"
    data = _merge(_merge(data, given_values(args, cls)), fixed)
    return config_from_dict(cls, data, source)


def config_fields(cls: type, _prefix: str = "") -> list[str]:
    """Every settable field path of `cls`, nested ones dotted (for coverage tests)."""
    out: list[str] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _strip_optional(hints.get(f.name, str))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out += config_fields(tp, _prefix + f.name + ".")
        else:
            out.append(_prefix + f.name)
    return out


def stage_parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `midimix <stage>` (also `python -m midimix.<stage>`), described by the
    first paragraph of the module's docstring."""
    description = (doc or "").strip().split("\n\n")[0]
    return argparse.ArgumentParser(
        prog=f"midimix {stage}",
        description=" ".join(description.split()),
    )
