"""`xmr people`: the people in a library's pictures and videos, and what the user says of them
(registered on the `xmr` group by retrieval.cli)."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from retrieval.paths import display_path

MAX_FILES_SHOWN = 3


def register(cli: click.Group, open_library: Callable[..., Any]) -> None:
    @cli.group(invoke_without_command=True)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON: id, name, faces, files, sample_face.")
    @click.option("--min-faces", default=1, show_default=True, type=click.IntRange(min=1),
                  help="Only people seen this many times or more.")
    @click.pass_context
    def people(ctx: click.Context, as_json: bool, min_faces: int) -> None:
        """The people seen in the library's pictures and videos (`xmr index` finds their faces and
        groups them), the named first, then by how often they are seen.

        \b
        xmr people
        xmr people name 3 Anna          # then: xmr search "at the beach" --person Anna
        xmr people merge Anna 7         # person 7 is Anna too
        xmr people unassign 112         # face 112 is not Anna's
        xmr people forget 9             # delete person 9's faces for good
        """
        if ctx.invoked_subcommand is not None:
            return
        rows = open_library(ctx).people.list(min_faces)
        if as_json:
            click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        if not rows:
            click.echo("no people yet: `xmr index` finds faces (pip install 'xmr[faces]'; --no-faces turns it off)")
            return
        click.echo(f"{'id':>6}  {'name':<20}  {'faces':>6}  files")
        for r in rows:
            files = ", ".join(display_path(p) for p in r["files"][:MAX_FILES_SHOWN])
            more = f" and {len(r['files']) - MAX_FILES_SHOWN} more" if len(r["files"]) > MAX_FILES_SHOWN else ""
            click.echo(f"{r['id']:>6}  {r['name'] or '-':<20}  {r['faces']:>6}  {files}{more}")

    @people.command("name")
    @click.argument("person")
    @click.argument("name")
    @click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")
    @click.pass_context
    def name_(ctx: click.Context, person: str, name: str, wait: bool) -> None:
        """Name PERSON (an id, or the name they have) NAME."""
        p = open_library(ctx).people.name(person, name, wait=wait)
        click.echo(f"person {p['id']} is {p['name']}")

    @people.command()
    @click.argument("keep")
    @click.argument("other")
    @click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")
    @click.pass_context
    def merge(ctx: click.Context, keep: str, other: str, wait: bool) -> None:
        """OTHER is KEEP too: OTHER's faces become KEEP's (ids or names)."""
        p = open_library(ctx).people.merge(keep, other, wait=wait)
        click.echo(f"merged {other} into person {p['id']}" + (f" ({p['name']})" if p["name"] else ""))

    @people.command()
    @click.argument("face", type=int)
    @click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")
    @click.pass_context
    def unassign(ctx: click.Context, face: int, wait: bool) -> None:
        """FACE (an id: `xmr people --json`, the page) is not its person's; it is never given
        back to them."""
        left = open_library(ctx).people.unassign(face, wait=wait)
        click.echo(f"face {face} is no longer person {left}'s")

    @people.command()
    @click.argument("person")
    @click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")
    @click.pass_context
    def forget(ctx: click.Context, person: str, wait: bool) -> None:
        """Delete PERSON's faces (descriptors and thumbnails) for good; their files stay."""
        p = open_library(ctx).people.forget(person, wait=wait)
        click.echo(f"forgot person {p['id']}" + (f" ({p['name']})" if p["name"] else "") + f": {p['faces']} faces deleted")
