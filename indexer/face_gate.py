"""Which pictures the face model looks at: a gate that learns, per library, from the main
model's picture vectors, so a photo without people costs a dot product instead of the
detector's 0.2 s (dlib's HOG over a 2000-px pyramid on a CPU).

A picture's score is its cosine to the main model's text vector of "a photo of a person" (a few
prompts, averaged). Some pictures are always looked at, whatever their score (audits): the
first AUDIT_FIRST of a library, then one in AUDIT_EVERY (chosen by the vector itself, so the
same picture is chosen on every run). The audits' scores, with and without faces found, are the
gate's calibration: it skips a picture only once it has seen MIN_WITH_FACES audited pictures
with faces, and only below a threshold that keeps all but the lowest KEEP_SHARE tail of
those pictures' scores, less a margin. A model that cannot tell people apart from the rest (a
random one) gets a threshold below almost every score: nothing is skipped, only time is lost.
The calibration is kept in the catalog (meta "face_gate") for the model that made it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from sqlalchemy.orm import Session

from indexer.catalog import get_meta, set_meta

META = "face_gate"
PROMPTS = ("a photo of a person", "a photo of people", "a portrait of a face", "a group photo of friends",
           "a selfie", "a photo of a child", "a crowd of people")
AUDIT_FIRST = 200
AUDIT_EVERY = 20
MIN_WITH_FACES = 30
KEEP_SHARE = 0.02  # the share of audited pictures with faces allowed below the threshold (before the margin)
MARGIN_SD = 1.0  # the threshold goes this many standard deviations of their scores lower still
KEPT_SCORES = 1000  # the newest audited scores kept, of each side (the catalog keeps them)


class FaceGate:
    def __init__(self, text_vector: np.ndarray, model_id: str, state: dict[str, Any] | None = None) -> None:
        self.t = np.asarray(text_vector, np.float32)
        self.model_id = model_id
        state = state if state and state.get("model") == model_id else {}
        self.seen = int(state.get("seen", 0))
        self.with_faces: list[float] = list(state.get("with_faces", []))
        self.without: list[float] = list(state.get("without", []))
        self.skipped = int(state.get("skipped", 0))

    @classmethod
    def of(cls, session: Session, encoder: Any) -> FaceGate:
        """The library's gate for its main model (`encoder`), with its calibration so far (and
        the prompts' vector, encoded once per model)."""
        model_id = hashlib.sha1(repr(sorted(encoder.identity().items())).encode()).hexdigest()[:12]
        state = get_meta(session, META) or {}
        if state.get("model") == model_id and state.get("text"):
            return cls(np.asarray(state["text"], np.float32), model_id, state)
        t = np.asarray(encoder.encode_text(list(PROMPTS)), np.float32).mean(axis=0)
        return cls(t / max(float(np.linalg.norm(t)), 1e-12), model_id, state)

    def threshold(self) -> float | None:
        """The score below which a picture is not looked at; None while still learning."""
        if len(self.with_faces) < MIN_WITH_FACES:
            return None
        scores = np.asarray(self.with_faces)
        return float(np.quantile(scores, KEEP_SHARE) - MARGIN_SD * scores.std())

    @staticmethod
    def audited(vector: np.ndarray) -> bool:
        """One picture in AUDIT_EVERY, chosen by its vector (the same one on every run)."""
        return int.from_bytes(hashlib.blake2b(np.asarray(vector, np.float32).tobytes(), digest_size=4).digest(),
                              "little") % AUDIT_EVERY == 0

    def decide(self, vectors: Sequence[np.ndarray | None]) -> list[tuple[bool, bool, float]]:
        """(look?, audit?, score) for each picture's main vector (None: looked at, not learnt from)."""
        limit, out = self.threshold(), []
        for v in vectors:
            if v is None:
                out.append((True, False, 0.0))
                continue
            score = float(np.dot(np.asarray(v, np.float32), self.t))
            audit = self.seen < AUDIT_FIRST or self.audited(v)
            self.seen += 1
            look = audit or limit is None or score >= limit
            self.skipped += not look
            out.append((look, audit, score))
        return out

    def learn(self, score: float, has_faces: bool) -> None:
        """An audited picture's score and whether it held faces."""
        side = self.with_faces if has_faces else self.without
        side.append(score)
        del side[:-KEPT_SCORES]

    def remember(self, session: Session) -> None:
        set_meta(session, META, {"model": self.model_id, "text": [round(float(x), 6) for x in self.t],
                                 "seen": self.seen, "skipped": self.skipped,
                                 "with_faces": [round(x, 5) for x in self.with_faces],
                                 "without": [round(x, 5) for x in self.without]})
