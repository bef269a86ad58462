"""Distributed benchmark: `xmr index` locally against `xmr index --ray` on one and on two Ray
nodes of this machine, the bytes an image moves, and sharded search against one index.

    python scripts/bench_distributed.py [--images 48 144] [--size 2000x1500] [--vectors 1000000] [--dim 512]

Prints JSON.

Indexing: photo-like JPEGs (scripts/photos.py) and ViT-B-32 with random weights saved as a
local folder (every Ray worker must load the same weights; timing does not depend on them).
Each setting indexes two folders (the smaller and the larger --images) into fresh libraries
with the real CLI; `seconds` is the CLI's own indexing time (after the driver loaded its model,
including Ray's start of the encoder actors). `cli_cpu_ms_per_image`: CPU time of the CLI's
process per extra image; with --ray that is the driver, the one writer, so 1000 / it is the most
images a second one writer can take in. The marginal rate (extra images / extra seconds)
leaves out fixed costs (Ray Data's start, the actors' model loading) and is what a long run
sees: Ray's overhead on one box = 1 - marginal(ray, 1 node) / marginal(local). The two nodes
share this machine's cores: their figure measures the overhead of spreading, not a speed-up.

Bytes: what one image costs on the wire, measured as the pickles Ray moves: the file (only with
--ship-bytes), the decoded and preprocessed segment (decode task -> encoder actor) and the
encoded outcome (actor -> driver).

Sharded search: --vectors CLIP-like unit vectors (scripts/bench_search.py's); one query at a time (k=10)
on one in-process index (exact Flat, and the IVF index xmr would build, tuned to recall 0.95), and
fanned out to 1, 2 and 4 shards (each indexed like a library of its size: IVF, tuned the same)
served by actors on a local Ray node and merged: p50/p95 and recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.local_cluster import LocalCluster  # noqa: E402

SECONDS = re.compile(r"items encoded in ([0-9.]+) s")


def vit_b_32(folder: Path) -> str:
    """ViT-B-32 with random weights (seeded) as a `local-dir:` folder, made once."""
    if not (folder / "open_clip_model.safetensors").exists():
        import open_clip
        import torch
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
        cfg = {"model_cfg": open_clip.get_model_config("ViT-B-32"), "preprocess_cfg": dict(model.visual.preprocess_cfg)}
        (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    return f"local-dir:{folder}"


def index_seconds(lib: Path, media: Path, model: str, *extra: str) -> tuple[float, float]:
    """(the CLI's indexing seconds, the CPU seconds the CLI's own process used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "retrieval.cli", "--library", str(lib), "index", str(media),
                           "--model", model, "--no-progress", "--no-ocr", "--speech-model", "none", *extra],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, timeout=3600)
    m = SECONDS.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"xmr index failed: {proc.stdout}\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(m.group(1)), after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def setting(work: Path, name: str, folders: list[tuple[int, Path]], model: str, *extra: str) -> dict[str, object]:
    runs = [(n, *index_seconds(work / f"lib-{name}-{n}", media, model, *extra)) for n, media in folders]
    (n1, t1, c1), (n2, t2, c2) = runs[0], runs[-1]
    return {"runs": [{"images": n, "seconds": round(t, 2), "images_per_s": round(n / t, 2), "cli_cpu_s": round(c, 2)}
                     for n, t, c in runs],
            "marginal_images_per_s": round((n2 - n1) / (t2 - t1), 2) if t2 > t1 else None,
            # the CLI process's CPU per extra image: with --ray that is the driver, the one writer
            "cli_cpu_ms_per_image": round(1000 * (c2 - c1) / (n2 - n1), 2)}


def bytes_per_image(media: Path, model: str, sample: int = 8) -> dict[str, float]:
    from indexer.cluster import setup_for
    from indexer.models import Models
    from indexer.readers import ReaderSettings
    from indexer.remote import SegmentEncoder, decode_file
    from indexer.stages.context import setup_for_run
    from retrieval import Library

    with tempfile.TemporaryDirectory() as tmp:
        with Library(Path(tmp) / "lib", model=model, create=True) as lib:
            models: Models = lib.models

            no_words = ReaderSettings(ocr_on=False, speech_model=None)  # neither OCR nor speech, as above
            setup = setup_for(setup_for_run(models.encoder, {}, models.audio_model, 10.0, no_words), models, None)
            files = sorted(media.iterdir())[:sample]
            decoded = [decode_file(str(p), p.stat().st_size, None, setup) for p in files]
            to_actor = sum(len(pickle.dumps(o, protocol=5)) for o in decoded) / len(files)
            encoded = SegmentEncoder(setup).encode(decoded)
            to_driver = sum(len(pickle.dumps(o, protocol=5)) for o in encoded) / len(files)
    return {"file": round(sum(p.stat().st_size for p in files) / len(files)), "decode_to_encoder": round(to_actor),
            "encoder_to_driver": round(to_driver), "total_shared_storage": round(to_actor + to_driver),
            "total_ship_bytes": round(to_actor + to_driver + sum(p.stat().st_size for p in files) / len(files))}


def sharded_search(work: Path, n_vectors: int, dim: int, queries: int, shard_counts: list[int]) -> dict[str, object]:
    import numpy as np

    from indexer import autoindex, shards
    from indexer.vectors import VectorIndex

    rng = np.random.default_rng(0)
    lib = work / "vectors-lib"
    lib.mkdir()
    from scripts.bench_search import CENTRES, SUBSPACE, clip_like

    basis = np.linalg.qr(rng.standard_normal((dim, SUBSPACE)))[0].T.astype(np.float32)
    centres = rng.standard_normal((CENTRES, SUBSPACE)).astype(np.float32)
    xb = np.empty((n_vectors, dim), np.float32)
    for i in range(0, n_vectors, 100_000):
        xb[i : i + 100_000] = clip_like(min(100_000, n_vectors - i), dim, rng, centres, basis)
    ids = np.arange(n_vectors, dtype=np.int64)
    flat = VectorIndex.create(dim, "Flat")
    flat.add(xb, ids)
    flat.save(lib / "vectors-1.faiss")
    xq = clip_like(queries, dim, rng, centres, basis)
    truth = ids[autoindex.exact_neighbours(xq, xb, 10)]

    def timed(search) -> dict[str, float]:  # noqa: ANN001
        took, found = [], []
        for q in xq:
            t = time.perf_counter()
            found.append(search(q[None, :])[1][0])
            took.append((time.perf_counter() - t) * 1000)
        recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
        return {"p50_ms": round(float(np.percentile(took, 50)), 2), "p95_ms": round(float(np.percentile(took, 95)), 2),
                "recall_at_10": round(float(recall), 4)}

    result: dict[str, object] = {"vectors": n_vectors, "dim": dim, "queries": queries, "k": 10,
                                 "one_index_exact": timed(lambda q: flat.search(q, 10))}
    del flat
    factory = autoindex.choose_factory(n_vectors, dim)
    t = time.perf_counter()
    ivf, tuning = autoindex.build(factory, ids, xb, autoindex.DEFAULT_RECALL)
    result["one_index"] = {"factory": factory, "nprobe": tuning.get("nprobe"), "build_s": round(time.perf_counter() - t, 1),
                           **timed(lambda q: ivf.search(q, 10))}
    del ivf, xb
    import ray

    from retrieval.sharded import ShardedIndex

    policy = {"recall": autoindex.DEFAULT_RECALL}
    with LocalCluster(head_cpus=os.cpu_count() or 2, object_store_mb=512) as c, c.driver():
        ray.init(address=c.address, logging_level="ERROR")
        try:
            for n in shard_counts:
                t = time.perf_counter()
                shards.cut(lib, "vectors-1.faiss", n, policy=policy)
                cut_s = time.perf_counter() - t
                info = json.loads(shards.shard_path(lib, "vectors-1.faiss", 0, n).with_suffix(".json").read_text())
                index = ShardedIndex(ray, lib, n, "vectors-1.faiss", dim, policy)
                timed(lambda q: index.search(q, 10))  # warm: first calls of each actor
                result[f"shards_{n}"] = {"factory": info["factory"], "nprobe": info["tuning"].get("nprobe"),
                                         "cut_s": round(cut_s, 1), **timed(lambda q: index.search(q, 10))}
                for a in index.actors:
                    ray.kill(a)
                shutil.rmtree(lib / shards.SHARD_DIR)
        finally:
            ray.shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs=2, default=[48, 144], metavar=("SMALL", "LARGE"))
    ap.add_argument("--size", default="2000x1500", help="photo size WxH")
    ap.add_argument("--model", help="a local-dir: model every node can load [default: ViT-B-32, random weights]")
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-shards", action="store_true")
    a = ap.parse_args()
    from scripts.photos import write_photos

    out: dict[str, object] = {"cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="xmr-bench-distributed-"))
    try:
        if not a.skip_index:
            model = a.model or vit_b_32(Path.home() / ".cache" / "xmr" / "bench-vit-b-32-random")
            w, h = (int(x) for x in a.size.split("x"))
            folders = []
            for n in a.images:
                write_photos(work / f"photos-{n}", n, size=(w, h), seed=1)
                folders.append((n, work / f"photos-{n}"))
            out["model"], out["photo_size"] = model, a.size
            idx: dict[str, object] = {"local": setting(work, "local", folders, model)}
            cpus = os.cpu_count() or 2
            with LocalCluster(head_cpus=cpus) as c, c.driver():
                idx["ray_1_node"] = setting(work, "ray1", folders, model, "--ray", c.address)
            with LocalCluster(head_cpus=max(1, cpus // 2)) as c, c.driver():
                c.add_node(cpus=max(1, cpus - cpus // 2), resources={"node2": 1})
                idx["ray_2_nodes"] = setting(work, "ray2", folders, model, "--ray", c.address)
                idx["ray_2_nodes_ship_bytes"] = setting(work, "ray2s", folders, model, "--ray", c.address, "--ship-bytes")
            local = idx["local"]["marginal_images_per_s"]  # type: ignore[index]
            for k in ("ray_1_node", "ray_2_nodes", "ray_2_nodes_ship_bytes"):
                r = idx[k]["marginal_images_per_s"]  # type: ignore[index]
                idx[k]["overhead_vs_local"] = round(1 - r / local, 3) if r and local else None  # type: ignore[index]
            out["index"] = idx
            out["bytes_per_image"] = bytes_per_image(folders[0][1], model)
        if not a.skip_shards:
            out["sharded_search"] = sharded_search(work, a.vectors, a.dim, a.queries, a.shards)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
