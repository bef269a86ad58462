"""What an index run is asked to do: one typed object instead of a dozen keyword arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from indexer.kinds.video import SEGMENT_MIN_S
from retrieval.errors import UsageError

SEGMENT_LIMIT_S = 3600.0
DECODERS = ("auto", "threads", "processes")
# Processes decode faster than threads once there are enough cores to hide their start and the
# copy of decoded pictures between processes: measured 1.0x on 2 cores (scripts/bench_index.py
# --decoders) and 3.2x for 1024x768 JPEGs on 16 cores (issue 26's H200 machine). Below this,
# threads (which share the model's memory and start at once).
PROCESSES_FROM_CORES = 8


@dataclass(frozen=True)
class IndexOptions:
    """The settings of one `xmr index` run (None: the library's remembered value or the default)."""

    batch_size: int | None = None  # items per model call (32 on a CPU, 256 on CUDA)
    workers: int | None = None  # decode threads or processes (the CPU count)
    decoder: str = "auto"  # "threads", "processes", or "auto" (by the cores at hand)
    checkpoint_seconds: float = 30.0
    wait: bool = False  # queue behind another writer instead of failing
    segment_max: float | None = None  # longest video shot, remembered by the library
    ocr: bool | None = None  # remembered by the library
    speech_model: str | None = None  # remembered by the library; "none": off
    faces: bool | None = None  # look for faces; remembered by the library (default: when installed)
    ray: str | bool | None = None  # a Ray cluster's address, or True for one on this machine
    ship_bytes: bool = False  # with ray: the driver sends the files' bytes
    scope: tuple[str, ...] = ()  # only these absolute paths under the roots changed (a watcher's run)

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size <= 0:
            raise UsageError("batch size must be positive")
        if self.workers is not None and self.workers <= 0:
            raise UsageError("--workers must be positive")
        if self.segment_max is not None and not SEGMENT_MIN_S <= self.segment_max <= SEGMENT_LIMIT_S:
            raise UsageError(f"--segment-max must be between {SEGMENT_MIN_S:g} and {SEGMENT_LIMIT_S:g} seconds, "
                             f"got {self.segment_max:g}")
        if self.decoder not in DECODERS:
            raise UsageError(f"unknown decoder {self.decoder!r}; available: {', '.join(DECODERS)}")
        if self.ship_bytes and not self.ray:
            raise UsageError("--ship-bytes goes with --ray")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> IndexOptions:
        """From keyword arguments, naming any that is not an option."""
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(kwargs) - names):
            raise TypeError(f"unknown index option(s): {', '.join(unknown)}; available: {', '.join(sorted(names))}")
        return cls(**kwargs)

    @property
    def decode_workers(self) -> int:
        return self.workers or os.cpu_count() or 2

    def uses_processes(self) -> bool:
        """Decode in processes? "auto" chooses by the cores of this machine (see PROCESSES_FROM_CORES)."""
        if self.decoder != "auto":
            return self.decoder == "processes"
        return (os.cpu_count() or 1) >= PROCESSES_FROM_CORES and self.decode_workers > 1
