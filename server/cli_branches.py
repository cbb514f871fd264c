"""``irmin branches | branch create/delete | merge``."""

from __future__ import annotations

import click

import irmin

from .cli_common import CliError, Env, json_option, pass_env, write_options
from .cli_render import dumps, short


@click.command()
@json_option
@pass_env
def branches(env: Env, as_json: bool) -> None:
    """List branches with their heads (* marks --branch)."""
    repo = env.repo
    rows = [(name, repo.head_id(name)) for name in repo.branches()]
    if as_json:
        click.echo(dumps([{"name": n, "head": h.hex() if h else None} for n, h in rows]))
        return
    for name, head in rows:
        mark = "*" if name == env.branch else " "
        click.echo(f"{mark} {name} {head.hex()[:12] if head else '-'}")


@click.group()
def branch() -> None:
    """Create or delete branches."""


@branch.command()
@click.argument("name")
@click.option("--from", "rev", metavar="REV",
              help="Commit or branch to start from (default: the head of --branch).")
@pass_env
def create(env: Env, name: str, rev: str | None) -> None:
    """Create branch NAME."""
    repo = env.repo
    if rev is None:
        head = repo.head_id(env.branch)
        if head is None:
            raise irmin.BranchNotFound(f"branch {env.branch!r} has no commits to start from; "
                                       "use --from REV")
        start = repo.commit(head)
    else:
        start = repo.resolve(rev)
    if repo.head_id(name) is not None:
        raise CliError(f"branch {name!r} already exists")
    try:
        repo.create_branch(name, start)
    except ValueError as e:   # lost a race with another creator
        if isinstance(e, irmin.IrminError):
            raise
        raise CliError(str(e)) from e
    click.echo(f"{name} {short(start)}")


@branch.command()
@click.argument("name")
@pass_env
def delete(env: Env, name: str) -> None:
    """Delete branch NAME (its commits stay until gc)."""
    env.repo.delete_branch(name)
    click.echo(f"deleted {name}")


@click.command()
@click.argument("source", metavar="FROM")
@write_options
@pass_env
def merge(env: Env, source: str, message: str, author: str | None) -> None:
    """Merge branch or commit FROM into --branch."""
    repo = env.repo
    store = env.store(write=True)
    theirs = repo.resolve(source)
    before = store.head_id()
    msg = message or f"merge {source} into {env.branch}"
    try:
        result = store.merge(theirs, msg, author=author)
    except irmin.ConflictError as e:
        paths = ", ".join(c.path_str or "/" for c in e.conflicts[:10]) or str(e)
        if len(e.conflicts) > 10:
            paths += f" (+{len(e.conflicts) - 10} more)"
        raise CliError(f"merge conflict merging {source} into {env.branch} at {paths}; "
                       "nothing was written") from e
    if result.oid == before:
        click.echo("already up to date")
    elif result.oid == theirs.oid:
        click.echo(f"fast-forward to {short(result)}")
    else:
        click.echo(f"merged {source} into {env.branch}: {short(result)}")
