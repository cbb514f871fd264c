"""Commits: a tree, its parents and who/when/why (git commit objects)."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .objects import CommitData, Person

if TYPE_CHECKING:
    from .repo import Repo
    from .tree import Tree

DEFAULT_AUTHOR = "irmin <irmin@localhost>"


def default_author() -> str:
    return os.environ.get("IRMIN_AUTHOR", DEFAULT_AUTHOR)


@dataclass(frozen=True)
class Info:
    """Commit metadata given by writers: author (``"Name <email>"``),
    message and date (seconds since the epoch; ``None``: now)."""

    author: str = field(default_factory=default_author)
    message: str = ""
    date: int | None = None

    def person(self) -> Person:
        when = int(time.time()) if self.date is None else int(self.date)
        return _person(self.author, when)


@lru_cache(maxsize=256)
def _person(author: str, when: int) -> Person:
    # Writers commit as the same author, often in the same second.
    return Person.from_string(author, when)


class Commit:
    """A commit read from (or just written to) the store. Parents and tree
    load lazily."""

    __slots__ = ("repo", "oid", "data")

    def __init__(self, repo: Repo, oid: bytes, data: CommitData) -> None:
        self.repo = repo
        self.oid = oid
        self.data = data

    @property
    def id(self) -> str:
        return self.oid.hex()

    @property
    def tree_id(self) -> bytes:
        return self.data.tree

    @property
    def tree(self) -> Tree:
        return self.repo.tree(self.data.tree)

    @property
    def parent_ids(self) -> tuple[bytes, ...]:
        return self.data.parents

    @property
    def parents(self) -> list[Commit]:
        return [self.repo.commit(p) for p in self.data.parents]

    @property
    def author(self) -> str:
        return str(self.data.author)

    @property
    def message(self) -> str:
        return self.data.message

    @property
    def date(self) -> int:
        return self.data.committer.time

    @property
    def info(self) -> Info:
        return Info(self.author, self.message, self.data.author.time)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Commit) and other.oid == self.oid

    def __hash__(self) -> int:
        return hash(self.oid)

    def __repr__(self) -> str:
        first = self.message.splitlines()[0] if self.message else ""
        return f"<Commit {self.id[:12]} {first[:40]!r}>"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tree": self.data.tree.hex(),
            "parents": [p.hex() for p in self.data.parents],
            "author": self.author,
            "committer": str(self.data.committer),
            "date": self.date,
            "message": self.message,
        }
