"""`xmr tag`, `xmr tags` and `xmr dupes`: organising a library (registered on the `xmr` group by
retrieval.cli)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from indexer.kinds import kind_names


def register(cli: click.Group, open_library: Callable[..., Any]) -> None:
    """`xmr tag`, `xmr tags` and `xmr dupes` on the group; `open_library(ctx)` opens the library."""

    @cli.command()
    @click.option("--labels", metavar="FILE|LIST",
                  help="A file of labels, one per line, or a comma-separated list; 'a|b|c' is an exclusive set (an item "
                       "gets the one that fits it best) [default: xmr's common photo labels]")
    @click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
                  help="Smallest confidence kept: an exclusive set's share, a label's standing (0.5: as `--cutoff auto` keeps).")
    @click.option("--prompt", metavar="TEMPLATE",
                  help="How a label is put to the text encoder, {} = the label [default: 'a photo of {}' for pictures, '{}' otherwise]")
    @click.option("--type", "modality", type=click.Choice(["any", *kind_names()]), default="any", show_default=True,
                  help="Tag only items of this kind.")
    @click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it.")
    @click.option("--json", "as_json", is_flag=True, help="Print {label: items newly tagged} as JSON.")
    @click.pass_context
    def tag(ctx: click.Context, labels: str | None, threshold: float, prompt: str | None, modality: str, wait: bool,
            as_json: bool) -> None:
        """Give items zero-shot tags: the labels of a run compete for each item, as in CLIP's
        zero-shot classification, each tag with a confidence. Re-runs tag only new or changed
        items; a new label tags everything.

        \b
        xmr tag                                  # xmr's default labels for photos
        xmr tag --labels "cat,dog,receipt"       # yes/no tags, each where it stands out
        xmr tag --labels "red|green|blue|yellow" # an exclusive set: one colour each
        xmr tag --labels review.txt --threshold 0.7
        """
        from retrieval.tagging import read_labels

        names = read_labels(labels)
        lib = open_library(ctx)
        added = lib.tag(names, threshold=threshold, prompt=prompt, modality=None if modality == "any" else modality, wait=wait)
        if as_json:
            click.echo(json.dumps(added, indent=2, ensure_ascii=False))
            return
        tagged = {k: v for k, v in added.items() if v}
        click.echo(f"{len(names)} labels; {sum(added.values())} items newly tagged"
                   + (": " + ", ".join(f"{k} {v}" for k, v in sorted(tagged.items(), key=lambda kv: -kv[1])[:20]) if tagged else ""))

    @cli.command()
    @click.argument("label", required=False)
    @click.option("-k", "limit", type=click.IntRange(min=1), help="At most this many items (with LABEL).")
    @click.option("--drop", is_flag=True, help="Remove LABEL (or every label given to `--labels`) and its tags.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def tags(ctx: click.Context, label: str | None, limit: int | None, drop: bool, as_json: bool) -> None:
        """The library's tags with their counts; with LABEL, the items tagged with it, most sure
        first (what a reviewer looks through).

        \b
        xmr tags
        xmr tags receipt --json
        xmr tags weapon --drop
        """
        lib = open_library(ctx)
        if drop:
            if label is None:
                raise click.UsageError("--drop needs the LABEL to remove")
            removed = lib.untag([label])
            click.echo(f"removed {label!r} ({removed} tags)")
            return
        rows = lib.tags(label, limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        if not rows:
            click.echo(f"nothing is tagged {label!r}" if label else "no tags yet: run `xmr tag`")
            return
        from retrieval.paths import display_path

        if label is None:
            width = max(5, *(len(r["label"]) for r in rows))
            click.echo(f"{'label':<{width}}  {'items':>7}  {'files':>7}")
            for r in rows:
                click.echo(f"{r['label']:<{width}}  {r['items']:>7}  {r['files']:>7}")
            return
        for r in rows:
            where = f"  [{r['start']:.0f}-{r['end']:.0f} s]" if r.get("start") is not None else (f"  [page {r['page']}]" if r.get("page") else "")
            click.echo(f"{r['confidence']:.2f}  {r['modality']:<8}  {display_path(r['path'])}{where}")

    _register_dupes(cli, open_library)


def _register_dupes(cli: click.Group, open_library: Callable[..., Any]) -> None:
    @cli.command()
    @click.option("--threshold", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                  help="Cosine similarity from which two files count as near duplicates (1 = only identical vectors).")
    @click.option("--type", "modality", type=click.Choice(["any", *kind_names()]), default="any", show_default=True,
                  help="Only files of this kind.")
    @click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
    @click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal]")
    @click.pass_context
    def dupes(ctx: click.Context, threshold: float, modality: str, as_json: bool, progress: bool | None) -> None:
        """Groups of duplicate files: the same content, or near duplicates (re-encoded, resized),
        each with a suggested keeper (the largest, then the oldest). Nothing is deleted.

        \b
        xmr dupes
        xmr dupes --type image --threshold 0.9 --json
        """
        from tqdm import tqdm

        from retrieval.paths import display_path

        lib = open_library(ctx)
        bar = tqdm(unit="vector", desc="comparing", disable=(not progress) if progress is not None else None, file=sys.stderr)
        try:
            groups = lib.dupes(threshold=threshold, modality=None if modality == "any" else modality, progress=bar.update)
        finally:
            bar.close()
        if as_json:
            click.echo(json.dumps([g.to_dict() for g in groups], indent=2, ensure_ascii=False))
            return
        if not groups:
            click.echo("no duplicates")
            return
        total = 0
        for n, g in enumerate(groups, 1):
            d = g.to_dict()
            total += d["reclaimable_bytes"]
            click.echo(f"group {n} ({'same content' if g.exact else 'near duplicates'}): keep {display_path(g.keeper['path'])}")
            for o in g.others:
                how = "same content" if o["same_content"] else f"similarity {o['similarity']:.3f}"
                click.echo(f"    {display_path(o['path'])}  ({how}, {o['size']:,} bytes)")
        click.echo(f"{len(groups)} groups; {total:,} bytes in the files not kept")
