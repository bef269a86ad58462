"""`xmr serve`: the HTTP server's command (registered on the `xmr` group by retrieval.cli)."""

from __future__ import annotations

import signal
from typing import Any, Callable

import click

from retrieval.cli_types import ByteSize


def _announce(url: str, token: str | None, cors: tuple[str, ...]) -> None:
    click.echo(f"xmr: serving at {url}  (Ctrl-C to stop)", err=True)
    if cors:  # what clip-front and ClipClient take as their back end
        back = url.split("/?")[0].rstrip("/") + (f"/t/{token}" if token else "")
        click.echo(f"xmr: clip-retrieval back end {back}  (ClipClient url {back}/knn-service)", err=True)


def register(cli: click.Group, open_library: Callable[..., Any]) -> None:
    """`xmr serve` and `xmr shard` on the group; `open_library(ctx)` opens the command's library."""

    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True, envvar="XMR_HOST",
                  help="Address to listen on; anything but loopback needs --token.")
    @click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), envvar="XMR_PORT",
                  help="Port (0: any free one; `xmr search` finds it anyway).")
    @click.option("--token", envvar="XMR_TOKEN", help="Require this secret on every request [env XMR_TOKEN].")
    @click.option("--max-upload", type=ByteSize(), default="32M", show_default=True, help="Largest request body (uploads).")
    @click.option("--cors", multiple=True, metavar="ORIGIN", envvar="XMR_CORS",
                  help="Let pages of this origin (e.g. clip-front's, http://127.0.0.1:1235) use the API; repeatable.")
    @click.option("--allow-image-urls", is_flag=True,
                  help="Let /knn-service queries name a picture by image_url, which the server then fetches.")
    @click.option("--ray", "ray_address", is_flag=False, flag_value="local", metavar="[ADDRESS]",
                  help="Search the library's shards (`xmr shard N`) in actors of this Ray cluster ('auto': the "
                       "running one; nothing: one on this machine).")
    @click.option("--watch", is_flag=True,
                  help="Also watch the library's folders and index what changes (an `xmr index --watch` beside the server).")
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, token: str | None, max_upload: int, cors: tuple[str, ...],
              allow_image_urls: bool, ray_address: str | None, watch: bool) -> None:
        """Serve the library over HTTP with the model loaded: a web page at / and a JSON API
        (/api/..., schema at /openapi.json). `xmr search` uses it automatically while it runs.

        \b
        xmr serve                      # http://127.0.0.1:8765
        xmr serve --port 0             # any free port
        xmr serve --host 0.0.0.0 --token SECRET
        xmr serve --cors http://127.0.0.1:1235   # clip-front there; ClipClient(url=".../knn-service")
        xmr serve --watch              # and index what changes in the library's folders
        """
        from retrieval.server.serve import serve as run

        o = ctx.obj
        # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again; as an exception
        # it lets the discovery file be removed on the way out.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            run(o["library"], db=o["db"], device=o["device"], host=host, port=port, token=token, max_upload=max_upload,
                access_log=o["verbose"], cors=cors, allow_image_urls=allow_image_urls,
                on_ready=lambda url: _announce(url, token, cors), ray=ray_address, watch=watch)
        except KeyboardInterrupt:
            pass
        click.echo("xmr: server stopped", err=True)

    @cli.command()
    @click.argument("n", type=click.IntRange(1, 1024), required=False)
    @click.pass_context
    def shard(ctx: click.Context, n: int | None) -> None:
        """Cut the library's vectors into N shards by item id, for `xmr serve --ray` (one Ray
        actor per shard). Remembered: later `xmr index` runs cut them again. Without N: cut
        again; 1: no shards."""
        lib = open_library(ctx)
        paths = lib.shard(n)
        if not paths:
            click.echo(f"{lib.path}: not sharded" if n == 1 else f"{lib.path}: no vectors to shard yet")
            return
        click.echo(f"{lib.path}: {len(paths)} shards in {paths[0].parent}")
