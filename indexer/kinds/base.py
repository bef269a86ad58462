"""The media-kind contract: what a kind of file is, how it is recognised, how it becomes items.

A kind (pictures, text documents, sounds; later videos, PDFs) is one module under
`indexer/kinds/` holding one `MediaKind` subclass, registered in `indexer/kinds/__init__.py`.
It says

- how its files are recognised: by content (`sniff`, given the first bytes), then by extension;
- how a file is decoded into `Segment`s, each a future item with its location in the file
  (chunk and char offsets, a window's start/end seconds, ...) and the name of the embedder
  that turns it into a vector ("image", "text", "audio": see `indexer/stages/embed.py`);
- what a hit of this kind carries (`location`), how the page shows it (`view`), and whether
  it has a thumbnail.

Scanning, the pipeline, the catalog, search and the page work from these attributes alone, so
adding a kind is adding a module (and its tests), not editing each of them.

Kind modules are imported by `xmr --help`: heavy libraries (numpy, PIL, soundfile) are
imported inside the functions that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Protocol

from retrieval.errors import DecodeError

# The item columns a segment can fill: where in its file an item is.
LOCATION_FIELDS = ("chunk", "char_start", "char_end", "snippet", "start", "end", "page", "confidence")


def read_failure(e: OSError) -> DecodeError:
    """An OS error met while reading a file, as the reason after "skipping PATH:"."""
    if isinstance(e, FileNotFoundError):
        return DecodeError("file vanished")
    if isinstance(e, PermissionError):
        return DecodeError("permission denied")
    return DecodeError(e.strerror or str(e))


@dataclass(frozen=True)
class Segment:
    """One item to be: what its embedder eats, and where in its file it is.

    `payload` is what the kind decoded (a PIL image, a passage of text, mono samples); the
    pipeline hands it to the embedder named by `embedder` (in a decode worker) before encoding.
    """

    payload: Any
    embedder: str
    chunk: int = 0
    char_start: int | None = None
    char_end: int | None = None
    snippet: str | None = None
    start: float | None = None  # seconds
    end: float | None = None
    page: int | None = None  # from 1
    # How sure the reader of `snippet` was, 0..1, where its words were read off a picture (OCR)
    # or heard (speech); the snippet of any segment is its words in the full-text index.
    confidence: float | None = None
    # A picture's larger copy, for a model that looks closer (faces: DecodeContext.detail_side);
    # dropped once the models' inputs are made.
    detail: Any = None


class DecodeContext(Protocol):
    """What kinds may ask of the encoders while decoding (implemented by indexer.stages.context)."""

    @property
    def image_size(self) -> int | None:
        """Side in pixels the picture encoder looks at (decoders may decode no larger)."""

    @property
    def detail_side(self) -> int | None:
        """Long side of a larger copy of each picture that a model wants (faces); None: none."""

    @property
    def context_length(self) -> int:
        """Tokens the text encoder reads at most."""

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the text encoder's context, special tokens included."""

    def audio_format(self) -> tuple[int, int]:
        """(sampling rate, samples per window) of the sound encoder; loads it on first use."""

    @property
    def segment_max(self) -> float:
        """Longest segment of a timeline (a video's shots), in seconds."""

    @property
    def wants_sound(self) -> bool:
        """Whether sounds are wanted at all (False: only pictures and words, e.g. when another
        model re-encodes a library's pictures); kinds then skip decoding their sound."""

    def ocr(self) -> Any:
        """The OCR reader for words in pictures (indexer.ocr.Reader), or None when OCR is off."""

    def speech(self) -> Any:
        """The speech transcriber (indexer.speech.Transcriber), or None when speech is off."""


class MediaKind:
    """A kind of file. Subclasses set the class attributes and implement `decode`."""

    name: ClassVar[str]  # the modality of its files and items: "image", "text", "audio"
    label: ClassVar[str]  # what the page's tab says: "Pictures"
    noun: ClassVar[str]  # one hit, in words: "picture"
    extensions: ClassVar[frozenset[str]]  # lower case, with the dot
    location: ClassVar[tuple[str, ...]] = ()  # which LOCATION_FIELDS its hits carry
    # the readers its files are read by where the library's settings call for them: "ocr" (words
    # in pictures), "speech" (what is said), "sound" (the sound model); a file indexed while one
    # could not be had is marked (File.unread), for `xmr check` to report and `--repair` to redo
    readers: ClassVar[tuple[str, ...]] = ()
    view: ClassVar[str] = "file"  # how the page shows a hit: "thumbnail", "snippet", "player", "video"
    mime: ClassVar[str | None] = None  # served as; None: guessed from the name, within `name/`

    def sniff(self, head: bytes, ext: str) -> bool:
        """Is this, by its first bytes (at least 16, fewer for a short file), a file of this kind?"""
        return False

    def refine(self, path: str) -> MediaKind:
        """The kind a file recognised as this one really is, once opened (an mp4 holding only
        sound is a sound). Runs in decode threads; most kinds are what their bytes say."""
        return self

    def decode(self, path: str, ctx: DecodeContext) -> Iterator[Segment]:
        """The file's segments, in order. Raise DecodeError(reason) for a file that cannot be
        read; other exceptions are turned into one by the caller. Runs in decode threads.
        A generator keeps memory flat: the pipeline prepares each segment as it comes."""
        raise NotImplementedError

    def facts(self, path: str) -> dict[str, Any]:
        """What the file says about itself (indexer.facts.FACT_FIELDS: date taken, camera,
        place, pixel size, duration), read from its header at index time; may raise, which
        only loses the facts, never the file."""
        return {}

    def thumbnail(self, path: str, size: int, at: float | None = None) -> Any:
        """A PIL image no larger than the file's own, for a thumbnail of `size` pixels (of the
        moment `at` seconds, for kinds with a timeline); None when this kind has none."""
        return None

    @property
    def has_thumbnail(self) -> bool:
        return type(self).thumbnail is not MediaKind.thumbnail

    def hit_fields(self, item: Any) -> dict[str, Any]:
        """The location fields of a catalog item that a hit of this kind carries."""
        return {f: getattr(item, f) for f in self.location}

    @property
    def timeline(self) -> bool:
        """Do its thumbnails differ by moment (one per item, not one per file)?"""
        return "start" in self.location and self.has_thumbnail

    def describe(self) -> dict[str, Any]:
        """What the page needs to know of this kind."""
        return {"name": self.name, "label": self.label, "noun": self.noun, "view": self.view,
                "thumbnail": self.has_thumbnail, "extensions": sorted(self.extensions)}
