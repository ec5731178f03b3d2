"""What a source hands the core: raw messages with their coordinates, and rejects."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(slots=True)
class Reject:
    """A message that is not a valid event, with the reason; it goes to the dead-letter topic."""

    message: Message
    reason: str
    detail: str = ""
    model: str = ""

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
