"""What every ``irmin`` command module shares: the context object, the
write options and the error boundary.

A command module imports ``pass_env`` and gets an :class:`Env`: the global
options (``--store``, ``--branch``, ``--contents``) and a :class:`~irmin.Repo`
opened on first use, once per run, and closed when the run ends. Commands
raise :class:`irmin.IrminError` (or :class:`CliError`) freely: the root group
turns them into one ``irmin: error: ...`` line on stderr and exit status 1;
click's own usage errors keep status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

import irmin
from irmin.commit import Info
from irmin.contents import Contents
from irmin.objects import Person
from irmin.repo import DEFAULT_BRANCH
from irmin.store import Store

DEFAULT_STORE = "lmdb:.irmin"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure to report as ``irmin: error: <one line>``, exit status 1."""

    def __init__(self, message: str) -> None:
        # One line, whatever the underlying message looked like.
        super().__init__("; ".join(s.strip() for s in str(message).splitlines() if s.strip())
                         or "failed")

    def show(self, file: Any = None) -> None:
        click.echo(f"irmin: error: {self.format_message()}", err=True)


class IrminGroup(click.Group):
    """The root group: the one place where library errors become CLI errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except irmin.IrminError as e:
            raise CliError(str(e)) from e


class Env:
    """The global options of one run, and the store they name (lazily opened)."""

    def __init__(self, ctx: click.Context, uri: str, branch: str, contents: Contents[Any]) -> None:
        self._ctx = ctx
        self.uri = uri
        self.branch = branch
        self.contents = contents
        self._repo: irmin.Repo | None = None

    @property
    def opened(self) -> bool:
        return self._repo is not None

    @property
    def repo(self) -> irmin.Repo:
        if self._repo is None:
            repo = irmin.Repo.open(self.uri, contents=self.contents)
            self._repo = repo
            self._ctx.call_on_close(repo.close)
        return self._repo

    def store(self, *, write: bool = False) -> Store:
        """The store of ``--branch``. Reading a branch that does not exist is
        an error, except for the default branch, which reads as empty until
        its first commit (a fresh store is an empty store). Writing creates
        the branch."""
        repo = self.repo
        s = repo.branch(self.branch)
        if not write and self.branch != DEFAULT_BRANCH and repo.head_id(self.branch) is None:
            raise irmin.BranchNotFound(f"no branch {self.branch!r}")
        return s

    def codec(self, path: tuple[str, ...]) -> Contents[Any]:
        for_path = getattr(self.contents, "for_path", None)
        return for_path(path) if for_path is not None else self.contents


pass_env = click.make_pass_decorator(Env)


def contents_callback(_ctx: click.Context, _param: click.Parameter, name: str) -> Any:
    """``--contents NAME`` → the codec (an unknown name is a usage error)."""
    try:
        return irmin.contents.resolve(name)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _check_author(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            Person.from_string(value, 0)
        except ValueError as e:
            raise click.BadParameter(f"{e}; expected 'Name <email>'") from None
    return value


def write_options(f: F) -> F:
    """``-m/--message`` and ``--author`` (env ``IRMIN_AUTHOR``) for commands that commit."""
    f = click.option("--author", envvar="IRMIN_AUTHOR", callback=_check_author,
                     help="Commit author, 'Name <email>' [env IRMIN_AUTHOR].")(f)
    f = click.option("-m", "--message", default="", help="Commit message.")(f)
    return f


def info(message: str, author: str | None) -> Info:
    return Info(author=author, message=message) if author else Info(message=message)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
