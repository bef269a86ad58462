"""The `xmr` command: a thin click layer over retrieval.Library.

This is the only place that turns exceptions into messages and exit codes:
1 for failures (XmrError), 2 for usage errors, 130 for Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import click

from indexer.stages.options import DECODERS, PROCESSES_FROM_CORES, IndexOptions
from retrieval.cli_output import print_hits, print_stats
from retrieval.cli_progress import TerminalReporter
from retrieval.cli_models import demo_model_note, open_for_index, register as register_models
from retrieval.cli_organize import register as register_organize
from retrieval.cli_people import register as register_people
from retrieval.cli_serve import register as register_serve
from retrieval.cli_request import request_from_cli, request_options
from retrieval.cli_types import ByteSize, Device, shared_options
from retrieval.errors import AlreadyWatchingError, LibraryLockedError, NotFoundError, UsageError, XmrError

MODEL_HELP = "open_clip model: registry name (ViT-B-32), hf-hub:ORG/REPO or local-dir:PATH [default: ViT-B-32, or the library's]"
AUDIO_MODEL_HELP = "CLAP model for sounds: Hugging Face id or a save_pretrained folder [default: laion/clap-htsat-unfused, or the library's]"
PRETRAINED_HELP = "open_clip pretrained tag, a checkpoint file, or 'none' for random weights [default: laion2b_s34b_b79k]"


class XmrCommand(click.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(shared_options())

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as e:  # told with this command's usage line, not the group's
            raise click.UsageError(str(e), ctx) from None


_signalled: list[int] = []


def _on_signal(signum: int, frame: Any) -> None:
    """Ctrl-C / SIGTERM: remembered, then raised as KeyboardInterrupt. Code that catches broadly
    may turn the interrupt into another error (torch does, loading weights); the command still
    ends as interrupted, not as a failure with a misleading message."""
    _signalled.append(signum)
    raise KeyboardInterrupt


class XmrGroup(click.Group):
    command_class = XmrCommand
    group_class = type  # subgroups (xmr bridge) are XmrGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as e:
            raise click.UsageError(str(e), ctx) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _interrupted(ctx)
        except Exception as e:
            if _signalled:  # whatever the interrupt was turned into
                _interrupted(ctx)
            if not isinstance(e, XmrError):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)


def _interrupted(ctx: click.Context) -> None:
    click.echo("\ninterrupted: the library is consistent; run the same command again to resume", err=True)
    ctx.exit(130)


@click.group(cls=XmrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--library", "library", envvar="XMR_LIBRARY", type=click.Path(file_okay=False), help="Library directory [env XMR_LIBRARY; default: the user data dir]")
@click.option("--db", envvar="XMR_DB", metavar="URL", help="SQLAlchemy URL of the catalog [env XMR_DB; default: SQLite in the library]")
@click.option("--device", envvar="XMR_DEVICE", default="auto", show_default=True, type=Device(), help="Torch device for the model: auto, cpu, cuda, cuda:N, mps")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (model loading, repairs).")
@click.version_option(package_name="xmr")
@click.pass_context
def cli(ctx: click.Context, library: str | None, db: str | None, device: str, verbose: bool) -> None:
    """xmr: search your own photos and documents by meaning."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"library": library, "db": db, "device": device, "verbose": verbose}


def _open(ctx: click.Context, create: bool = False, **kw: Any):
    from retrieval.library import Library

    o = ctx.obj
    return Library(o["library"], db=o["db"], device=o["device"], create=create, **kw)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--model", envvar="XMR_MODEL", help=MODEL_HELP)
@click.option("--pretrained", envvar="XMR_PRETRAINED", help=PRETRAINED_HELP)
@click.option("--audio-model", envvar="XMR_AUDIO_MODEL", help=AUDIO_MODEL_HELP)
@click.option("--factory", help="Fix the FAISS index_factory string of a new library instead of choosing automatically (e.g. Flat)")
@click.option("--recall", type=click.FloatRange(0, 1, min_open=True), help="Recall@10 the automatic index is tuned to [default: 0.95]")
@click.option("--max-memory", type=ByteSize(), help="RAM budget for the vectors (e.g. 2G); picks the index's code size")
@click.option("--batch-size", type=click.IntRange(min=1), help="Items per model call [default: 32 on CPU, 256 on CUDA]")
@click.option("--workers", type=click.IntRange(min=1), help="Decode threads or processes [default: CPU count]")
@click.option("--decoder", type=click.Choice(DECODERS), default="auto", show_default=True,
              help="Decode in threads or in processes; auto: processes from %d cores on" % PROCESSES_FROM_CORES)
@click.option("--checkpoint-every", "checkpoint_seconds", default=30.0, show_default=True, type=click.FloatRange(min=0),
              metavar="SECONDS", help="Save progress this often; an interrupted run resumes from there.")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal]")
@click.option("--wait", is_flag=True, help="If another xmr is writing to the library, wait for it instead of stopping (for cron jobs).")
@click.option("--segment-max", type=click.FloatRange(1, 3600), metavar="SECONDS",
              help="Longest video segment; a longer shot is split. Remembered by the library [default: 10]")
@click.option("--ocr/--no-ocr", default=None,
              help="Read the words in pictures and scanned PDF pages with Tesseract. Remembered by the library [default: on]")
@click.option("--speech-model", envvar="XMR_SPEECH_MODEL", metavar="NAME|DIR",
              help="Transcribe speech in sounds and videos with this faster-whisper model: a size name (base, small.en, "
                   "large-v3, ...) or a CTranslate2 model folder; 'none' for no transcripts. Remembered by the library "
                   "[default: base]")
@click.option("--faces/--no-faces", default=None,
              help="Find the faces in pictures and videos and group them into people (`xmr people`). Remembered by "
                   "the library [default: on when installed: pip install 'xmr[faces]']")
@click.option("--add-model", is_flag=True,
              help="On a library of another model: add --model's vectors beside its own (asked on a terminal).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", metavar="[ADDRESS]",
              help="Decode and encode on a Ray cluster: 'auto' (the running one), HOST:PORT or ray://..., "
                   "or nothing (one on this machine). The writing stays here.")
@click.option("--ship-bytes", is_flag=True, help="With --ray: send the files' bytes to the workers (no shared storage).")
@click.option("--watch", is_flag=True,
              help="After indexing, keep watching the folders and index what changes (Ctrl-C or SIGTERM stops).")
@click.option("--poll", type=click.FloatRange(0.1, 3600), metavar="SECONDS",
              help="With --watch: look for changes this often instead of hearing file-system events (network mounts).")
@click.pass_context
def index(ctx: click.Context, paths: tuple[str, ...], model: str | None, pretrained: str | None, audio_model: str | None,
          factory: str | None, recall: float | None, max_memory: int | None, batch_size: int | None, workers: int | None,
          decoder: str, checkpoint_seconds: float, progress: bool | None, wait: bool, segment_max: float | None, ocr: bool | None,
          speech_model: str | None, faces: bool | None, add_model: bool, ray_address: str | None, ship_bytes: bool, watch: bool,
          poll: float | None) -> None:
    """Index PATHS (folders or files); with none, refresh every folder indexed before.

    Pictures (and the words on them), text files and documents (PDF, HTML, DOCX, EPUB), sounds
    and videos (cut into shots of at most --segment-max seconds, their sound windowed like a
    sound file, what is said in them transcribed). Incremental:
    unchanged files are skipped, moved files keep their vectors, deleted files are removed.
    Unreadable files are reported as "skipping PATH: reason" and the run goes on. The first
    sounds in a library fit its audio bridge (see `xmr bridge fit`).
    """
    if ship_bytes and ray_address is None:
        raise click.UsageError("--ship-bytes goes with --ray")
    if poll is not None and not watch:
        raise click.UsageError("--poll goes with --watch")
    # A plain `kill` should stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _on_signal)
    lib, adding = open_for_index(lambda **kw: _open(ctx, **kw), model, pretrained, add_model, factory=factory,
                                 audio_model=audio_model, recall=recall, max_memory=max_memory)
    try:
        options = IndexOptions(batch_size=batch_size, workers=workers, decoder=decoder, checkpoint_seconds=checkpoint_seconds,
                               wait=wait, segment_max=segment_max, ocr=ocr, speech_model=speech_model, faces=faces,
                               ray=True if ray_address == "local" else ray_address, ship_bytes=ship_bytes)
        if watch:
            return _watch(lib, paths, options, progress, poll)
        report = lib.index(paths, options, reporter=TerminalReporter(progress))
        added = lib.add_model(model, pretrained, wait=wait, checkpoint_seconds=checkpoint_seconds) if adding else {}
    except AlreadyWatchingError:
        raise
    except LibraryLockedError as e:
        raise LibraryLockedError(f"{e}, or add --wait to queue behind it") from None
    click.echo(f"indexed {lib.path}: {report.summary()}")
    note = demo_model_note(lib.spec) if report.new + report.updated else None
    if note:
        click.echo(note, err=True)
    for r in added.values():
        click.echo(f"added {model}: {r.added} vectors beside {lib.spec.describe()}'s ({r.skipped} files skipped)")


def _watch(lib: Any, paths: tuple[str, ...], options: IndexOptions, progress: bool | None, poll: float | None) -> None:
    """`xmr index --watch`: the usual pass, then each change as it settles, told with the time."""
    import time

    from indexer.watch import WatchOptions
    from retrieval.watching import run_watching

    def note(message: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)

    try:
        run_watching(lib, paths, options, TerminalReporter(progress), TerminalReporter(False), note,
                     WatchOptions(poll_s=poll))
    except KeyboardInterrupt:  # the way a watcher is stopped: not a failure
        note(f"stopped watching; {lib.path} is consistent")


@cli.command()
@click.argument("query", required=False)
@request_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits.")
@click.option("--model", envvar="XMR_MODEL", help="Must match the library's model (checked).")
@click.option("--pretrained", envvar="XMR_PRETRAINED", help="Must match the library's weights (checked).")
@click.option("--server/--no-server", "use_server", default=True, show_default=True,
              help="Ask a running `xmr serve` for this library when there is one (much faster: the model is loaded).")
@click.pass_context
def search(ctx: click.Context, query: str | None, as_json: bool, model: str | None, pretrained: str | None,
           use_server: bool, **fields: Any) -> None:
    """Search the library by text, picture, sound, or a mix. Filters may be typed in QUERY:
    after: before: type: tag: camera: place: path: size:>2MB, -word, "exact phrase", OR.

    \b
    xmr search "a dog on a beach"
    xmr search "a dog on a beach type:image after:2023 -night"
    xmr search --image cat.jpg --type text
    xmr search "rain on a roof" --type audio
    xmr search --audio birds.wav --type image
    xmr search "a goal is scored" --type video --group
    xmr search --video clip.mp4
    xmr search "red car" --image street.jpg --weight 0.5 --not "night"
    xmr search 'invoice "INV-2291"' --mode words
    xmr search "birthday cake" --after 2023-01 --near 48.85,2.35,20 --sort date
    xmr search "receipt tag:receipt OR tag:invoice path:Documents" -k 50 --offset 50
    xmr search "a red car" --cutoff auto
    xmr search "a lighthouse" --model ViT-B-16-SigLIP   # with a model added by `xmr index --add-model`

    \b
    Columns: score orders the list (meaning: the cosine, or with several kinds or with
    words how far it stands above the query's usual score in its kind, in standard deviations,
    plus the lift of holding every word); cos is the cosine to the query; words the full-text
    relevance when its words matched.
    """
    request = request_from_cli(query, fields)
    resolved = request.resolve()  # usage errors before a server is asked or the model loads
    answer = None
    # A video query is decoded here: a video can be far larger than what a server takes in.
    if use_server and model is None and pretrained is None and not request.videos:
        answer = _via_server(ctx, lambda client, info: client.search(info, request))
    narrowed = not resolved.filters.empty or resolved.cutoff is not None or resolved.offset > 0
    by_kind = None  # items of each kind in the library: asked only when nothing was found
    if answer is not None:
        hits, by_kind = answer["hits"], answer.get("items_by_modality")
    else:
        lib = _open(ctx, model=model, pretrained=pretrained)
        hits = [h.to_dict() for h in lib.run_search(resolved)]
        by_kind = None if hits or resolved.offset or not resolved.filters.empty else lib.stats()["items_by_modality"]
    print_hits(hits, by_kind, as_json, resolved.modality or "any", first=resolved.offset + 1,
               dates=resolved.sort == "date", filtered=narrowed)


def _via_server(ctx: click.Context, ask: Any) -> dict[str, Any] | None:
    """`ask(client, info)` put to a running `xmr serve` for this library and catalog; None when
    there is none or it cannot be used (then the caller works in-process)."""
    from pathlib import Path

    from retrieval.paths import default_library_dir
    from retrieval.server import client, discovery

    o = ctx.obj
    info = discovery.find(Path(o["library"]).expanduser() if o["library"] else default_library_dir(), db=o["db"])
    if info is None:
        return None
    log = logging.getLogger("xmr")
    try:
        answer = ask(client, info)
    except client.ServerUnavailable as e:
        log.info("server at %s not usable (%s); working in-process", info["url"], e)
        return None
    log.info("answered by xmr serve at %s", info["url"])
    return answer


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Files, items, vectors, encoder and size of the library."""
    st = None
    o = ctx.obj
    if not o["db"]:  # the default SQLite catalog: answer without importing SQLAlchemy or FAISS
        from pathlib import Path

        from indexer.stats import quick_stats
        from retrieval.paths import DB_FILE, default_library_dir

        st = quick_stats(Path(o["library"]).expanduser() if o["library"] else default_library_dir(), DB_FILE)
    if st is None:  # another catalog: a running server has it open already
        st = _via_server(ctx, lambda client, info: client.get(info, "/api/stats"))
    if st is None:
        st = _open(ctx).stats()
    print_stats(st, as_json)


@cli.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed without the model; read again the files indexed "
              "without what their settings call for (OCR, speech, the sound model).")
@click.pass_context
def check(ctx: click.Context, repair: bool) -> None:
    """Verify that catalog rows, vectors and files agree; exit 1 if they do not."""
    lib = _open(ctx)
    report = lib.check(repair=repair)
    for line in report.problems:
        click.echo(f"problem: {line}")
    for line in report.warnings:
        click.echo(f"warning: {line}")
    for line in report.repaired:
        click.echo(f"repaired: {line}")
    if report.reread:  # read again now, with the readers this machine has
        again = lib.index(report.reread, reporter=TerminalReporter(None))
        click.echo(f"read again: {again.summary()}")
    if report.ok:
        click.echo("ok")
    elif not repair:
        click.echo("run `xmr check --repair` to fix", err=True)
        ctx.exit(1)


@cli.group()
def bridge() -> None:
    """The audio bridge: how sounds reach the CLIP space of pictures and text."""


@bridge.command("fit")
@click.option("--captions", type=click.Path(exists=True, dir_okay=False), help="Caption file, one per line [default: xmr's corpus]")
@click.option("--method", type=click.Choice(["auto", "ridge", "procrustes", "contrastive"]), default="auto", show_default=True,
              help="auto: the best of ridge/Procrustes on held-out captions, refined contrastively if that measures better")
@click.option("--audio-model", envvar="XMR_AUDIO_MODEL", help=AUDIO_MODEL_HELP)
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal]")
@click.pass_context
def bridge_fit(ctx: click.Context, captions: str | None, method: str, audio_model: str | None, progress: bool | None) -> None:
    """Fit the bridge for this library's CLIP encoder and CLAP model and move stored sounds to it."""
    lib = _open(ctx, create=True, audio_model=audio_model)
    d = lib.refit_bridge(captions=captions, method=method, reporter=TerminalReporter(progress)).describe()
    click.echo(
        f"bridge fitted: {d['method']} on {d['captions']} captions, held-out R@1 {d['heldout_r1']:.3f}, "
        f"cos {d['heldout_cos']:.3f}; gap from {d['gap_windows']} audio windows -> {lib.bridge_path}"
    )


@bridge.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bridge_show(ctx: click.Context, as_json: bool) -> None:
    """The library's bridge: what it maps, how it was fitted, how well it did on held-out captions."""
    lib = _open(ctx)
    b = lib.bridge()
    if b is None:
        raise NotFoundError("this library has no bridge yet: it is fitted when the first sounds are indexed "
                            "(or by `xmr bridge fit`)")
    if as_json:
        click.echo(json.dumps(b.manifest, indent=2))
        return
    for key, value in b.describe().items():
        click.echo(f"{key:<12} {value}")


register_organize(cli, _open)
register_people(cli, _open)
register_serve(cli, _open)
register_models(cli, _open)


def main(args: list[str] | None = None) -> None:
    """The `xmr` command. Ctrl-C at any moment (also while click parses the command line, before
    a command runs) ends with the same message and exit 130, never click's "Aborted!" (exit 1)."""
    signal.signal(signal.SIGINT, _on_signal)
    try:
        code = cli.main(args=args, prog_name="xmr", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
