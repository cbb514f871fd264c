"""``irmin xenstored``: serve the Xenstore protocol on a store branch."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click


@click.command("xenstored")
@click.option("--socket", "socket_path", default="/var/run/xenstored/socket", show_default=True,
              help="Unix socket to listen on (mode 0600).")
@click.option("--store", default=None, metavar="URI",
              help="Store URI (memory:, lmdb:PATH, git:PATH, block:PATH); default: the "
                   "global --store (IRMIN_STORE, else lmdb:.irmin).")
@click.option("--branch", default="xenstore", show_default=True, help="Branch holding the tree.")
@click.option("--durable/--no-durable", default=None,
              help="Reply to a change only once its commit is written "
                   "(default: on, except for memory: stores).")
@click.option("--commit-interval", type=float, default=None,
              help="Seconds to group changes into one commit (default 0 when durable, 0.02 otherwise).")
@click.option("--domain-dir", default=None,
              help="Directory of per-domain sockets: connecting to DIR/N makes you domain N once "
                   "introduced (default: SOCKET.d).")
@click.option("--quota", "quotas", multiple=True, metavar="NAME=N",
              help="Set a quota for unprivileged domains (nodes, watches, transactions, outstanding, "
                   "transaction-nodes, node-size, path-max, permissions); repeatable.")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.pass_context
def xenstored(ctx: click.Context, socket_path: str, store: str | None, branch: str, durable: bool | None,
              commit_interval: float | None, domain_dir: str | None, quotas: tuple[str, ...],
              verbose: bool) -> None:
    """Serve the Xenstore wire protocol, the tree kept as a store branch."""
    from irmin.server.xenstore.daemon import serve

    from irmin.server.xenstore.quota import Quota

    quota = Quota()
    for q in quotas:
        name, _, val = q.partition("=")
        if not val.isdigit() or not quota.set(name, int(val)):
            raise click.BadParameter(f"bad quota {q!r}", param_hint="--quota")

    if store is None:
        env = ctx.obj
        store = getattr(env, "uri", None) or os.environ.get("IRMIN_STORE") or "lmdb:.irmin"

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="xenstored: %(message)s")

    def ready(server: object) -> None:
        mode = "durable" if server.storage.durable else "grouped"  # type: ignore[attr-defined]
        click.echo(f"xenstored: listening on {socket_path} (store {store}, branch {branch}, {mode} commits)")
        sys.stdout.flush()

    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(serve(socket_path, store, branch, durable=durable, commit_interval=commit_interval,
                         domain_dir=domain_dir, quota=quota, ready=ready))
    else:
        asyncio.run(serve(socket_path, store, branch, durable=durable, commit_interval=commit_interval,
                          domain_dir=domain_dir, quota=quota, ready=ready))
