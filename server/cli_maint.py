"""``irmin fsck | gc | copy | snapshot``: maintenance of a whole store.

Progress bars go to stderr when it is a terminal (``-q`` silences them,
``--progress`` forces them). ``fsck`` exits 0 when the store is clean and 1
when objects are missing or corrupt (dangling objects are reported, not
failed).
"""

from __future__ import annotations

import json

import click

from irmin.copy import copy as copy_store
from irmin.copy import snapshot as snapshot_store
from irmin.fsck import fsck as fsck_store
from irmin.gc import gc as gc_store

from .cli_common import Env, json_option, pass_env

_MAX_LISTED = 50


def _progress_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--progress/--no-progress", "progress", default=None,
                     help="Show a progress bar (default: when stderr is a terminal).")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
    return f


def _show(quiet: bool, progress: bool | None) -> bool | None:
    return False if quiet else progress


@click.command()
@click.option("--no-dangling", is_flag=True, help="Do not list dangling objects (skips listing every id).")
@click.option("-v", "--verbose", is_flag=True, help="List every problem (default: the first 50).")
@json_option
@_progress_options
@pass_env
def fsck(env: Env, no_dangling: bool, verbose: bool, as_json: bool, quiet: bool,
         progress: bool | None) -> None:
    """Check every object reachable from every ref: present, re-hashing to
    its id, of the right kind. Exit status 0: clean, 1: not."""
    report = fsck_store(env.repo, dangling=not no_dangling, progress=_show(quiet, progress))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        limit = None if verbose else _MAX_LISTED
        for label, items in (("missing", report.missing), ("corrupt", report.corrupt)):
            for p in items[:limit]:
                click.echo(f"{label} {p}")
            if limit is not None and len(items) > limit:
                click.echo(f"... and {len(items) - limit} more {label} (use -v)")
        for d in report.dangling[:limit]:
            click.echo(f"dangling {d}")
        if limit is not None and len(report.dangling) > limit:
            click.echo(f"... and {len(report.dangling) - limit} more dangling (use -v)")
        click.echo(report.summary())
    raise SystemExit(0 if report.clean else 1)


@click.command()
@click.option("--keep-last", type=click.IntRange(min=1), metavar="N",
              help="Keep only the newest N commits of each branch (history before them is cut; "
                   "the cut is recorded so fsck stays exact).")
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be removed; change nothing.")
@json_option
@_progress_options
@pass_env
def gc(env: Env, keep_last: int | None, dry_run: bool, as_json: bool, quiet: bool,
       progress: bool | None) -> None:
    """Remove objects no ref reaches (safe while others read and write)."""
    stats = gc_store(env.repo, keep_last=keep_last, dry_run=dry_run,
                     progress=_show(quiet, progress))
    if as_json:
        click.echo(json.dumps(stats.__dict__, indent=2))
    else:
        click.echo(stats.summary())


@click.command()
@click.argument("src", metavar="SRC_URI")
@click.argument("dst", metavar="DST_URI")
@click.option("--batch", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Objects per write.")
@_progress_options
def copy(src: str, dst: str, batch: int, quiet: bool, progress: bool | None) -> None:
    """Copy a whole store (objects, then refs) from SRC_URI to DST_URI.
    Interrupted? Run it again: it resumes where it stopped."""
    stats = copy_store(src, dst, batch=batch, progress=_show(quiet, progress))
    click.echo(stats.summary())


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[REV] DST_URI")
@click.option("--to-branch", help="Branch to write in DST (default: REV's branch, or main).")
@_progress_options
@pass_env
def snapshot(env: Env, args: tuple[str, ...], to_branch: str | None, quiet: bool,
             progress: bool | None) -> None:
    """Write the tree of REV (default: --branch) as a single-commit store at DST_URI."""
    if len(args) > 2:
        raise click.UsageError("expected [REV] DST_URI")
    rev, dst = (args[0], args[1]) if len(args) == 2 else (env.branch, args[0])
    stats = snapshot_store(env.repo, rev, dst, branch=to_branch,
                           progress=_show(quiet, progress))
    click.echo(stats.summary())
