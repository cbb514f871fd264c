"""The ``irmin`` command line: the root group and the list of its commands.

Each command group lives in its own module (``cli_store``, ``cli_history``,
...); shared pieces are in ``cli_common`` and ``cli_render``. To add
commands, write a module and add one ``main.add_command(...)`` line below.
"""

from __future__ import annotations

from typing import Any

import click

import irmin
from irmin import contents as contents_mod

from . import cli_branches, cli_history, cli_maint, cli_serve, cli_store, cli_watch, cli_xenstored
from .cli_common import DEFAULT_STORE, Env, IrminGroup, contents_callback


@click.group(cls=IrminGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "uri", envvar="IRMIN_STORE", default=DEFAULT_STORE, show_default=True,
              metavar="URI", help="Store URI: lmdb:DIR, git:DIR, block:DEV, memory: [env IRMIN_STORE].")
@click.option("-b", "--branch", default=irmin.DEFAULT_BRANCH, show_default=True,
              help="Branch to read and write.")
@click.option("--contents", default="bytes", show_default=True, callback=contents_callback,
              metavar="NAME", help="Contents type: " + ", ".join(contents_mod.names()) + ".")
@click.version_option(irmin.__version__, prog_name="irmin")
@click.pass_context
def main(ctx: click.Context, uri: str, branch: str, contents: Any) -> None:
    """Irmin: a Git-format, branchable, content-addressed store."""
    ctx.obj = Env(ctx, uri, branch, contents)


main.add_command(cli_store.init)
main.add_command(cli_store.get)
main.add_command(cli_store.set_)
main.add_command(cli_store.remove)
main.add_command(cli_store.list_)
main.add_command(cli_store.tree)
main.add_command(cli_history.log)
main.add_command(cli_history.diff)
main.add_command(cli_history.dot)
main.add_command(cli_history.revert)
main.add_command(cli_branches.branches)
main.add_command(cli_branches.branch)
main.add_command(cli_branches.merge)
main.add_command(cli_watch.watch)
main.add_command(cli_maint.fsck)
main.add_command(cli_maint.gc)
main.add_command(cli_maint.copy)
main.add_command(cli_maint.snapshot)
main.add_command(cli_serve.serve)
main.add_command(cli_xenstored.xenstored)
