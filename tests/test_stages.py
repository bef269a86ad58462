"""The index run's stages (indexer.stages): batching that halves on out-of-memory, one registry
feeding every model in one pass, the decoders (threads and processes give the same library),
and added models embedding new files in the run that decodes them (each file decoded once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from indexer.catalog import File, Item
from indexer.kinds import Segment
from indexer.scan import MediaFile
from indexer.stages.context import MAIN
from indexer.stages.embed import Batches, FileWork, Pending, is_out_of_memory, registry_for
from indexer.stages.options import IndexOptions
from retrieval import Library
from retrieval.errors import DecodeError, UsageError


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError (recognised by its name, as the real one is)."""


def _unit(n: int, d: int, seed: float) -> np.ndarray:
    x = np.arange(n * d, dtype=np.float32).reshape(n, d) + seed
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_batch_out_of_gpu_memory_is_halved_and_the_run_goes_on():
    calls: list[int] = []
    halved: list[int] = []

    def model(xs: list[float]) -> np.ndarray:
        calls.append(len(xs))
        if len(xs) > 3:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.asarray(xs, np.float32)[:, None]

    batches = Batches(16, on_halve=lambda: halved.append(1))
    out = batches.run(model, [float(i) for i in range(10)])
    assert out[:, 0].tolist() == [float(i) for i in range(10)]  # every input once, in order
    assert batches.size == 2 and calls[:4] == [10, 8, 4, 2] and len(halved) == 3
    calls.clear()
    batches.run(model, [1.0] * 4)  # the smaller size is kept for the rest of the run
    assert calls == [2, 2]
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory")) and not is_out_of_memory(ValueError("x"))


def test_other_failures_and_a_batch_of_one_out_of_memory_are_raised():
    def broken(xs: list[int]) -> np.ndarray:
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        Batches(8, on_halve=lambda: None).run(broken, [1, 2, 3])

    def never(xs: list[int]) -> np.ndarray:
        raise OutOfMemoryError("out of memory")

    with pytest.raises(OutOfMemoryError):
        Batches(4, on_halve=lambda: None).run(never, [1, 2, 3])


class FakeEncoder:
    """Deterministic vectors: a picture input is a number, a text's vector follows its length."""

    def __init__(self, d: int, seed: float) -> None:
        self.d, self.seed, self.calls = d, seed, 0

    def encode_images(self, xs: list[float]) -> np.ndarray:
        self.calls += 1
        return _unit(len(xs), self.d, self.seed + sum(xs))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return _unit(len(texts), self.d, self.seed + sum(map(len, texts)))


class FakeClap:
    def encode_audio(self, xs: list[float]) -> np.ndarray:
        return _unit(len(xs), 6, 100.0)


class FakeBridge:
    def map_audio(self, raw: np.ndarray) -> np.ndarray:
        return raw[:, :4] / np.linalg.norm(raw[:, :4], axis=1, keepdims=True)


def test_one_pass_embeds_each_segment_for_every_model_that_embeds_it():
    main, added = FakeEncoder(4, 1.0), FakeEncoder(3, 2.0)
    reg = registry_for(main, {"mB": added}, FakeClap, lambda raw: FakeBridge())
    assert reg.keys == [MAIN, "mB"]
    pending = Pending(reg, Batches(8))
    work = FileWork(MediaFile("/x", 1, 1), None, "", vectors={k: [] for k in reg.keys})  # type: ignore[arg-type]
    for seg in (Segment({MAIN: 1.0, "mB": 5.0}, "image"), Segment("some words", "text"), Segment(0.5, "audio")):
        pending.add(work, work.add(seg))
    pending.embed()
    assert len(pending) == 0 and all(s.payload is None for s in work.segments)  # memory follows the batch
    assert [v.shape for v in work.vectors[MAIN]] == [(4,), (4,), (4,)]
    assert np.allclose(work.vectors[MAIN][0], _unit(1, 4, 2.0)[0])  # the main model's own input
    assert np.allclose(work.vectors["mB"][0], _unit(1, 3, 7.0)[0])  # the added model's own input
    assert work.vectors["mB"][2] is None  # sounds are the main model's only
    assert work.raw[2] is not None and work.raw[0] is None
    with pytest.raises(DecodeError, match="available: image, text, audio"):
        reg.targets("smell")


def test_options_are_checked_once():
    with pytest.raises(UsageError, match="--ship-bytes goes with --ray"):
        IndexOptions(ship_bytes=True)
    with pytest.raises(UsageError, match="available: auto, threads, processes"):
        IndexOptions(decoder="gpu")
    with pytest.raises(UsageError, match="--segment-max"):
        IndexOptions(segment_max=0.5)
    with pytest.raises(TypeError, match="unknown index option.*batch_sise"):
        IndexOptions.from_kwargs(batch_sise=3)
    assert IndexOptions(decoder="processes").uses_processes() and not IndexOptions(decoder="threads").uses_processes()


def _library_rows(lib: Library) -> tuple[list[tuple], dict[str, np.ndarray]]:
    with lib.Session() as s:
        rows = s.execute(select(File.path, Item.modality, Item.chunk, Item.snippet, Item.start, Item.id)
                         .join(Item).order_by(File.path, Item.chunk, Item.start)).all()
    vecs = lib.vectors()
    by_key = {f"{Path(r[0]).name}#{r[2]}#{r[4]}": vecs.reconstruct_many(np.asarray([r[5]], np.int64))[0] for r in rows}
    return [(Path(r[0]).name, r[1], r[2], r[3], r[4]) for r in rows], by_key


@pytest.fixture()
def mixed(tmp_path, samples):
    """Pictures, notes, a broken picture and a file of no kind."""
    folder = Path(shutil.copytree(samples[0], tmp_path / "media"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "data.bin").write_bytes(b"\x00\x01\x02")
    return folder


def test_decode_processes_make_the_same_library_as_threads(tmp_path, mixed, random_model):
    out = {}
    for decoder in ("threads", "processes"):
        skipped: list[tuple[str, str]] = []
        lib = Library(tmp_path / decoder, model=random_model, create=True)
        report = lib.index([mixed], decoder=decoder, workers=2, on_skip=lambda p, r: skipped.append((Path(p).name, r)))
        assert [name for name, _ in skipped] == ["broken.jpg"], skipped
        out[decoder] = (report.new, report.items, skipped, *_library_rows(lib))
    (n1, i1, s1, rows1, v1), (n2, i2, s2, rows2, v2) = out["threads"], out["processes"]
    assert (n1, i1, s1, rows1) == (n2, i2, s2, rows2) and i1 > 0
    assert max(float(np.abs(v1[k] - v2[k]).max()) for k in v1) < 1e-5


def test_added_models_embed_new_files_in_the_same_pass(tmp_path, samples, random_model, trained_model, monkeypatch):
    from indexer import extra_models
    from indexer.kinds.image import ImageKind

    folder = Path(shutil.copytree(samples[0], tmp_path / "media"))
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    lib.index([folder / "notes"])
    lib.add_model(trained_model)
    decoded: list[str] = []
    real = ImageKind.decode

    def counting(self, path, ctx):
        decoded.append(path)
        return real(self, path, ctx)

    monkeypatch.setattr(ImageKind, "decode", counting)
    synced = []
    real_sync = extra_models._sync_one
    monkeypatch.setattr(extra_models, "_sync_one", lambda *a, **k: synced.append(1) or real_sync(*a, **k))
    report = lib.index([folder])
    pictures = sorted(str(p) for p in (folder / "photos").iterdir())
    assert report.new == len(pictures) and sorted(decoded) == pictures  # each picture decoded once
    assert not synced  # the added model was in step after the run: nothing left to catch up
    info = lib.models_info()[1]
    assert info.behind == 0 and info.vectors == lib.stats()["items"] - info.behind
    assert lib.check().ok
    # B's vectors of the new pictures equal a library built with B alone
    fresh = Library(tmp_path / "fresh", model=trained_model, create=True)
    fresh.index([folder])
    as_b = Library(tmp_path / "lib", model=trained_model)
    q = "a photo of a red circle"
    a = [(Path(h.path).name, round(h.score, 4)) for h in as_b.search(q, k=6, type="image", mode="semantic")]
    b = [(Path(h.path).name, round(h.score, 4)) for h in fresh.search(q, k=6, type="image", mode="semantic")]
    assert sorted(s for _, s in a) == sorted(s for _, s in b)


def test_a_killed_run_with_decode_processes_leaves_no_processes_and_resumes(tmp_path, samples, random_model):
    """SIGKILL to `xmr index --decoder processes` after a checkpoint: its decode processes end
    with it (they read from the parent's pipe), the library checks out, the next run finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    folder = Path(shutil.copytree(samples[0], tmp_path / "media"))
    for i in range(120):  # enough work that the kill lands mid-run
        (folder / f"copy{i:03d}.txt").write_text(f"note {i}: a red circle and a blue square " * (1 + i % 5))
    lib = tmp_path / "lib"
    cmd = [sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(folder), "--model", random_model,
           "--no-progress", "--batch-size", "4", "--checkpoint-every", "0", "--decoder", "processes", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.time() + 120
    while not list(lib.glob("vectors-*.faiss")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    children = _children(proc.pid)
    proc.kill()
    proc.wait()
    if not children:
        pytest.skip("the run finished before its decode processes could be seen")
    deadline = time.time() + 30
    while any(_alive(c) for c in children) and time.time() < deadline:
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)], "decode processes outlived the killed run"
    check = subprocess.run([sys.executable, "-m", "retrieval.cli", "--library", str(lib), "check"], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    resumed = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert Library(lib).stats()["files"] == sum(1 for p in folder.rglob("*") if p.is_file())


def _children(pid: int) -> list[int]:
    """Every process below `pid` (the forkserver and its workers)."""
    import os

    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    found.append(int(entry))
                    frontier.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_speech_model_folder_given_relative_is_remembered_absolute(tmp_path, random_model, monkeypatch):
    """A later run from another folder must find the same model (issue 27: it silently indexed
    recordings without transcripts)."""
    from indexer.catalog import get_meta
    from indexer.readers import ReaderSettings

    (tmp_path / "models" / "my-whisper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models")
    lib = Library(tmp_path / "lib", model=random_model, create=True)
    with lib.Session() as s:
        settings = ReaderSettings.of(s, speech_model="my-whisper")
        settings.remember(s)
        assert get_meta(s, "speech") == {"model": str(tmp_path / "models" / "my-whisper")}
        assert settings.speech_model == str(tmp_path / "models" / "my-whisper")
        assert ReaderSettings.of(s, speech_model="base").speech_model == "base"  # a size name stays a name


def test_a_decode_process_that_dies_stops_the_run_clearly_and_it_resumes(tmp_path, random_model):
    """A decoder that kills its own process (a segfault in a C library, say): a clear error,
    exit 1, no process left behind, a library that checks out; the next run finishes."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(1500):
        (folder / f"n{i:04d}.txt").write_text(f"note {i} about a red circle and a blue square")
    lib = tmp_path / "lib"
    cmd = [sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(folder), "--model", random_model,
           "--no-progress", "--batch-size", "4", "--checkpoint-every", "0", "--decoder", "processes", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None and not (workers and list(lib.glob("vectors-*.faiss"))):
        time.sleep(0.1)
        workers = _decode_workers(proc.pid)[:1]
    if not workers or proc.poll() is not None:
        proc.kill()
        pytest.skip("the run finished before a decode process could be killed")
    everything = _children(proc.pid)
    os_kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the killed process had no work left")
    assert proc.returncode == 1 and "a decode process died" in err and "Traceback" not in err, err
    deadline = time.time() + 15  # the forkserver and the resource tracker see their parent gone
    while any(_alive(c) for c in everything) and time.time() < deadline:
        time.sleep(0.2)
    assert not [c for c in everything if _alive(c)]
    check = subprocess.run([sys.executable, "-m", "retrieval.cli", "--library", str(lib), "check"], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).returncode == 0
    assert Library(lib).stats()["files"] == 1500


def os_kill(pid: int, sig: int) -> None:
    import os

    os.kill(pid, sig)


def _decode_workers(pid: int) -> list[int]:
    """The children of `pid`'s forkserver: the decode processes."""
    out = []
    for child in _children(pid):
        try:
            cmdline = open(f"/proc/{child}/cmdline", "rb").read()
        except OSError:
            continue
        if b"forkserver" in cmdline and _ppid(child) == pid:
            out += [c for c in _children(child) if _ppid(c) == child]
    return out


def _ppid(pid: int) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1
