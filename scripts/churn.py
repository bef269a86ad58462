"""A folder that keeps changing: pictures, text files and videos added, edited, deleted and renamed
(the crash and concurrency tests index it while it churns)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from scripts.synthetic import CONCEPTS, draw

WORDS = ("river", "mountain", "lantern", "harbour", "orchard", "violin", "glacier", "market", "comet", "meadow")


def _text(rng: random.Random) -> str:
    n = rng.choice((1, 1, 2, 40))  # some files long enough for several chunks
    return "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(n))


class Corpus:
    """The folder being indexed, and the random changes made to it between runs."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder, self.rng, self.serial = folder, rng, 0
        folder.mkdir(parents=True, exist_ok=True)

    def add_image(self) -> Path:
        self.serial += 1
        sub = self.folder / f"d{self.serial % 4}"
        sub.mkdir(exist_ok=True)
        path = sub / f"img{self.serial:05d}.png"
        draw(self.rng.choice(CONCEPTS), self.rng).save(path)
        return path

    def add_face(self) -> Path:
        """A real photo of a real person (scripts/face_photos.py), cropped and scaled at random."""
        self.serial += 1
        path = self.folder / f"face{self.serial:05d}.jpg"
        self._face(path)
        return path

    def _face(self, path: Path) -> None:
        from PIL import Image

        from scripts.face_photos import PEOPLE, face_photos

        with Image.open(face_photos() / self.rng.choice(sorted(PEOPLE))) as im:
            im = im.convert("RGB")
            cut = self.rng.uniform(0.0, 0.15)
            im = im.crop((int(im.width * cut), 0, im.width, int(im.height * (1 - cut))))
            side = self.rng.randint(240, 400)
            im.resize((side, max(1, round(im.height * side / im.width)))).save(path, quality=85)

    def add_text(self) -> Path:
        self.serial += 1
        path = self.folder / f"note{self.serial:05d}.txt"
        path.write_text(_text(self.rng), encoding="utf-8")
        return path

    def add_video(self) -> Path:
        self.serial += 1
        path = self.folder / f"clip{self.serial:05d}.mp4"
        self._video(path)
        return path

    def _video(self, path: Path) -> None:
        from scripts.synthetic_video import Scene, make_video

        scenes = [Scene(self.rng.choice(CONCEPTS), self.rng.choice((1.5, 2.0, 3.0))) for _ in range(self.rng.randint(1, 3))]
        make_video(path, scenes, size=(96, 72), fps=8, audio=False, seed=self.rng.randrange(1 << 30))

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def mutate(self, scale: int = 1) -> dict[str, list[Path]]:
        """Add, edit, delete and rename a few files (`scale` times as many): every kind of change
        an index run handles. Returns the paths of each kind (renamed: the old paths)."""
        rng, files = self.rng, self.files()
        picked = rng.sample(files, min(len(files), 10 * scale))
        changes: dict[str, list[Path]] = {"added": [], "edited": [], "deleted": [], "renamed": []}
        for p in picked[: 4 * scale]:
            if p.suffix == ".png":
                draw(rng.choice(CONCEPTS), rng).save(p)
            elif p.suffix == ".mp4":
                self._video(p)
            elif p.suffix == ".jpg":
                self._face(p)
            else:
                p.write_text(_text(rng), encoding="utf-8")
            changes["edited"].append(p)
        for p in picked[4 * scale : 7 * scale]:
            p.unlink()
            changes["deleted"].append(p)
        for p in picked[7 * scale :]:
            self.serial += 1
            p.rename(p.with_name(f"moved{self.serial:05d}{p.suffix}"))
            changes["renamed"].append(p)
        for _ in range(rng.randint(3 * scale, 8 * scale)):
            r = rng.random()
            changes["added"].append(self.add_image() if r < 0.72 else self.add_text() if r < 0.95 else self.add_video())
        return changes


def random_model(folder: Path, seed: int = 0) -> str:
    """`local-dir:` spec of a tiny random-weights open_clip model, made in a separate process
    (so the caller never starts torch's thread pools, and may fork)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from scripts.train_demo_model import save_random_model as s; s(Path(sys.argv[1]), int(sys.argv[2]))",
                    str(folder), str(seed)], check=True, cwd=root)
    return f"local-dir:{folder}"
