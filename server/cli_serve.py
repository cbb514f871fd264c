"""``irmin serve``: the HTTP server (REST, watch streams, git smart HTTP).

    irmin serve [--store URI] [--http HOST:PORT] [--auth-file tokens.json]
                [--anonymous read|write|none]

Runs FastAPI on uvicorn, one access-log line per request, and stops
gracefully on SIGTERM/SIGINT (in-flight requests finish, the store is
closed). Tokens also come from ``IRMIN_TOKENS`` (``TOKEN:scope,...``).
Also runnable without the root group: ``python -m irmin.server.cli_serve``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import click

import irmin

from .auth import SCOPES, Tokens
from .cli_common import DEFAULT_STORE
from .config import ServerConfig


def _hostport(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(uri: str, host: str, port: int, config: ServerConfig, *, contents: Any = None,
        log_level: str = "info") -> None:
    """Open ``uri`` and serve it until SIGTERM/SIGINT."""
    import uvicorn

    from .http_app import create_app

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kwargs = {"contents": contents} if contents is not None else {}
    repo = irmin.Repo.open(uri, **kwargs)
    app = create_app(repo, config, close_repo=True)
    config_ = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=True,
                             timeout_graceful_shutdown=10, proxy_headers=False)
    _Server(config_).run()


class _Server:
    """uvicorn's server, exiting with status 0 after a graceful SIGTERM/SIGINT
    shutdown (uvicorn re-raises the signal, so the process would die of it)."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for s, h in old.items():
                        signal.signal(s, h)

        self.server = Quiet(config)

    def run(self) -> None:
        self.server.run()


@click.command()
@click.option("--store", "uri", default=None, metavar="URI",
              help=f"Store URI (default: the root --store, else {DEFAULT_STORE}).")
@click.option("--http", "http", default="127.0.0.1:8080", show_default=True,
              callback=_hostport, metavar="HOST:PORT", help="Address to listen on.")
@click.option("--auth-file", type=click.Path(exists=True, dir_okay=False),
              help="JSON file of tokens: {\"TOKEN\": \"read\"|\"write\"}.")
@click.option("--anonymous", type=click.Choice(SCOPES), default="read", show_default=True,
              help="Scope of requests without a token (none: closed).")
@click.option("--max-body", type=click.IntRange(min=1), default=16 * 1024 * 1024,
              show_default=True, help="Largest REST request body, bytes.")
@click.option("--max-push", type=click.IntRange(min=1), default=1024 * 1024 * 1024,
              show_default=True, help="Largest git push, bytes.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a REST request may take.")
@click.option("--watch-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Events buffered per watch client before it is told to resync.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.pass_context
def serve(ctx: click.Context, uri: str | None, http: tuple[str, int], auth_file: str | None,
          anonymous: str, max_body: int, max_push: int, timeout: float, watch_queue: int,
          log_level: str) -> None:
    """Serve the store over HTTP: REST at /api, git at /git, docs at /docs."""
    env = ctx.obj  # the root group's Env, when run as `irmin serve`
    contents = getattr(env, "contents", None)
    uri = uri or getattr(env, "uri", None) or DEFAULT_STORE
    try:
        tokens = Tokens.load(auth_file, anonymous=anonymous)
    except (OSError, ValueError, KeyError) as e:
        raise click.BadParameter(str(e), param_hint="--auth-file/IRMIN_TOKENS") from None
    config = ServerConfig(max_body=max_body, max_push=max_push, request_timeout=timeout,
                          watch_queue=watch_queue, tokens=tokens)
    host, port = http
    click.echo(f"irmin: serving {uri} on http://{host}:{port} (git: http://{host}:{port}/git)",
               err=True)
    run(uri, host, port, config, contents=contents, log_level=log_level)


if __name__ == "__main__":
    serve()
