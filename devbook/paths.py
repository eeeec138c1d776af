"""Where the repository and its caches live."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root (the folder holding ``devbook/``)."""
    return Path(__file__).resolve().parent.parent


def cache_dir(*parts: str) -> Path:
    """A folder under the cache (``$DEVBOOK_CACHE`` or ``<repo>/.cache/devbook``), created."""
    base = os.environ.get("DEVBOOK_CACHE")
    root = Path(base) if base else repo_root() / ".cache" / "devbook"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
