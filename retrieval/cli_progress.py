"""The terminal's Reporter (indexer.stages.report): tqdm bars on stderr, skipped files written
above them, waiting for another writer said once."""

from __future__ import annotations

import sys
from typing import Any

import click

from indexer.stages.report import Bar, Reporter
from retrieval.paths import display_path


class TerminalReporter(Reporter):
    """`progress`: show bars (None: when stderr is a terminal)."""

    def __init__(self, progress: bool | None = None) -> None:
        self.progress = progress

    def bar(self, desc: str, total: int | None, unit: str) -> Bar:
        from tqdm import tqdm

        bar: Any = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr,
                        disable=(not self.progress) if self.progress is not None else None)
        return bar

    def skip(self, path: str, reason: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"skipping {display_path(path)}: {reason}", file=sys.stderr)

    def waiting(self, message: str) -> None:
        click.echo(f"{message} ...", err=True)
