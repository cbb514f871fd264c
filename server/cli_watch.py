"""``irmin watch``: one line per head change of a branch, until Ctrl-C."""

from __future__ import annotations

import queue

import click

from irmin.path import parse, show
from irmin.watch import WatchEvent

from .cli_common import Env, json_option, pass_env
from .cli_render import change_json, change_sign, dumps, first_line, short


def _line(env: Env, ev: WatchEvent, as_json: bool) -> str:
    if as_json:
        return dumps({
            "branch": ev.branch,
            "old": ev.old.id if ev.old else None,
            "new": ev.new.id if ev.new else None,
            "message": ev.new.message if ev.new else None,
            "diff": [change_json(env.codec, ch) for ch in ev.diff],
        })
    head = short(ev.new) if ev.new else "deleted"
    changes = " ".join(f"{change_sign(kind)}:{show(p)}" for p, kind, _o, _n in ev.diff)
    msg = f" ({first_line(ev.new)})" if ev.new and first_line(ev.new) else ""
    return f"{ev.branch} {head}{msg} {changes}".rstrip()


@click.command()
@click.argument("path", default="")
@click.option("--count", type=click.IntRange(min=1), help="Exit after N events.")
@json_option
@pass_env
def watch(env: Env, path: str, count: int | None, as_json: bool) -> None:
    """Print each change of the branch head (below PATH), with its diff.

    Changes made by other processes are seen too. Runs until Ctrl-C, or
    until --count events were printed.
    """
    prefix = parse(path)
    events: queue.Queue[WatchEvent] = queue.Queue()
    store = env.repo.branch(env.branch)
    handle = store.watch(events.put, prefix)
    seen = 0
    try:
        while count is None or seen < count:
            try:
                ev = events.get(timeout=0.5)  # wake up now and then so Ctrl-C is prompt
            except queue.Empty:
                continue
            click.echo(_line(env, ev, as_json))
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
