"""Values, commits and diffs as the ``irmin`` CLI reads and prints them.

Input: with bytes contents a VALUE is stored exactly as given (argv bytes or
stdin); with string contents as UTF-8 text; with any other contents it is the
value's JSON text (``5`` for a counter, ``["a","b"]`` for a set), or failing
that, the codec's own stored form (validated by decoding it).

Output: raw bytes for bytes contents (``get``), JSON for everything typed;
human listings show bytes as text when they are printable UTF-8 and escaped
otherwise; JSON output shows bytes as a string when UTF-8, else ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from irmin.commit import Commit
from irmin.contents import LWW, Bytes, Contents, String

from .cli_common import CliError

_NOT_JSON = object()


def parse_value(codec: Contents[Any], raw: bytes) -> bytes:
    """The blob to store for a VALUE given on the command line or stdin."""
    try:
        if isinstance(codec, (Bytes, LWW)):
            return codec.encode(raw)
        if isinstance(codec, String):
            return codec.encode(raw.decode("utf-8"))
    except (ValueError, TypeError) as e:
        raise CliError(f"bad {codec.name} value: {e}") from e
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = _NOT_JSON
    if value is not _NOT_JSON:
        try:
            return codec.encode(value)
        except (ValueError, TypeError):
            pass
    try:
        return codec.encode(codec.decode(raw))
    except (ValueError, TypeError) as e:
        raise CliError(f"bad {codec.name} value {raw[:40]!r}: {e}") from e


def to_jsonable(value: Any) -> Any:
    """A decoded value as plain JSON data."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(b).decode("ascii")}
    if isinstance(value, LWW.Value):
        return {"timestamp": value.timestamp, "writer": value.writer,
                "data": to_jsonable(value.data)}
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=lambda v: (isinstance(v, dict), json.dumps(v, sort_keys=True)))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def decode(codec: Contents[Any], raw: bytes, path: str) -> Any:
    try:
        return codec.decode(raw)
    except (ValueError, TypeError) as e:
        raise CliError(f"{path}: cannot decode as {codec.name}: {e}") from e


def value_json(codec: Contents[Any], raw: bytes | None, path: str) -> Any:
    """A stored blob as JSON data (``None`` stays ``None``)."""
    if raw is None:
        return None
    return to_jsonable(decode(codec, raw, path))


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def show_value(codec: Contents[Any], raw: bytes, path: str) -> str:
    """A stored blob on one line for humans."""
    if isinstance(codec, Bytes):
        text = raw.decode("utf-8", "backslashreplace")
        if text.isprintable():
            return text
        return text.encode("unicode_escape").decode("ascii")
    return dumps(value_json(codec, raw, path))


def short(c: Commit) -> str:
    return c.id[:12]


def first_line(c: Commit) -> str:
    lines = c.message.splitlines()
    return lines[0] if lines else ""


def date(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def commit_json(c: Commit) -> dict[str, Any]:
    return c.as_dict()


_SIGN = {"added": "A", "removed": "D", "updated": "M"}


def change_sign(change: str) -> str:
    return _SIGN.get(change, "?")


def change_json(codec_for: Any, change: tuple[tuple[str, ...], str, bytes | None, bytes | None]
                ) -> dict[str, Any]:
    path, kind, old, new = change
    p = "/".join(path)
    codec = codec_for(path)
    return {"path": p, "change": kind, "old": value_json(codec, old, p),
            "new": value_json(codec, new, p)}
