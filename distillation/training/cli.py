"""Command lines from config dataclasses: every field becomes ``--field-name`` with its default, so a stage's
config stays plain code (nanoGPT style) and ``--help`` lists every knob, explained by the comment written beside
the field (one source for the code reader and the command-line user)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any, TypeVar

T = TypeVar("T")


_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s?(.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")


def field_comments(cls: type) -> dict[str, str]:
    """``name -> help`` for the fields of dataclass ``cls``: the comment lines just above a field and the comment
    at the end of its line (``name: type = default  # comment``)."""
    comments: dict[str, str] = {}
    # Base classes first, so a subclass that redefines a field (a stage's own default) also redefines its help.
    for base in reversed([c for c in cls.__mro__ if c is not cls and dataclasses.is_dataclass(c)]):
        comments.update(field_comments(base))
    try:
        lines = inspect.getsource(cls).splitlines()[1:]  # [0] is the class line
    except (OSError, TypeError):  # no source (e.g. a frozen app): no help texts, the flags still work
        return comments
    above: list[str] = []
    for line in lines:
        if m := _COMMENT.match(line):
            above.append(m.group(1).strip())
        elif m := _FIELD.match(line):
            text = " ".join(above + [m.group(2) or ""]).strip()
            if text:
                comments[m.group(1)] = text
            above = []
        else:
            above = []
    return comments


def parse_config(cls: type[T], description: str | None, argv: list[str] | None = None) -> T:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = f"--{f.name.replace('_', '-')}"
        default: Any = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        text = comments.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text or None)
            continue
        args = typing.get_args(kind)
        shown = str(default).replace("%", "%%")
        if typing.get_origin(kind) is typing.Literal:  # a choice: --flag {a,b}
            ap.add_argument(flag, choices=args, default=default, help=f"{text} (default: {shown})".lstrip())
            continue
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        ap.add_argument(flag, type=base, default=default, help=f"{text} (default: {shown})".lstrip())
    return cls(**vars(ap.parse_args(argv)))
