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


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filters, paging, cutoff and sort options of `xmr search` (retrieval.filters)."""
    options = [
        click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Skip this many results: the next page (offset + k up to 10,000)."),
        click.option("--after", metavar="DATE", help="Taken (else modified) on or after DATE: YYYY, YYYY-MM, YYYY-MM-DD[THH:MM]."),
        click.option("--before", metavar="DATE", help="Taken (else modified) before DATE."),
        click.option("--in", "path_glob", metavar="GLOB", help="Only files whose path matches: a folder, '*.png', 'Trips/2023/*'."),
        click.option("--camera", metavar="TEXT", help="Only pictures from a camera whose make or model contains TEXT."),
        click.option("--near", metavar="LAT,LON,KM", help="Only files taken within KM kilometres of a place (GPS)."),
        click.option("--min-size", metavar="SIZE", help="Only files of at least SIZE (e.g. 500KB)."),
        click.option("--max-size", metavar="SIZE", help="Only files of at most SIZE (e.g. 5MB)."),
        click.option("--tag", "tags", multiple=True, metavar="LABEL", help="Only items tagged LABEL by `xmr tag` (repeatable: all of them)."),
        click.option("--sort", type=click.Choice(["relevance", "date"]), default="relevance", show_default=True,
                     help="date: the results that stand out (see --cutoff), newest first."),
        click.option("--cutoff", metavar="auto|SCORE",
                     help="auto: stop where results stop standing out for this query; or a minimum score."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
