"""Code version for lineage: package version and git sha when available."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from bettercat_assets import __version__

GIT_SHA_ENV = "BETTERCAT_GIT_SHA"


@cache
def git_sha() -> str | None:
    """The checkout's commit, or $BETTERCAT_GIT_SHA (set in images built without .git)."""
    if os.environ.get(GIT_SHA_ENV):
        return os.environ[GIT_SHA_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version() -> str:
    """`<package version>+<short sha>` when the sha is known."""
    sha = git_sha()
    return f"{__version__}+{sha[:12]}" if sha else __version__
