"""The life of a library's audio bridge (retrieval.encoders.bridge: CLAP space -> CLIP space).

It is fitted when the first sounds are indexed (or by `xmr bridge fit`), saved as a file the
catalog names (see indexer.store), and every stored sound follows it: each audio item keeps its
own CLAP vector (table `audio_raw`), so a refitted bridge re-projects the sounds without
decoding them again.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from indexer.catalog import AudioRaw, Item, get_meta, set_meta
from indexer.models import Models
from indexer.stages.report import Reporter
from indexer.store import Store
from retrieval.errors import EncoderMismatchError, LibraryError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from retrieval.encoders.bridge import Bridge

AUDIO = "audio"  # the embedder of bridged sound windows (sound files and videos' sound)


def unpack(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored CLAP vectors (float32 bytes) as an (n, dim) array."""
    import numpy as np

    return np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs]) if blobs else np.zeros((0, 0), np.float32)


class AudioBridge:
    """The current bridge of a library view: loaded from the file the catalog names (or the one
    this writer staged), checked against the library's two encoders."""

    def __init__(self, store: Store, models: Models) -> None:
        self.store, self.models = store, models
        self._cache: tuple[str, Bridge] | None = None  # (file name, bridge)

    def current(self) -> Bridge | None:
        """The library's bridge (None before the first sound is indexed)."""
        from retrieval.encoders.bridge import Bridge

        name = self.store.bridge_name
        if self._cache is not None and self._cache[0] == name:
            return self._cache[1]
        path = self.store.path / name
        if self.models.recorded_audio is not None and not path.exists():
            self.store.refresh()  # a refit may have replaced the file since this view was opened
            name = self.store.bridge_name
            path = self.store.path / name
        if not path.exists():
            return None
        bridge = Bridge.load(path)
        if self.models.recorded_audio is not None and self.models.recorded_identity is not None:
            bridge.check_pair(self.models.recorded_audio, self.models.recorded_identity)
        self._cache = (name, bridge)
        return bridge

    def fit(self, session: Session, *, captions: str | os.PathLike[str] | None = None, method: str = "auto",
            extra_audio: np.ndarray | None = None, reporter: Reporter | None = None) -> Bridge:
        """Fit and stage a bridge for this library's CLIP encoder and CLAP model, then move the
        stored sounds to it. The caller holds the write lock and commits."""
        import numpy as np

        from retrieval.encoders.bridge import embed_caption_pairs, fit_bridge, read_captions

        models = self.models
        texts = read_captions(captions)
        models.record(session)
        clap, clip = models.audio_encoder, models.encoder
        models.record_audio(session)
        bar = (reporter or Reporter()).bar("fitting the audio bridge", 2 * len(texts), "caption")
        try:
            x, y = embed_caption_pairs(clap, clip, texts, models.recorded_audio, models.recorded_identity, bar)
        finally:
            bar.close()
        stored = unpack(list(session.scalars(select(AudioRaw.vector))))
        parts = [a for a in (stored, extra_audio) if a is not None and len(a)]
        manifest = {
            "clap": models.recorded_audio,
            "clip": models.recorded_identity,
            "captions": {
                "count": len(texts),
                "source": str(captions) if captions else "xmr default corpus",
                "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            },
        }
        audio = np.concatenate([np.asarray(a, np.float32) for a in parts]) if parts else None
        bridge = fit_bridge(x, y, method=method, audio=audio, manifest=manifest)
        self.install(session, bridge)
        return bridge

    def install(self, session: Session, bridge: Bridge) -> int:
        """Make `bridge` the library's: stage its file, re-project every stored sound, record it.
        Returns the number of audio items moved. The caller holds the write lock and commits."""
        models = self.models
        if models.recorded_audio is not None and models.recorded_identity is not None:
            bridge.check_pair(models.recorded_audio, models.recorded_identity)
        name = f"bridge-{bridge.sha256[:16]}.safetensors"
        self.store.stage_bridge(session, name, bridge.save)
        self._cache = (name, bridge)
        return self.sync(session, force=True)

    def sync(self, session: Session, force: bool = False) -> int:
        """Stored audio vectors follow the bridge file. A crash between saving a new bridge and
        committing leaves the recorded bridge hash behind; the next writer re-projects."""
        bridge = self.current()
        if bridge is None:
            return 0
        if not force and get_meta(session, "bridge_sha256") == bridge.sha256:
            return 0
        moved = 0
        # The model is loaded only when there is no index yet (check --repair works without it).
        vecs = self.store.vectors(writable=True) or self.store.vectors(create_dim=self.models.encoder.dim)
        rows = session.execute(select(AudioRaw.item_id, AudioRaw.vector)).all()
        for i in range(0, len(rows), 4096):
            part = rows[i : i + 4096]
            ids = [r[0] for r in part]
            vecs.remove(ids)
            vecs.add(bridge.map_audio(unpack([r[1] for r in part])), ids)
            moved += len(ids)
        set_meta(session, "bridge_sha256", bridge.sha256)
        set_meta(session, "bridge", bridge.describe())
        return moved

    def bridge_for(self, session: Session, raw: np.ndarray, reporter: Reporter | None = None) -> Bridge:
        """The bridge for freshly encoded sounds: the library's, or, for its first sounds, one
        fitted now (they also estimate the modality gap). The caller holds the write lock."""
        self.models.record_audio(session)
        return self.current() or self.fit(session, extra_audio=raw, reporter=reporter)

    def embed_file(self, path: str) -> np.ndarray:
        """A sound file as a query: CLAP vectors of its windows, averaged, bridged into CLIP space.
        An unreadable file raises DecodeError (the reason)."""
        import numpy as np

        from indexer.kinds.audio import audio_windows

        bridge = self.current()
        if bridge is None:
            raise UsageError("this library has no sounds yet, so no audio bridge: index some audio first, or run `xmr bridge fit`")
        enc = self.models.audio_encoder
        feats = [enc.features(w.samples) for w in audio_windows(path, enc.sampling_rate, enc.window_samples)]
        raw = np.concatenate([enc.encode_audio(feats[i : i + 32]) for i in range(0, len(feats), 32)]).mean(0)
        return bridge.map_audio(raw / max(float(np.linalg.norm(raw)), 1e-12))[0]

    def describe(self) -> dict[str, Any] | None:
        """The bridge as `xmr stats` shows it (an error entry when it cannot be used)."""
        try:
            bridge = self.current()
        except (LibraryError, EncoderMismatchError) as e:
            return {"error": str(e)}
        return None if bridge is None else bridge.describe()

    # -- check and repair ------------------------------------------------------------------

    def check(self, session: Session, problems: list[str]) -> None:
        """Every audio item has its CLAP vector, every CLAP vector its item, and the stored sounds
        were projected with the bridge on disk."""
        n_audio = session.scalar(select(func.count(Item.id)).where(Item.embedder == AUDIO)) or 0
        no_raw = session.scalar(
            select(func.count(Item.id)).where(Item.embedder == AUDIO, ~Item.id.in_(select(AudioRaw.item_id)))
        ) or 0
        if no_raw:
            problems.append(f"{no_raw} audio items have no stored CLAP vector")
        stray = session.scalar(select(func.count(AudioRaw.item_id)).where(~AudioRaw.item_id.in_(select(Item.id)))) or 0
        if stray:
            problems.append(f"{stray} stored CLAP vectors have no audio item")
        if not n_audio:
            return
        try:
            bridge = self.current()
        except (LibraryError, EncoderMismatchError) as e:
            problems.append(f"audio bridge: {e}")
            return
        if bridge is None:
            problems.append(f"{n_audio} audio items but no bridge file ({self.store.bridge_path}); run `xmr bridge fit`")
        elif get_meta(session, "bridge_sha256") != bridge.sha256:
            problems.append("the stored sounds were projected with another bridge than the one on disk")

    def repair(self, session: Session, repaired: list[str]) -> None:
        """Drop CLAP vectors without items and sound files without CLAP vectors (the next
        `xmr index` re-encodes them); move the stored sounds to the current bridge."""
        stray = session.execute(delete(AudioRaw).where(~AudioRaw.item_id.in_(select(Item.id)))).rowcount
        if stray:
            repaired.append(f"removed {stray} stored CLAP vectors without items")
        missing = set(session.scalars(select(Item.file_id).where(Item.embedder == AUDIO, ~Item.id.in_(select(AudioRaw.item_id)))))
        if missing:
            self.store.drop_files(session, list(missing))
            repaired.append(f"dropped {len(missing)} sound files without CLAP vectors (the next `xmr index` re-encodes them)")
        try:
            if self.current() is not None and self.sync(session):
                repaired.append("moved the stored sounds to the current bridge")
        except (LibraryError, EncoderMismatchError):
            pass
