"""Ctrl-C and SIGTERM during an index run: noted by a handler, acted on at safe points."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class Signals:
    """Ctrl-C / SIGTERM caught while a block runs: recorded by the handler, raised as
    KeyboardInterrupt where the code asks (`check`), and at the end of the block."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def check(self) -> None:
        if self.caught:
            self.caught.clear()
            raise KeyboardInterrupt


@contextmanager
def signals_deferred() -> Iterator[Signals]:
    """Hold Ctrl-C / SIGTERM until the block is done (or calls `check()`), then raise
    KeyboardInterrupt.

    A KeyboardInterrupt raised by a signal handler lands between any two bytecodes: inside
    SQLAlchemy's commit it left a transaction half closed (seen as ResourceClosedError), and
    inside a lock's acquire-release it can leave the lock held (logging's: decode threads then
    wait for it forever). So during an index run signals are only noted, and the run stops at
    the next safe point. Signal handlers can only be swapped in the main thread; elsewhere this
    does nothing.
    """
    import signal
    import threading

    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    kinds = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {k: signal.getsignal(k) for k in kinds}
    for k in kinds:
        signal.signal(k, lambda signum, frame: signals.caught.append(signum))
    try:
        yield signals
    finally:
        for k, handler in previous.items():
            signal.signal(k, handler)
    signals.check()
