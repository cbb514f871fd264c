"""``irmin init | get | set | remove | list | tree``: the contents of a branch."""

from __future__ import annotations

import os
import sys

import click

from irmin.backends.block import format_block, parse_size
from irmin.backends.errors import StoreError
from irmin.backends.registry import parse_uri
from irmin.path import parse, show

from .cli_common import CliError, Env, info, json_option, pass_env, write_options
from .cli_render import decode, dumps, parse_value, show_value, short, to_jsonable, value_json


@click.command()
@click.option("--force", is_flag=True, help="block: re-format a device that holds data.")
@click.option("--size", help="block: size of a new image file (e.g. 64M).")
@click.option("--sector-size", type=int, help="block: sector size to format with.")
@pass_env
def init(env: Env, force: bool, size: str | None, sector_size: int | None) -> None:
    """Create the store (format a block device), or open an existing one."""
    scheme, path, params = parse_uri(env.uri)
    if scheme == "block":
        if not path:
            raise CliError("block: needs a path, e.g. block:/dev/loop0 or block:store.img")
        size = size or params.get("size")
        if sector_size is None and "sector_size" in params:
            sector_size = int(params["sector_size"])
        try:
            format_block(path, size=parse_size(size) if size else None,
                         sector_size=sector_size, force=force)
        except StoreError as e:  # speak in CLI options, not keyword arguments
            msg = str(e).replace("without force=True", "without --force")
            raise CliError(msg.replace("give size= to", "give --size to")) from e
        click.echo(f"formatted {path} as an empty irmin block store")
    elif force or size or sector_size:
        raise click.UsageError("--force, --size and --sector-size only apply to block: stores")
    existed = scheme in ("lmdb", "git") and os.path.isdir(path) and bool(os.listdir(path))
    repo = env.repo
    n = len(repo.branches())
    if scheme != "block":
        what = "opened existing" if existed else "created empty"
        extra = f" ({n} branch{'es' if n != 1 else ''})" if existed else ""
        click.echo(f"{what} store {repo.backend.uri}{extra}")


@click.command()
@click.argument("path")
@pass_env
def get(env: Env, path: str) -> None:
    """Print the value at PATH (raw bytes; JSON for typed contents)."""
    steps = parse(path)
    raw = env.store().tree().get(steps)
    codec = env.codec(steps)
    if codec.name == "bytes":
        out = sys.stdout.buffer
        out.write(raw)
        out.flush()
    else:
        click.echo(dumps(to_jsonable(decode(codec, raw, show(steps)))))


@click.command("set")
@click.argument("path")
@click.argument("value")
@write_options
@pass_env
def set_(env: Env, path: str, value: str, message: str, author: str | None) -> None:
    """Set PATH to VALUE (`-`: read it from stdin) and commit."""
    steps = parse(path)
    if not steps:
        raise CliError("cannot set the root; give a path")
    raw = sys.stdin.buffer.read() if value == "-" else os.fsencode(value)
    blob = parse_value(env.codec(steps), raw)
    store = env.store(write=True)
    c = store.update_tree(lambda t: t.set(steps, blob),
                          info(message or f"set {show(steps)}", author))
    click.echo(short(c) if c is not None else "unchanged", err=c is None)


@click.command()
@click.argument("path")
@write_options
@pass_env
def remove(env: Env, path: str, message: str, author: str | None) -> None:
    """Remove the value or subtree at PATH and commit."""
    steps = parse(path)
    store = env.store(write=True)
    if store.tree().kind(steps) is None:
        raise CliError(f"nothing at {show(steps) or '/'}")
    c = store.update_tree(lambda t: t.remove(steps), info(message or f"remove {show(steps)}", author))
    click.echo(short(c) if c is not None else "unchanged", err=c is None)


@click.command("list")
@click.argument("path", default="")
@json_option
@pass_env
def list_(env: Env, path: str, as_json: bool) -> None:
    """List the children of PATH (directories end with /)."""
    steps = parse(path)
    tree = env.store().tree()
    if steps and tree.kind(steps) != "node":
        raise CliError(f"no directory at {show(steps)}")
    entries = tree.list(steps)
    if as_json:
        click.echo(dumps([{"name": n, "kind": k} for n, k in entries]))
        return
    for name, kind in entries:
        click.echo(name + ("/" if kind == "node" else ""))


@click.command()
@click.argument("path", default="")
@json_option
@pass_env
def tree(env: Env, path: str, as_json: bool) -> None:
    """Print every `path = value` below PATH."""
    steps = parse(path)
    root = env.store().tree()
    kind = root.kind(steps)
    if kind is None:
        if steps:
            raise CliError(f"nothing at {show(steps)}")
        items = []
    elif kind == "contents":
        items = [(steps, root.get(steps))]
    else:
        items = list(root.get_tree(steps).walk(prefix=steps) if steps else root.walk())
    if as_json:
        click.echo(dumps({show(p): value_json(env.codec(p), v, show(p)) for p, v in items}))
        return
    for p, v in items:
        click.echo(f"{show(p)} = {show_value(env.codec(p), v, show(p))}")
