"""`xmr models` and `xmr index --model B --add-model`: more than one model in a library
(indexer.extra_models; registered on the `xmr` group by retrieval.cli)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from retrieval.errors import EncoderMismatchError, UsageError


def open_for_index(open_library: Callable[..., Any], model: str | None, pretrained: str | None, add_model: bool,
                   **kw: Any) -> tuple[Any, bool]:
    """The library to index and whether `model` is to be added beside its main model: asked on
    a terminal, `--add-model` otherwise; without either, the mismatch stays an error."""
    try:
        return open_library(create=True, model=model, pretrained=pretrained, **kw), False
    except EncoderMismatchError as e:
        if model is None:
            raise
        lib = open_library()  # with the library's own model
        from indexer.extra_models import asked_for

        if lib.recorded_identity is None or asked_for(lib.spec, model, pretrained):
            raise  # not a different main model (e.g. another audio model)
        if not add_model:
            if not _can_ask():
                raise
            info = lib.models_info()
            n = info[0].vectors if info else 0
            if not click.confirm(f"This library's vectors were made by {lib.spec.describe()}. Add {model}'s vectors "
                                 f"beside them (its {n} items are encoded again; searches pick a model with --model)?",
                                 err=True):
                raise EncoderMismatchError(str(e)) from None
        return lib, True


def _can_ask() -> bool:
    """Is there a person to ask (a terminal on stdin)?"""
    return sys.stdin.isatty()


def _print_models(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        behind = f", {r['behind']} items behind (run `xmr index`)" if r.get("behind") else ""
        click.echo(f"{r['role']:<6} {r['model']}  dim {r['dim']}, {r['vectors'] or 0} vectors{behind}")


_wait = click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")


def register(cli: click.Group, open_library: Callable[..., Any]) -> None:
    @cli.group(invoke_without_command=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
    @click.pass_context
    def models(ctx: click.Context, as_json: bool) -> None:
        """The models whose vectors the library holds: its main model (which makes the items) and
        any added with `xmr index --model B --add-model`. Search with one by its --model.

        \b
        xmr models                            # main and added models, their vectors
        xmr models add ViT-B-16-SigLIP --pretrained webli
        xmr models drop ViT-B-32              # dropping the main model promotes an added one
        """
        if ctx.invoked_subcommand is not None:
            return
        rows = [m.to_dict() for m in open_library(ctx).models_info()]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            click.echo("no models yet: run `xmr index PATH`")
        else:
            _print_models(rows)

    @models.command("add")
    @click.argument("model")
    @click.option("--pretrained", help="open_clip pretrained tag or checkpoint file")
    @_wait
    @click.pass_context
    def add(ctx: click.Context, model: str, pretrained: str | None, wait: bool) -> None:
        """Add MODEL's vectors beside the library's (encodes every picture and text item)."""
        lib = open_library(ctx)
        reports = lib.add_model(model, pretrained, wait=wait, on_skip=_skip)
        for r in reports.values():
            click.echo(f"{model}: {r.added} vectors added, {r.removed} removed, {r.skipped} files skipped")

    @models.command("drop")
    @click.argument("model")
    @click.option("--pretrained", help="open_clip pretrained tag, when two added models share a name")
    @_wait
    @click.pass_context
    def drop(ctx: click.Context, model: str, pretrained: str | None, wait: bool) -> None:
        """Remove MODEL's vectors. Dropping the main model makes the first added model the main one."""
        lib = open_library(ctx)
        if lib.recorded_identity is None:
            raise UsageError("this library has no models yet")
        dropped = lib.drop_model(model, pretrained, wait=wait)
        click.echo(f"dropped {dropped}")


def _skip(path: str, reason: str) -> None:
    click.echo(f"skipping {path}: {reason}", err=True)


DEMO_MODEL_NOTE = ("note: {model} is xmr's demo model, a tiny CLIP trained on coloured shapes (red, green, blue, "
                   "yellow, purple, orange circles, squares, triangles and stars): by meaning it finds only those, not "
                   "what your own pictures show; their words (OCR, speech, documents) are found exactly all the same. "
                   "For real searches, index with real weights (--model ViT-B-32 --pretrained laion2b_s34b_b79k).")


def demo_model_note(spec: Any) -> str | None:
    """One line for a run of the demo model (its folder's config says so): what it can find."""
    import os

    model = getattr(spec, "model", "") or ""
    if not model.startswith("local-dir:"):
        return None
    try:
        with open(os.path.join(model[len("local-dir:"):], "open_clip_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return DEMO_MODEL_NOTE.format(model=model) if "xmr_demo_model" in config else None
