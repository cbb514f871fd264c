"""Typed contents: codec round trips, decode errors, and the merge laws of each kind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import irmin.contents as contents_mod
from irmin.contents import (
    BYTES, COUNTER, JSON_CONTENTS, LWW, LWW_REGISTER, SET, STRING, ByPath, Contents, Counter,
    MergeConflict, resolve,
)

# Local settings, not a loaded profile: a profile would change other test modules too.
_settings = settings(max_examples=150, deadline=None)

# --------------------------------------------------------------------------- strategies

json_scalars = (st.none() | st.booleans() | st.integers(-(2**60), 2**60)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
int64 = st.integers(-(2**63), 2**63 - 1)
small_ints = st.integers(-(2**40), 2**40)
elements = st.text(max_size=6) | st.binary(max_size=6)
sets = st.frozensets(elements, max_size=6)
writers = st.text(max_size=6).filter(lambda w: "\n" not in w)
lww_values = st.builds(LWW.Value, st.integers(0, 2**64 - 1), writers, st.binary(max_size=8))

# (contents, strategy of values) for every shipped kind
KINDS: list[tuple[Contents[Any], st.SearchStrategy[Any]]] = [
    (BYTES, st.binary()),
    (STRING, st.text()),
    (JSON_CONTENTS, json_values),
    (COUNTER, int64),
    (LWW_REGISTER, lww_values),
    (SET, sets),
]
IDS = [c.name for c, _ in KINDS]


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("contents", "values"), KINDS, ids=IDS)
def test_round_trip(contents: Contents[Any], values: st.SearchStrategy[Any]) -> None:
    @_settings
    @given(values)
    def check(value: Any) -> None:
        data = contents.encode(value)
        assert isinstance(data, bytes)
        assert contents.decode(data) == value
        assert contents.encode(contents.decode(data)) == data   # canonical: one value, one blob

    check()


def test_bytes_is_identity() -> None:
    data = b"\x00\xffraw"
    assert BYTES.encode(data) is data
    assert BYTES.decode(data) is data
    assert BYTES.encode(bytearray(b"ab")) == b"ab"


def test_json_canonical_encoding() -> None:
    assert JSON_CONTENTS.encode({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    # Semantically equal documents are the same blob.
    assert JSON_CONTENTS.encode({"a": 1, "b": 2}) == JSON_CONTENTS.encode({"b": 2, "a": 1})


def test_set_encoding_is_sorted_and_deterministic() -> None:
    data = SET.encode({"b", "a", b"\x01"})
    assert data == b'["a","b",{"b64":"AQ=="}]'
    assert SET.encode(["a", "b", "a", b"\x01"]) == data


def test_counter_encoding_is_decimal_ascii() -> None:
    assert COUNTER.encode(-42) == b"-42"
    assert COUNTER.encode(0) == b"0"


def test_lww_encode_stamps_plain_bytes() -> None:
    reg = LWW(writer="node-a")
    value = reg.decode(reg.encode(b"hello"))
    assert value.writer == "node-a" and value.data == b"hello" and value.timestamp > 0
    assert reg.encode(LWW.Value(7, "w x", b"a\nb")) == b"7 w x\na\nb"
    assert reg.decode(b"7 w x\na\nb") == LWW.Value(7, "w x", b"a\nb")


# --------------------------------------------------------------------------- encode/decode errors


@pytest.mark.parametrize(("contents", "bad"), [
    (BYTES, "text"), (BYTES, 3),
    (STRING, b"bytes"), (STRING, 3),
    (JSON_CONTENTS, {1, 2}), (JSON_CONTENTS, object()), (JSON_CONTENTS, float("nan")),
    (COUNTER, "1"), (COUNTER, 1.0), (COUNTER, True), (COUNTER, 2**63),
    (LWW_REGISTER, "text"), (LWW_REGISTER, LWW.Value(-1, "w", b"")),
    (LWW_REGISTER, LWW.Value(2**64, "w", b"")), (LWW_REGISTER, LWW.Value(1, "a\nb", b"")),
    (SET, "abc"), (SET, {1, 2}), (SET, {"k": "v"}),
])
def test_encode_rejects_wrong_types(contents: Contents[Any], bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        contents.encode(bad)


@pytest.mark.parametrize(("contents", "bad", "says"), [
    (STRING, b"\xff\xfe", "UTF-8"),
    (JSON_CONTENTS, b"{not json", "invalid JSON"),
    (JSON_CONTENTS, b"\xff", "UTF-8"),
    (JSON_CONTENTS, b"NaN", "NaN"),
    (COUNTER, b"12a", "decimal integer"),
    (COUNTER, b"", "decimal integer"),
    (COUNTER, b" 1", "decimal integer"),
    (COUNTER, b"007", "decimal integer"),
    (COUNTER, b"-0", "decimal integer"),
    (COUNTER, b"9223372036854775808", "64-bit"),
    (LWW_REGISTER, b"no header", "timestamp_ns"),
    (LWW_REGISTER, b"12\ndata", "timestamp_ns"),
    (LWW_REGISTER, b"x w\ndata", "timestamp_ns"),
    (LWW_REGISTER, b"1 \xff\ndata", "UTF-8"),
    (LWW_REGISTER, b"18446744073709551616 w\n", "timestamp_ns"),
    (SET, b"{}", "JSON list"),
    (SET, b"[1]", "elements"),
    (SET, b'[{"b64":"!!"}]', "base64"),
    (SET, b"nope", "JSON list"),
])
def test_decode_errors_are_clear_value_errors(contents: Contents[Any], bad: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=contents.name) as info:
        contents.decode(bad)
    assert says in str(info.value)


# --------------------------------------------------------------------------- generic laws

# Kinds whose merge follows the generic rule (Counter does not: equal increments add up).
IDEMPOTENT = [k for k in KINDS if k[0] is not COUNTER]


@pytest.mark.parametrize(("contents", "values"), KINDS, ids=IDS)
def test_one_side_changed_takes_that_side(contents: Contents[Any], values: st.SearchStrategy[Any]) -> None:
    @_settings
    @given(opt(values), opt(values))
    def check(base: Any, x: Any) -> None:
        b = None if base is None else contents.encode(base)
        xb = None if x is None else contents.encode(x)
        assert contents.merge(b, b, xb) == xb
        assert contents.merge(b, xb, b) == xb

    check()


@pytest.mark.parametrize(("contents", "values"), IDEMPOTENT, ids=[k[0].name for k in IDEMPOTENT])
def test_both_sides_agree_is_idempotent(contents: Contents[Any], values: st.SearchStrategy[Any]) -> None:
    @_settings
    @given(opt(values), opt(values))
    def check(base: Any, x: Any) -> None:
        b = None if base is None else contents.encode(base)
        xb = None if x is None else contents.encode(x)
        assert contents.merge(b, xb, xb) == xb

    check()


@pytest.mark.parametrize(("contents", "values"), KINDS, ids=IDS)
def test_merge_is_symmetric(contents: Contents[Any], values: st.SearchStrategy[Any]) -> None:
    """merge(b, x, y) and merge(b, y, x) agree, or both conflict (JSON reasons may differ in order)."""
    @_settings
    @given(opt(values), opt(values), opt(values))
    def check(base: Any, x: Any, y: Any) -> None:
        b, xb, yb = (None if v is None else contents.encode(v) for v in (base, x, y))
        try:
            one = contents.merge(b, xb, yb)
        except MergeConflict:
            with pytest.raises(MergeConflict):
                contents.merge(b, yb, xb)
            return
        assert contents.merge(b, yb, xb) == one

    check()


@pytest.mark.parametrize("contents", [BYTES, STRING])
def test_opaque_kinds_conflict_when_both_change(contents: Contents[Any]) -> None:
    enc = contents.encode
    v = (b"base", b"ours", b"theirs") if contents is BYTES else ("base", "ours", "theirs")
    with pytest.raises(MergeConflict) as info:
        contents.merge(enc(v[0]), enc(v[1]), enc(v[2]))
    assert contents.name in info.value.reason
    with pytest.raises(MergeConflict):       # delete vs change
        contents.merge(enc(v[0]), None, enc(v[2]))
    with pytest.raises(MergeConflict):       # added on both sides, differently
        contents.merge(None, enc(v[1]), enc(v[2]))


def test_bytes_merge_cases() -> None:
    assert BYTES.merge(b"a", b"a", b"b") == b"b"
    assert BYTES.merge(b"a", b"b", b"a") == b"b"
    assert BYTES.merge(b"a", None, b"a") is None
    assert BYTES.merge(None, b"x", b"x") == b"x"
    assert BYTES.merge(None, None, None) is None


# --------------------------------------------------------------------------- counter


@_settings
@given(small_ints, small_ints, small_ints)
def test_counter_merge_sums_changes(base: int, ours: int, theirs: int) -> None:
    merged = COUNTER.merge(COUNTER.encode(base), COUNTER.encode(ours), COUNTER.encode(theirs))
    assert merged is not None and COUNTER.decode(merged) == base + (ours - base) + (theirs - base)


@_settings
@given(small_ints, small_ints)
def test_counter_absent_base_counts_as_zero(ours: int, theirs: int) -> None:
    merged = COUNTER.merge(None, COUNTER.encode(ours), COUNTER.encode(theirs))
    assert merged is not None and COUNTER.decode(merged) == ours + theirs


def test_counter_equal_increments_both_count() -> None:
    assert COUNTER.merge(b"5", b"6", b"6") == b"7"


def test_counter_deletion() -> None:
    assert COUNTER.merge(b"5", None, b"5") is None       # deleted, other side untouched
    assert COUNTER.merge(b"5", None, None) is None
    with pytest.raises(MergeConflict, match="deleted"):
        COUNTER.merge(b"5", None, b"6")
    with pytest.raises(MergeConflict, match="deleted"):
        COUNTER.merge(b"5", b"6", None)


def test_counter_overflow_is_a_conflict() -> None:
    top = COUNTER.encode(2**63 - 1)
    with pytest.raises(MergeConflict, match="overflow"):
        COUNTER.merge(b"0", top, top)


def test_counter_merge_of_undecodable_blob_is_a_conflict() -> None:
    with pytest.raises(MergeConflict, match="cannot decode ours"):
        COUNTER.merge(b"1", b"oops", b"2")


# --------------------------------------------------------------------------- set


@_settings
@given(sets, sets, sets)
def test_set_merge_applies_additions_and_removals_of_both(base: frozenset[Any], ours: frozenset[Any],
                                                         theirs: frozenset[Any]) -> None:
    merged = SET.merge(SET.encode(base), SET.encode(ours), SET.encode(theirs))
    assert merged is not None
    result = SET.decode(merged)
    added = (ours - base) | (theirs - base)
    removed = (base - ours) | (base - theirs)
    assert result == (base | added) - removed
    assert added <= result and not (removed & result)


def test_set_merge_example() -> None:
    merged = SET.merge(SET.encode({"a", "b", "c"}), SET.encode({"a", "b", "x"}), SET.encode({"b", "c", b"y"}))
    assert merged is not None and SET.decode(merged) == {"b", "x", b"y"}
    assert SET.decode(SET.merge(None, SET.encode({"a"}), SET.encode({"b"})) or b"") == {"a", "b"}
    with pytest.raises(MergeConflict, match="deleted"):
        SET.merge(SET.encode({"a"}), None, SET.encode({"a", "b"}))


# --------------------------------------------------------------------------- json


def j(value: Any) -> bytes:
    return JSON_CONTENTS.encode(value)


def merge_json(base: Any, ours: Any, theirs: Any) -> Any:
    result = JSON_CONTENTS.merge(j(base), j(ours), j(theirs))
    return None if result is None else json.loads(result)


def test_json_per_key_merge() -> None:
    base = {"a": 1, "b": 2, "c": 3}
    assert merge_json(base, {"a": 10, "b": 2, "c": 3}, {"a": 1, "b": 20}) == {"a": 10, "b": 20}
    # added on both sides with equal values
    assert merge_json({}, {"k": [1, 2]}, {"k": [1, 2], "z": None}) == {"k": [1, 2], "z": None}


def test_json_nested_merge() -> None:
    base = {"cfg": {"net": {"mtu": 1500, "ip": "10.0.0.1"}, "name": "vm"}}
    ours = {"cfg": {"net": {"mtu": 9000, "ip": "10.0.0.1"}, "name": "vm"}}
    theirs = {"cfg": {"net": {"mtu": 1500, "ip": "10.0.0.2"}, "name": "vm", "new": True}}
    assert merge_json(base, ours, theirs) == {
        "cfg": {"net": {"mtu": 9000, "ip": "10.0.0.2"}, "name": "vm", "new": True}}


def test_json_conflict_names_the_key_path() -> None:
    base = {"cfg": {"net": {"mtu": 1500}}, "x": 1}
    with pytest.raises(MergeConflict) as info:
        merge_json(base, {"cfg": {"net": {"mtu": 9000}}, "x": 1}, {"cfg": {"net": {"mtu": 1400}}, "x": 1})
    assert "/cfg/net/mtu" in info.value.reason
    assert info.value.key_path == ("cfg", "net", "mtu")


def test_json_conflict_lists_every_conflicting_key_and_escapes_pointers() -> None:
    with pytest.raises(MergeConflict) as info:
        merge_json({"a/b": 0, "c": 0}, {"a/b": 1, "c": 1}, {"a/b": 2, "c": 2})
    assert "'/a~1b'" in info.value.reason and "'/c'" in info.value.reason


def test_json_delete_vs_change_conflicts() -> None:
    with pytest.raises(MergeConflict, match="/k"):
        merge_json({"k": 1}, {}, {"k": 2})
    assert merge_json({"k": 1, "o": 0}, {"o": 0}, {"k": 1, "o": 5}) == {"o": 5}


def test_json_null_is_not_absent() -> None:
    # A key set to null on one side while deleted on the other is a real conflict.
    with pytest.raises(MergeConflict, match="/k"):
        merge_json({"k": 1}, {"k": None}, {})
    # A blob holding JSON null is a value, not a deletion.
    assert JSON_CONTENTS.merge(j(1), b"null", j(1)) == b"null"


def test_json_non_dict_values_follow_the_generic_rule() -> None:
    assert merge_json([1], [1], [1, 2]) == [1, 2]
    with pytest.raises(MergeConflict, match="whole document"):
        merge_json([1], [2], [3])
    with pytest.raises(MergeConflict, match="/l"):
        merge_json({"l": [1]}, {"l": [2]}, {"l": [3]})


def test_json_one_and_true_are_different_values() -> None:
    with pytest.raises(MergeConflict):
        merge_json({"k": 0}, {"k": 1}, {"k": True})


def test_json_merge_accepts_non_canonical_blobs() -> None:
    base = b'{ "a" : 1, "b" : 2 }'
    assert JSON_CONTENTS.merge(base, b'{"b":2, "a":1}', b'{"a":1,"b":3}') == b'{"a":1,"b":3}'


def test_json_merge_values_hook() -> None:
    assert JSON_CONTENTS.merge_values({"a": 1}, {"a": 2}, {"a": 1, "b": 1}) == {"a": 2, "b": 1}


# --------------------------------------------------------------------------- lww


def test_lww_greatest_timestamp_then_writer_wins() -> None:
    reg = LWW_REGISTER
    base = reg.encode(LWW.Value(1, "a", b"base"))
    older = reg.encode(LWW.Value(5, "z", b"older"))
    newer = reg.encode(LWW.Value(6, "a", b"newer"))
    assert reg.merge(base, older, newer) == newer
    assert reg.merge(base, newer, older) == newer
    tie_a = reg.encode(LWW.Value(9, "a", b"x"))
    tie_b = reg.encode(LWW.Value(9, "b", b"y"))
    assert reg.merge(base, tie_a, tie_b) == tie_b == reg.merge(base, tie_b, tie_a)


def test_lww_one_sided_change_wins_even_with_an_older_clock() -> None:
    base = LWW_REGISTER.encode(LWW.Value(100, "a", b"base"))
    skewed = LWW_REGISTER.encode(LWW.Value(50, "b", b"later write, slow clock"))
    assert LWW_REGISTER.merge(base, base, skewed) == skewed


def test_lww_write_beats_concurrent_delete() -> None:
    base = LWW_REGISTER.encode(LWW.Value(1, "a", b"base"))
    write = LWW_REGISTER.encode(LWW.Value(2, "b", b"w"))
    assert LWW_REGISTER.merge(base, None, write) == write
    assert LWW_REGISTER.merge(base, write, None) == write
    assert LWW_REGISTER.merge(base, None, base) is None


@_settings
@given(opt(lww_values), opt(lww_values), opt(lww_values))
def test_lww_never_conflicts_and_is_commutative(base: Any, x: Any, y: Any) -> None:
    b, xb, yb = (None if v is None else LWW_REGISTER.encode(v) for v in (base, x, y))
    merged = LWW_REGISTER.merge(b, xb, yb)
    assert merged == LWW_REGISTER.merge(b, yb, xb)
    assert merged in (xb, yb)
    if xb is not None and yb is not None and xb != b and yb != b:
        assert LWW_REGISTER.decode(merged) == max(x, y)   # type: ignore[arg-type]


def test_lww_merge_values() -> None:
    a, b = LWW.Value(1, "a", b"1"), LWW.Value(2, "a", b"2")
    assert LWW_REGISTER.merge_values(None, a, b) == b
    assert LWW_REGISTER.merge_values(a, None, b) == b


# --------------------------------------------------------------------------- per path, names, extension


def test_by_path_longest_prefix_wins() -> None:
    chooser = ByPath({"counters": COUNTER, "counters/special": SET, "docs/": JSON_CONTENTS}, STRING)
    assert chooser.for_path(("counters", "x")) is COUNTER
    assert chooser.for_path(("counters",)) is COUNTER
    assert chooser.for_path(("counters", "special", "y")) is SET
    assert chooser.for_path(("counters", "specialx")) is COUNTER
    assert chooser.for_path(("counters2", "x")) is STRING     # whole segments only
    assert chooser.for_path(("docs", "a", "b")) is JSON_CONTENTS
    assert chooser.for_path(()) is STRING
    assert chooser.for_path("counters/special/z") is SET       # a str path is split, not sliced


def test_by_path_defaults() -> None:
    assert ByPath({}).for_path(("a",)) is BYTES
    assert ByPath({"": JSON_CONTENTS}).for_path(("a",)) is JSON_CONTENTS


def test_resolve_names() -> None:
    assert resolve("bytes") is BYTES
    assert resolve("string") is STRING
    assert resolve("json") is JSON_CONTENTS
    assert resolve("counter") is COUNTER
    assert resolve("lww") is LWW_REGISTER
    assert resolve("set") is SET
    with pytest.raises(ValueError, match="unknown contents 'nope'.*bytes"):
        resolve("nope")


class MaxInt(Contents[int]):
    """The module docstring's extension example: merge keeps the larger value."""

    name = "max-int"

    def encode(self, value: int) -> bytes:
        if type(value) is not int:
            raise TypeError("max-int expects an int")
        return str(value).encode("ascii")

    def decode(self, data: bytes) -> int:
        try:
            return int(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"max-int: not a decimal integer: {data[:40]!r}") from e

    def merge_values(self, base: int | None, ours: int | None, theirs: int | None) -> int | None:
        if ours is None or theirs is None:
            raise MergeConflict("max-int: deleted on one side, changed on the other")
        return max(ours, theirs)


def test_user_defined_contents_and_register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contents_mod, "_registry", dict(contents_mod._registry))
    m = MaxInt()
    assert m.merge(b"1", b"5", b"3") == b"5"
    assert m.merge(b"1", b"1", b"3") == b"3"                 # generic rule runs first
    with pytest.raises(MergeConflict, match="cannot decode theirs"):
        m.merge(b"1", b"2", b"x")
    contents_mod.register(m)
    assert resolve("max-int") is m


def test_default_merge_values_conflicts() -> None:
    class Plain(Contents[bytes]):
        name = "plain"

        def encode(self, value: bytes) -> bytes:
            return value

        def decode(self, data: bytes) -> bytes:
            return data

    with pytest.raises(MergeConflict, match="plain"):
        Plain().merge(b"a", b"b", b"c")


def test_merge_conflict_is_plain_exception_with_reason() -> None:
    err = MergeConflict("why")
    assert err.reason == "why" and str(err) == "why" and err.key_path == ()
    from irmin.backends.errors import IrminError
    assert not isinstance(err, IrminError)


def test_exported_members() -> None:
    for name in contents_mod.__all__:
        assert hasattr(contents_mod, name), name
    assert isinstance(Counter(), Contents)
