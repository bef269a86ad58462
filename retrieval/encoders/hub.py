"""The model hub (Hugging Face), when weights are not on disk yet.

Offline, huggingface_hub retries every request for about a minute before open_clip or
transformers give up, and prints a warning with a URL for each. xmr asks once, quickly, whether
the hub can be reached at all; when it cannot, this process goes into the hub's offline mode:
weights in the local cache load as usual, and missing ones fail at once with xmr's message.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_reachable: bool | None = None  # asked once per process


def _offline_already() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "TRUE", "YES", "ON")


def go_offline_unless_reachable(timeout: float = 2.0) -> bool:
    """True when the hub can be reached; otherwise switch to offline mode and return False."""
    global _reachable
    if _offline_already():
        return False
    if _reachable is None:
        host = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                _reachable = True
        except OSError as e:
            log.info("the model hub (%s) cannot be reached (%s): using only weights already on disk", host, e)
            _reachable = False
    if not _reachable:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:  # already imported: it read the environment then
            constants.HF_HUB_OFFLINE = True
    return bool(_reachable)


# Hub repositories of specs whose weights can be looked for without importing open_clip (which
# takes seconds): xmr's default, and any `hf-hub:` spec.
KNOWN_REPOS = {("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"}


def cached(repo: str) -> bool:
    """Does the local Hugging Face cache hold a snapshot of `repo`?"""
    from pathlib import Path

    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(p.is_file() for p in snapshots.rglob("*"))


def unavailable(repo: str | None) -> bool:
    """True when `repo`'s weights are neither cached nor downloadable: loading would only fail,
    so the caller can say so at once."""
    return repo is not None and not cached(repo) and not go_offline_unless_reachable()
