"""MessageBatch: a poll as columns, with whole messages built only when looked at."""

from __future__ import annotations

import pytest

from monitor.events.message import Message, MessageBatch


def messages() -> list[Message]:
    return [
        Message("predictions", p, o, b"k", b'{"x": %d}' % o, [("h", b"v")], 1000 + o)
        for p, o in [(0, 5), (1, 7), (0, 6)]
    ]


def test_of_a_list_keeps_columns_and_messages() -> None:
    listed = messages()
    batch = MessageBatch.of(listed)
    assert batch.topics == ["predictions"] * 3
    assert batch.partitions == [0, 1, 0]
    assert batch.offsets == [5, 7, 6]
    assert batch.values == [m.value for m in listed]
    assert list(batch) == listed
    assert batch[-1] == listed[-1] and batch[1:] == listed[1:]
    assert batch.sources() == {("predictions", 0), ("predictions", 1)}
    assert MessageBatch.of(batch) is batch
    with pytest.raises(IndexError):
        batch[3]


def test_messages_are_built_lazily_and_only_when_asked() -> None:
    built: list[int] = []
    listed = messages()

    def make(i: int) -> Message:
        built.append(i)
        return listed[i]

    batch = MessageBatch(
        [m.topic for m in listed], [m.partition for m in listed], [m.offset for m in listed],
        [m.value for m in listed], make,
    )
    assert len(batch) == 3 and built == []
    assert batch[2].headers == [("h", b"v")] and built == [2]
