"""The `xmr` command's own argument types and the options every command takes."""

from __future__ import annotations

import logging
from typing import Any, Callable

import click


class Count(click.ParamType):
    """A number of results: a whole number, at least 1."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            n = int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if n < 1:
            self.fail(f"{n} is not a number of results: give 1 or more", param, ctx)
        return n


class Device(click.ParamType):
    """auto, cpu, cuda, cuda:N or mps: checked here, so a typo is a usage error, not a model-load failure."""

    name = "device"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        import re

        text = str(value).strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps", param, ctx)
        return text


class ByteSize(click.ParamType):
    """512M, 2G, 1.5GB, or plain bytes."""

    name = "size"
    _UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self._UNITS and not text[-1:].isdigit() else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size like 512M or 2G", param, ctx)
        if number <= 0:
            self.fail("size must be positive", param, ctx)
        return int(number * self._UNITS[unit])


def _given_late(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """--library, --db, --device, -v after the command mean what they mean before it."""

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False and ctx.obj is not None:
            ctx.obj[name] = value
            if name == "verbose":
                logging.getLogger().setLevel(logging.INFO)
        return value

    return store


def shared_options() -> list[click.Parameter]:
    """--library, --db, --device and -v, accepted after the command too (each command gets them)."""
    return [
        click.Option(["--library"], type=click.Path(file_okay=False), expose_value=False, callback=_given_late("library"),
                     help="Library directory (also accepted before the command)"),
        click.Option(["--db"], metavar="URL", expose_value=False, callback=_given_late("db"),
                     help="SQLAlchemy URL of the catalog (also accepted before the command)"),
        click.Option(["--device"], type=Device(), expose_value=False, callback=_given_late("device"),
                     help="Torch device (also accepted before the command)"),
        click.Option(["-v", "--verbose"], is_flag=True, default=None, expose_value=False, callback=_given_late("verbose"),
                     help="Log what happens (also accepted before the command)"),
    ]
