"""``irmin log | diff | dot | revert``: the history of branches."""

from __future__ import annotations

import click

from irmin.history import walk
from irmin.path import show

from .cli_common import Env, info, json_option, pass_env, write_options
from .cli_render import (
    change_json,
    change_sign,
    commit_json,
    date,
    dumps,
    first_line,
    short,
)


@click.command()
@click.option("-n", "--depth", type=click.IntRange(min=1), help="Show at most N commits.")
@click.option("--long", "long_", is_flag=True, help="Show author, date and the whole message.")
@json_option
@pass_env
def log(env: Env, depth: int | None, long_: bool, as_json: bool) -> None:
    """Show the history of the branch, newest first."""
    commits = env.store().history()
    if depth is not None:
        commits = (c for i, c in zip(range(depth), commits, strict=False))
    if as_json:
        click.echo(dumps([commit_json(c) for c in commits]))
        return
    for i, c in enumerate(commits):
        if not long_:
            click.echo(f"{short(c)} {first_line(c)}")
            continue
        if i:
            click.echo()
        click.echo(f"commit {c.id}")
        if len(c.parent_ids) > 1:
            click.echo("Merge: " + " ".join(p.hex()[:12] for p in c.parent_ids))
        click.echo(f"Author: {c.author}")
        click.echo(f"Date:   {date(c.date)}")
        click.echo()
        for line in (c.message.splitlines() or [""]):
            click.echo(f"    {line}")


@click.command()
@click.argument("rev")
@click.argument("rev2", required=False)
@json_option
@pass_env
def diff(env: Env, rev: str, rev2: str | None, as_json: bool) -> None:
    """Show what changed from REV to REV2 (default: the branch head)."""
    store = env.store()
    changes = store.diff(rev, rev2)
    if as_json:
        click.echo(dumps([change_json(env.codec, ch) for ch in changes]))
        return
    for path, kind, _old, _new in changes:
        click.echo(f"{change_sign(kind)}\t{show(path)}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@click.command()
@click.option("-n", "--depth", type=click.IntRange(min=1),
              help="Only commits at most N steps from a branch head.")
@pass_env
def dot(env: Env, depth: int | None) -> None:
    """Print the history of every branch as a Graphviz digraph."""
    repo = env.repo
    heads: dict[bytes, list[str]] = {}
    for name in repo.branches():
        oid = repo.head_id(name)
        if oid is not None:
            heads.setdefault(oid, []).append(name)
    commits = list(walk(repo, [repo.commit(o) for o in heads], depth))
    shown = {c.oid for c in commits}
    out = ["digraph irmin {", "  rankdir=BT;",
           '  node [shape=box, fontname="monospace"];']
    for c in commits:
        label = _quote(f"{short(c)}\n{first_line(c)[:40]}")
        out.append(f"  {_quote(c.id)} [label={label}];")
    for c in commits:
        for p in c.parent_ids:
            if p in shown:
                out.append(f"  {_quote(c.id)} -> {_quote(p.hex())};")
    for oid, names in sorted(heads.items()):
        for name in names:
            node = _quote("branch:" + name)
            out.append(f"  {node} [label={_quote(name)}, shape=ellipse, style=filled, "
                       'fillcolor="lightblue"];')
            out.append(f"  {node} -> {_quote(oid.hex())} [style=dashed];")
    out.append("}")
    click.echo("\n".join(out))


@click.command()
@click.argument("rev")
@write_options
@pass_env
def revert(env: Env, rev: str, message: str, author: str | None) -> None:
    """Commit, on the branch, the tree of REV (history is kept)."""
    store = env.store()
    target = env.repo.resolve(rev)
    c = store.update_tree(lambda _t: target.tree,
                          info(message or f"revert to {short(target)}", author))
    click.echo(short(c) if c is not None else "unchanged", err=c is None)
