"""How the CLI prints search results and library stats (JSON or aligned text for people)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click


def no_results(by_kind: dict[str, int] | None, modality: str = "any") -> str:
    """Why a search found nothing, when the library can say: it is empty, or has none of that kind."""
    if by_kind is None:
        return "no results"
    if not sum(by_kind.values()):
        return "no results (the library is empty; run `xmr index PATH`)"
    if modality != "any" and not by_kind.get(modality):
        from indexer.kinds import get_kind

        try:
            noun = get_kind(modality).noun
        except KeyError:
            noun = modality
        has = ", ".join(f"{n} {m}" for m, n in sorted(by_kind.items()))
        return f"no results: this library has no {noun}s (it has {has}); index some with `xmr index PATH`"
    return "no results"


def print_hits(hits: list[dict[str, Any]], by_kind: dict[str, int] | None, as_json: bool, modality: str = "any",
               first: int = 1, dates: bool = False, filtered: bool = False) -> None:
    """`xmr search`: hits as JSON, or as a table (snippets under text hits, windows after sounds,
    tags after the path). `by_kind`: the library's items of each kind, to say why nothing was
    found; `first`: the rank of the first hit (a later page); `dates`: show each hit's date."""
    from retrieval.paths import display_path

    if as_json:
        click.echo(json.dumps(hits, indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no results (none pass the filters, cutoff or offset)" if filtered and not by_kind else no_results(by_kind, modality))
        return
    width = max(60, min(os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 100, 160))
    # `score` orders the list; the cosine and the words' match are shown beside it when they
    # are not the score itself (mixed kinds, hybrid), so an order that is not the cosine's is explained
    show_cos = any(h.get("cosine") is not None and h["cosine"] != h["score"] for h in hits)
    show_words = any(h.get("words") is not None and h["words"] != h["score"] for h in hits)
    kind_width = max(5, *(len(h["modality"]) for h in hits))
    indent = 15 + kind_width + 8 * show_cos + 8 * show_words
    head = f"{'#':>3}  {'score':>6}  " + ("   cos  " if show_cos else "") + (" words  " if show_words else "")
    click.echo(head + f"{'type':<{kind_width}}  result")
    for rank, h in enumerate(hits, first):
        where = f"  [{_clock(h['start'])}-{_clock(h['end'])}]" if h.get("start") is not None and h.get("end") is not None else ""
        extra = (_number(h.get("cosine")) if show_cos else "") + (_number(h.get("words")) if show_words else "")
        line = f"{rank:>3}  {h['score']:6.3f}  {extra}{h['modality']:<{kind_width}}  {display_path(h['path'])}{where}"
        if dates and h.get("date") is not None:
            line += "  " + _day(h["date"])
        if h.get("tags"):
            line += "  " + " ".join("#" + t["label"].replace(" ", "_") for t in h["tags"][:5])
        click.echo(line)
        if len(h.get("segments") or []) > 1:  # grouped: the file's other good moments or chunks
            more = [f"{_clock(g['start'])}-{_clock(g['end'])}" if g.get("start") is not None
                    else f"page {g['page']}" if g.get("page") else f"chunk {g['chunk']}" for g in h["segments"][1:]]
            click.echo(" " * indent + "also " + ", ".join(more))
        if h.get("snippet"):
            snippet = " ".join(h["snippet"].split())
            limit = width - indent
            click.echo(" " * indent + f"{snippet[:limit] + ('…' if len(snippet) > limit else '')}  [{_words_at(h)}]")
    if show_cos or show_words:
        click.echo(LEGEND)


LEGEND = ("(score orders the list: how far each stands above the query's usual cosine in its kind, in standard\n"
          " deviations, lifted where its words hold every word of the query; cos: cosine to the query;\n"
          " words: full-text relevance where its words matched)")


def _number(value: float | None) -> str:
    return f"{value:6.3f}  " if value is not None else "     -  "


def _day(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _words_at(h: dict[str, Any]) -> str:
    """Where a hit's words are: a page, a chunk, what was said, what was read off a picture."""
    if h.get("page"):
        where = f"page {h['page']}"
    elif h.get("start") is not None:
        where = "said"
    elif h.get("char_start") is not None or h.get("modality") == "text":
        where = f"chunk {h.get('chunk') or 0}"
    else:
        where = "read in the picture"
    return where + (f", {h['confidence']:.0%} sure" if h.get("confidence") is not None else "")


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


def print_stats(st: dict[str, Any], as_json: bool) -> None:
    """`xmr stats`: the report as JSON, or as aligned lines."""
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    enc = st["encoder"] or {}
    click.echo(f"library    {st['library']}")
    click.echo(f"database   {st['database']}")
    click.echo(f"files      {st['files']}  " + ", ".join(f"{k}: {v}" for k, v in sorted(st["files_by_modality"].items())))
    click.echo(f"items      {st['items']}  " + ", ".join(f"{k}: {v}" for k, v in sorted(st["items_by_modality"].items())))
    if st.get("documents_by_type"):
        click.echo("documents  " + ", ".join(f"{k}: {v}" for k, v in st["documents_by_type"].items()))
    if st.get("hours_by_modality"):
        click.echo("length     " + ", ".join(f"{k}: {v:.2f} h" for k, v in sorted(st["hours_by_modality"].items())))
    if st.get("ocr_pictures") or st.get("hours_transcribed"):
        hours = st.get("hours_transcribed") or 0
        parts = [f"{st['ocr_pictures']} pictures with words read (OCR)"] if st.get("ocr_pictures") else []
        if hours:
            parts.append(f"{hours:.2f} h of speech transcribed" if hours >= 1 else f"{hours * 60:.1f} min of speech transcribed")
        click.echo("words      " + ", ".join(parts))
    if st.get("faces"):
        click.echo(f"people     {st['people']} ({st['people_named']} named) in {st['faces']} faces")
    facts = st.get("facts") or {}
    if facts.get("dates"):
        from datetime import datetime

        span = " to ".join(datetime.fromtimestamp(d).strftime("%Y-%m-%d") for d in facts["dates"])
        cams = ", ".join(f"{k}: {v}" for k, v in list(facts["cameras"].items())[:5])
        click.echo(f"facts      dates {span}; {facts['with_date_taken']} with date taken, {facts['with_place']} with a place"
                   + (f"; cameras {cams}" if cams else ""))
    if st.get("tags"):
        top = ", ".join(f"{k}: {v}" for k, v in list(st["tags"].items())[:8])
        click.echo(f"tags       {len(st['tags'])} labels; {top}")
    click.echo(f"vectors    {st['vectors']}  ({st['index_type']}, dim {enc.get('dim', '?')})")
    t = st.get("index_tuning")
    if t:
        probe = f"nprobe {t['nprobe']}: " if t.get("nprobe") else ""
        click.echo(
            f"tuning     {probe}recall@10 {t['recall_at_10']:.3f} (target {t['target']}), single query {t['p50_ms']:.2f} ms p50, "
            f"measured on {t['queries']} held-out queries" + (f"; {t['note']}, raise --max-memory" if t.get("note") else "")
        )
    if not enc:
        click.echo("encoder    none recorded yet: no index run has finished (`xmr index PATH` records it)")
    else:
        encoder = enc["model"] + (f"  pretrained: {enc['pretrained']}" if enc.get("pretrained") else "")
        click.echo(f"encoder    {encoder}" + (f"  sha256: {enc['weights_sha256'][:12]}" if enc.get("weights_sha256") else ""))
    if st.get("audio_encoder"):
        a = st["audio_encoder"]
        pin = f"  sha256: {a['weights_sha256'][:12]}" if a.get("weights_sha256") else (f"  revision: {a['revision'][:12]}" if a.get("revision") else "")
        click.echo(f"audio      {a['audio_model']}{pin}  ({a['window_s']:g} s windows)")
    if st.get("bridge"):
        b = st["bridge"]
        if "error" in b:
            click.echo(f"bridge     error: {b['error']}")
        else:
            click.echo(
                f"bridge     {b['method']}, {b['captions']} captions, gap from {b['gap_windows']} windows, "
                f"held-out R@1 {b['heldout_r1']:.3f}, cos {b['heldout_cos']:.3f}  sha256: {b['sha256'][:12]}"
            )
    if st.get("ocr"):
        o = st["ocr"]
        click.echo(f"ocr        {o['engine']} ({o['binding']}), language {o['lang']}  data sha256: {o['data_sha256'][:12]}")
    if st.get("speech"):
        sp = st["speech"]
        click.echo(f"speech     {sp['speech_model']}  sha256: {sp['weights_sha256'][:12]}")
    click.echo(f"roots      {', '.join(st['roots']) or '-'}")
    click.echo(f"size       {st['size_bytes'] / 1e6:.1f} MB")
