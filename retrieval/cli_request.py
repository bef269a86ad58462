"""`xmr search`'s options, made from the request's declaration (retrieval.request)."""

from __future__ import annotations

from typing import Any, Callable

import click

from retrieval.cli_types import Count
from retrieval.request import SearchRequest, Spec, specs


def _click_type(name: str, spec: Spec) -> Any:
    if spec.choices is not None:
        return click.Choice(list(spec.choices()))
    if spec.files:
        return click.Path(exists=True, dir_okay=False)
    if name == "k":
        return Count()
    if spec.kind is int:
        return click.IntRange(min=spec.ge, max=spec.le)
    if spec.kind is float:
        return click.FloatRange(min=spec.ge, max=spec.le)
    return None


def request_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every request field the CLI takes, as a click option (in the declaration's order)."""
    for f, spec in reversed(list(specs())):
        if not spec.cli:
            continue
        names = [spec.short or spec.cli_flag(f.name), f.name]
        kw: dict[str, Any] = {"help": spec.help, "metavar": spec.metavar}
        if spec.kind is bool:
            kw.update(is_flag=True, default=False)
        elif spec.multiple:
            kw.update(multiple=True, type=_click_type(f.name, spec))
        else:
            kw.update(type=_click_type(f.name, spec), default=f.default, show_default=f.default is not None)
        if spec.choices is not None:
            kw.pop("metavar")
        fn = click.option(*names, **kw)(fn)
    return fn


def request_from_cli(query: str | None, fields: dict[str, Any]) -> SearchRequest:
    """The request `xmr search QUERY --options...` makes: QUERY is the first text."""
    texts = ((query,) if query is not None else ()) + tuple(fields.pop("q", ()))
    return SearchRequest(q=texts, **fields)
