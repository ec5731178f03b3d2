"""``codec.decode_all``, the batch path's decode (the compiled ``decode_each`` and the Python
that stands in for it), against a value-by-value decode: the same event or None for every
value, whichever values of a batch are None (tombstones), longer than the cap, not JSON or
not an event, and wherever they lie; an exception that is not a decode failure goes
through."""

from __future__ import annotations

import random

import msgspec
import pytest

from monitor.events.codec import DECODE_ERRORS, decode_all

pytestmark = pytest.mark.usefixtures("kernels")


class _Event(msgspec.Struct, frozen=True):
    a: int


_DECODER = msgspec.json.Decoder(_Event)
_VALUES: list[bytes | None] = [None, b'{"a":1}', b'{"a":12345678}', b'{"a":"x"}', b"", b"not",
                               b"[]", b'{"a":3}']  # fmt: skip


def _one_by_one(values: list[bytes | None], cap: int | None) -> list[_Event | None]:
    out: list[_Event | None] = []
    for v in values:
        if v is None or (cap is not None and len(v) > cap):
            out.append(None)
            continue
        try:
            out.append(_DECODER.decode(v))
        except DECODE_ERRORS:
            out.append(None)
    return out


@pytest.mark.parametrize("cap", [None, 0, 7, 8, 100])
def test_decode_all_equals_a_decode_of_each_value(cap: int | None) -> None:
    rng = random.Random(cap)
    for _ in range(3000):
        values = [rng.choice(_VALUES) for _ in range(rng.randint(0, 12))]
        got = decode_all(_DECODER, values, cap)
        assert got == _one_by_one(values, cap), (values, cap)


def test_decode_all_passes_over_nulls_and_long_values_in_place() -> None:
    values: list[bytes | None] = [None, b'{"a":1}', b'{"a":22}', None, None, b'{"a":333}', None]
    assert decode_all(_DECODER, values, 8) == [None, _Event(1), _Event(22), None, None, None,
                                               None]  # fmt: skip
    assert decode_all(_DECODER, values) == [None, _Event(1), _Event(22), None, None,
                                            _Event(333), None]  # fmt: skip
    assert decode_all(_DECODER, [None, None], 8) == [None, None]
    assert decode_all(_DECODER, [], 8) == []


class _Broken:
    """A decoder whose ``decode`` fails otherwise than a decoder does on bad input."""

    def decode(self, value: bytes) -> None:
        raise KeyError(value)


def test_an_exception_other_than_a_decode_failure_goes_through() -> None:
    with pytest.raises(KeyError):
        decode_all(_Broken(), [None, b'{"a":1}'], 100)  # type: ignore[arg-type]
    assert decode_all(_Broken(), [None, b'{"a":1}'], 3) == [None, None]  # type: ignore[arg-type]
