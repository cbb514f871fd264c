"""Helpers to run the real git CLI in tests, scrubbed of the user's config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Tester",
        GIT_AUTHOR_EMAIL="tester@example.org",
        GIT_COMMITTER_NAME="Tester",
        GIT_COMMITTER_EMAIL="tester@example.org",
    )
    if home is not None:
        env["HOME"] = str(home)
    return env


def git(*args: str, cwd: Path | str, input: bytes | None = None, check: bool = True) -> bytes:
    """Run git and return stdout; raise with stderr on failure."""
    p = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env=git_env()
    )
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout
