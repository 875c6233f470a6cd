"""Property test: for any valid push, the Rust decoder agrees with the pure-Python reference
on every field of every row."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingestor
from tests import reference_decoder as ref

RECEIVED = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
RECEIVED_US = int(RECEIVED.timestamp()) * 1_000_000 + RECEIVED.microsecond


@st.composite
def decimal_text(draw) -> str:
    places = draw(st.integers(0, 18))
    # Any value DECIMAL(38,18) holds, built from digits so no Decimal context can round it.
    units = draw(st.integers(-(10 ** (20 + places)) + 1, 10 ** (20 + places) - 1))
    digits = str(abs(units)).rjust(places + 1, "0")
    sign = "-" if units < 0 else ""
    text = f"{sign}{digits[: len(digits) - places]}" + (f".{digits[-places:]}" if places else "")
    # Bybit writes "0.50" as often as "0.5": trailing zeros must not matter.
    return text + "0" * draw(st.integers(0, 3)) if "." in text else text


blank_or = lambda s: st.one_of(st.just(""), s)  # noqa: E731
ms_text = st.integers(0, 4_102_444_800_000).map(str)
small_int = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=12)
nonempty_text = st.text(min_size=1, max_size=12)

KIND_VALUES = {
    ref.DEC: blank_or(decimal_text()),
    ref.INT: st.one_of(small_int, small_int.map(str)),
    # Most times are strings of ms; `openTime` is a JSON integer: every time field takes both.
    ref.TS: st.one_of(blank_or(ms_text), st.integers(0, 4_102_444_800_000)),
    ref.STR: text,
    ref.BOOL: st.booleans(),
    ref.SIDE: st.sampled_from(["Buy", "Sell", "", "None"]),
}


@st.composite
def fields(draw, spec: list[tuple[str, str, str]]) -> dict:
    """Any subset of the documented fields (absent ones must come out NULL)."""
    return {key: draw(KIND_VALUES[kind]) for key, _, kind in spec if draw(st.integers(0, 9)) > 0}


@st.composite
def position_element(draw) -> dict:
    element = draw(fields(ref.POSITION_FIELDS + ref.POSITION_EXTRA_FIELDS))
    # The older spellings, alone or beside the current ones.
    kinds = {key: kind for key, _, kind in ref.POSITION_FIELDS}
    for key, old in ref.POSITION_OLD_SPELLINGS.items():
        if draw(st.booleans()):
            element[old] = draw(KIND_VALUES[kinds[key]])
    element.update(
        symbol=draw(nonempty_text),
        category=draw(st.sampled_from(["linear", "inverse", "option"])),
        positionIdx=draw(st.sampled_from([0, 1, 2])),
        updatedTime=draw(ms_text),
        seq=draw(st.integers(-1, 2**62)),
    )
    if draw(st.booleans()):
        element["someNewField"] = draw(st.dictionaries(text, text, max_size=2))
    return element


@st.composite
def wallet_element(draw) -> dict:
    element = draw(fields(ref.WALLET_ACCOUNT_FIELDS))
    element["accountType"] = draw(st.sampled_from(["UNIFIED", "CONTRACT", "SPOT"]))
    coins = draw(
        st.lists(
            fields(ref.WALLET_COIN_FIELDS + ref.WALLET_COIN_EXTRA_FIELDS), min_size=0, max_size=4
        )
    )
    element["coin"] = [{**c, "coin": draw(nonempty_text)} for c in coins]
    return element


@st.composite
def push(draw) -> dict:
    topic = draw(st.sampled_from(["position", "wallet"]))
    elements = position_element() if topic == "position" else wallet_element()
    return {
        "id": draw(text),
        "topic": topic,
        "creationTime": draw(st.integers(0, 4_102_444_800_000)),
        "data": draw(st.lists(elements, min_size=1, max_size=3)),
    }


def ascii_json(value) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def comparable(value):
    """Rust rows carry datetimes; the reference carries µs integers."""
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(push(), min_size=1, max_size=4), st.booleans())
def test_rust_decoder_agrees_with_reference(pushes, escape_unicode):
    # Both JSON spellings of non-ASCII text (raw UTF-8 and \u escapes) must decode alike.
    frames = [ascii_json(p) if escape_unicode else orjson.dumps(p) for p in pushes]
    got = ingestor.decode(frames, account_id="acct-7", received_at=RECEIVED)
    want = ref.decode(frames, "acct-7", RECEIVED_US)
    assert got["rejects"].num_rows == 0, got["rejects"].to_pylist()
    assert want["rejects"] == []
    schemas = ingestor.schemas()
    for table in ("position_snapshots", "wallet_snapshots"):
        rows = got[table].to_pylist()
        assert len(rows) == len(want[table])
        columns = {f.name for f in schemas[table]} - {"raw_json"}
        for row, expected in zip(rows, want[table], strict=True):
            assert set(expected) == columns
            for column in columns:
                assert comparable(row[column]) == expected[column], column
    # raw_json is each element's text exactly, as the frame spells it: on a position's row,
    # and once per wallet element, on its first coin's row (its other coins' rows NULL; an
    # element without coins makes no row).
    spell = ascii_json if escape_unicode else orjson.dumps
    elements = [(e, p["topic"]) for p in pushes for e in p["data"]]
    positions = iter(got["position_snapshots"].column("raw_json").to_pylist())
    wallets = iter(got["wallet_snapshots"].column("raw_json").to_pylist())
    for element, topic in elements:
        if topic == "position":
            assert next(positions) == spell(element).decode()
        else:
            for i, _ in enumerate(element["coin"]):
                assert next(wallets) == (spell(element).decode() if i == 0 else None)
    assert next(positions, "end") == next(wallets, "end") == "end"
