"""Command lines from config dataclasses: every field becomes ``--field-name`` with its default, so a stage's
config stays plain code (nanoGPT style) and ``--help`` lists every knob."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def parse_config(cls: type[T], description: str | None, argv: list[str] | None = None) -> T:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = f"--{f.name.replace('_', '-')}"
        default: Any = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        if kind is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            continue
        args = typing.get_args(kind)
        base = next((a for a in args if a is not type(None)), kind) if args else kind
        ap.add_argument(flag, type=base, default=default, help=f"(default: {default})")
    return cls(**vars(ap.parse_args(argv)))
