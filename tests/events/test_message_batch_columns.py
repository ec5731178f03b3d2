"""MessageBatch.of's columns of a list of messages: read by the compiled ``attr_lists`` in
one pass or by the list comprehensions beside it, the same objects in the same order."""

from __future__ import annotations

from typing import Any

import pytest

from monitor import native
from monitor.events.message import Message, MessageBatch


class _Tagged(Message):
    """A message of a subclass: read by attribute name, not through the first one's slots."""

    __slots__ = ()


def _listed() -> list[Message]:
    out: list[Message] = [
        Message("predictions", p, o, b"k", b'{"x": %d}' % o, [], 1000 + o) for p, o in
        [(0, 5), (1, 7), (0, 6)]
    ]  # fmt: skip
    out.append(Message("labels", 2, 1 << 70, None, None))  # no value, no timestamp
    out.append(_Tagged("labels", 3, 9, None, b"{}", [("h", b"v")], 12))
    return out


def _columns(batch: MessageBatch) -> tuple[list[Any], ...]:
    return batch.topics, batch.partitions, batch.offsets, batch.values, batch.timestamps


@pytest.mark.parametrize("compiled", [True, False])
def test_columns_are_each_messages_fields(compiled: bool) -> None:
    if compiled and not native.available():
        pytest.skip("the compiled module is not built")
    listed = _listed()
    before = native.use(compiled)
    try:
        batch = MessageBatch.of(listed)
    finally:
        native.use(before)
    want = tuple(
        [getattr(m, name) for m in listed]
        for name in ("topic", "partition", "offset", "value", "timestamp_ms")
    )
    assert _columns(batch) == want
    for got, expected in zip(_columns(batch), want, strict=True):  # the same objects
        assert all(g is e for g, e in zip(got, expected, strict=True))
    assert list(batch) == listed


def test_an_empty_list_and_a_tuple_give_empty_or_equal_columns() -> None:
    assert _columns(MessageBatch.of([])) == ([], [], [], [], [])
    listed = _listed()
    assert _columns(MessageBatch.of(tuple(listed))) == _columns(MessageBatch.of(listed))
