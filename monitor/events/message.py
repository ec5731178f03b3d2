"""What a source hands the core: raw messages with their coordinates, and rejects."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from monitor import native


@dataclass(slots=True)
class Message:
    """One Kafka record as read, before decoding; the same from ``run`` and ``replay``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int = -1


class Reject:
    """A message that is not a valid event, with the reason; it goes to the dead-letter topic.

    The message is given whole, or (:meth:`of_batch`) as a batch's ``make`` and its index
    there, the :class:`Message` then built when first read: the batch path decides its
    rejects from the batch's columns, and ``monitor replay``, which reads no reject's
    message, builds none."""

    __slots__ = ("_at", "_make", "_message", "detail", "model", "reason")

    def __init__(self, message: Message, reason: str, detail: str = "", model: str = "") -> None:
        self._message: Message | None = message
        self._make: Callable[[int], Message] | None = None
        self._at = -1
        self.reason = reason
        self.detail = detail
        self.model = model

    @classmethod
    def of_batch(cls, make: Callable[[int], Message], at: int, reason: str, detail: str = ""
                 ) -> Reject:  # fmt: skip
        """The reject of the message ``make(at)`` builds, built when first read."""
        reject = cls.__new__(cls)
        reject._message = None
        reject._make = make
        reject._at = at
        reject.reason = reason
        reject.detail = detail
        reject.model = ""
        return reject

    @property
    def message(self) -> Message:
        """The rejected message (built at the first read when given by its batch)."""
        if self._message is None:
            assert self._make is not None
            self._message = self._make(self._at)
            self._make = None  # (the batch is not kept alive for it any longer)
        return self._message

    def __eq__(self, other: object) -> bool:
        """Equal message, reason, detail and model (as the dataclass it was compared)."""
        if not isinstance(other, Reject):
            return NotImplemented
        return (self.message, self.reason, self.detail, self.model) == (
            other.message, other.reason, other.detail, other.model
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """The reject shown as the dataclass it was (its message built)."""
        return (f"Reject(message={self.message!r}, reason={self.reason!r}, "
                f"detail={self.detail!r}, model={self.model!r})")  # fmt: skip

    def dead_letter_headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus ones naming the reason and the source coordinates."""
        m = self.message
        return [
            *m.headers,
            ("monitor.reason", self.reason.encode()),
            ("monitor.detail", self.detail[:500].encode("utf-8", "replace")),
            ("monitor.source.topic", m.topic.encode()),
            ("monitor.source.partition", str(m.partition).encode()),
            ("monitor.source.offset", str(m.offset).encode()),
        ]


#: The attributes of a :class:`Message` a :class:`MessageBatch` keeps as columns, in the
#: order of its constructor's arguments.
_COLUMNS = ("topic", "partition", "offset", "value", "timestamp_ms")


class MessageBatch(Sequence[Message]):
    """One poll's messages as columns (topic, partition, offset, value, record timestamp in
    ms or -1 when unknown), each whole
    :class:`Message` built only when it is looked at (a reject).

    A source builds it straight from its client's records, so the hot path makes no Python
    object per message; ``make(i)`` builds message ``i`` with its key, headers and
    timestamp. Any list of messages becomes one with :meth:`of`. ``last``, when the source
    knows it, is :meth:`last_rows` (else it is found from the columns when asked).
    """

    __slots__ = ("_last", "_make", "offsets", "partitions", "timestamps", "topics", "values")

    def __init__(
        self,
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        values: list[bytes | None],
        make: Callable[[int], Message],
        timestamps: list[int] | None = None,
        *,
        last: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.offsets = offsets
        self.values = values
        self._make = make
        #: Kafka record timestamps (ms since the epoch), -1 where a record has none.
        self.timestamps = [-1] * len(topics) if timestamps is None else timestamps
        self._last = last

    @classmethod
    def of(cls, messages: Sequence[Message]) -> MessageBatch:
        """``messages`` as a batch (itself when it is one already)."""
        if isinstance(messages, MessageBatch):
            return messages
        kernels = native.kernels()
        if kernels is not None and type(messages) is list:
            # every column in one pass of the compiled kernel (the slots read directly)
            read = kernels.attr_lists(messages, _COLUMNS)
            if read is not None:
                topics, partitions, offsets, values, stamps = read
                return cls(topics, partitions, offsets, values, messages.__getitem__, stamps)
        return cls(
            [m.topic for m in messages],
            [m.partition for m in messages],
            [m.offset for m in messages],
            [m.value for m in messages],
            messages.__getitem__,
            [m.timestamp_ms for m in messages],
        )

    def __len__(self) -> int:
        return len(self.topics)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._make(index)

    def __iter__(self) -> Iterator[Message]:
        return (self._make(i) for i in range(len(self)))

    def sources(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs the batch holds messages of."""
        return set(self.last_rows())

    def last_rows(self) -> dict[tuple[str, int], int]:
        """The row of each (topic, partition)'s last message, the pairs in order of first
        appearance: what a poll moves per partition (its next offset, its last record's
        time). Given by the source that built the batch, else found once and kept."""
        if self._last is None:
            self._last = _last_rows(self.topics, self.partitions)
        return self._last


def _last_rows(topics: list[str], partitions: list[int]) -> dict[tuple[str, int], int]:
    """:meth:`MessageBatch.last_rows` from the columns. Read from the end until every pair
    its topics and partitions can form is found, and from the start until each found pair
    is: a poll's few pairs cost a few steps, not one per message."""
    most = len(set(topics)) * len(set(partitions))
    last: dict[tuple[str, int], int] = {}
    for i in range(len(topics) - 1, -1, -1):
        pair = (topics[i], partitions[i])
        if pair not in last:
            last[pair] = i
            if len(last) == most:
                break
    ordered: dict[tuple[str, int], int] = {}
    for pair in zip(topics, partitions, strict=True):
        if pair not in ordered:
            ordered[pair] = last[pair]
            if len(ordered) == len(last):
                break
    return ordered
