"""What a class or category value means: one set of rules for the stream and reference files.

A label of class 1 may arrive as the JSON number ``1``, the boolean ``true``, the string
``"1"``; a reference file written by pandas may hold it as ``1.0`` (an integer column with
a missing value becomes a float column) or, for a boolean column, ``True``. The stream
decoder (:mod:`monitor.events.codec`), the feature accumulators
(:mod:`monitor.core.layout`) and the reference reader (:mod:`monitor.core.reference`)
all compare values through :func:`canonical`, so a value means the same thing in each.

Rules of :func:`canonical`:

- ``true``/``false`` (a boolean, or the text in any letter case) are ``"1"``/``"0"``;
- a whole number is its decimal integer (``1``, ``1.0``, ``"1"``, ``"1.0"``, ``"01"``,
  ``"1e0"`` are all ``"1"``); any other finite number is its shortest decimal (``0.5``,
  ``"0.50"`` are ``"0.5"``);
- any other text is itself, unchanged (case and spaces kept);
- ``None``, NaN and the infinities are no value (``None``).

Class values (predictions, labels, ``probabilities`` keys) are matched against the
model's configured classes first as written, then by :func:`canonical` on both sides
(:class:`ClassMatcher`): with ``classes = ["yes", "no"]`` the text ``"yes"`` matches and
``true`` does not; with ``positive_class = 1`` the values ``1``, ``1.0``, ``true``,
``"True"`` and ``"1"`` are all the positive class.

Reference file cells (CSV has no types) that are empty or read ``null``, ``none``,
``nan``, ``na`` or ``n/a`` (any case) are missing: see :func:`cell_is_missing`.

>>> [canonical(v) for v in (1, 1.0, True, "1", "1.0", "True", "0.50", " a ", None)]
['1', '1', '1', '1', '1', '1', '0.5', ' a ', None]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from monitor.config import ModelConfig

__all__ = [
    "MISSING_TEXT",
    "ClassMatcher",
    "canonical",
    "cell_is_missing",
    "is_whole",
]

#: Text of a reference-file cell that means "no value" (compared stripped, lower case).
MISSING_TEXT: Final = frozenset({"", "null", "none", "nan", "na", "n/a"})

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_BOOL_TEXT: Final = {"true": "1", "false": "0"}


def is_whole(value: float) -> bool:
    """A finite float with no fractional part."""
    return math.isfinite(value) and value.is_integer()


def _number(value: float) -> str | None:
    if not math.isfinite(value):
        return None
    if value.is_integer():
        return str(int(value))
    return repr(value)


def canonical(value: Any) -> str | None:
    """The canonical text of a class or category value (see the module rules); None when
    it is no value (None, NaN, an infinity, or a container)."""
    cls = value.__class__
    if cls is str:
        text = value.strip()
        word = _BOOL_TEXT.get(text.lower())
        if word is not None:
            return word
        if _NUMBER.fullmatch(text):
            if _INTEGER.fullmatch(text):
                return str(int(text))
            number = float(text)
            return _number(number) if math.isfinite(number) else value
        return str(value)
    if cls is bool:
        return "1" if value else "0"
    if cls is int:
        return str(value)
    if cls is float:
        return _number(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):  # numpy integers and other int subclasses
        return str(int(value))
    if isinstance(value, float):
        return _number(float(value))
    if isinstance(value, str):
        return canonical(str(value))
    return None


def cell_is_missing(text: str) -> bool:
    """A reference-file text cell that stands for no value (see :data:`MISSING_TEXT`)."""
    return text.strip().lower() in MISSING_TEXT


class ClassMatcher:
    """Codes of class values for one model: ``code(value)`` is the class index (binary: 1
    for the positive class, 0 for the other), or None for a value that names no class.

    ``names`` are the configured class names (``ModelConfig.class_names``); a value matches
    a name written the same way, else one with the same :func:`canonical` text. With
    ``closed=False`` (a binary model without ``classes``) every value that is not the
    positive class ``names[1]`` is the negative class.

    >>> m = ClassMatcher(("no", "yes"), closed=True)
    >>> m.code("yes"), m.code("maybe"), ClassMatcher(("0", "1"), closed=False).code("1.0")
    (1, None, 1)
    """

    __slots__ = ("_closed", "_exact", "_loose", "names")

    def __init__(self, names: Iterable[str], closed: bool = True) -> None:
        self.names = tuple(names)
        self._closed = closed
        self._exact = {name: i for i, name in enumerate(self.names)}
        loose: dict[str, int | None] = {}
        for i, name in enumerate(self.names):
            key = canonical(name)
            if key is not None:
                loose[key] = None if key in loose else i  # two names alike: neither by it
        self._loose = {k: i for k, i in loose.items() if i is not None}

    @property
    def key(self) -> tuple[tuple[str, ...], bool]:
        """What its codes depend on: matchers of equal keys code every value alike."""
        return self.names, self._closed

    @classmethod
    def for_model(cls, model: ModelConfig) -> ClassMatcher:
        """The matcher of a binary or multiclass model's configured classes."""
        from monitor.core.tasks import task_of  # numpy: loaded with the first model

        closed = model.classes is not None or not task_of(model.task).open_negative
        return cls(model.class_names, closed=closed)

    def index(self, value: Any) -> int | None:
        """Index of the configured class ``value`` names (None when it names none)."""
        exact = self._exact.get(value) if value.__class__ is str else None
        if exact is not None:
            return exact
        key = canonical(value)
        if key is None:
            return None
        found = self._exact.get(key)
        return found if found is not None else self._loose.get(key)

    def code(self, value: Any) -> int | None:
        """The accumulator code of a class value (see the class docstring)."""
        i = self.index(value)
        if self._closed:
            return i
        if canonical(value) is None:
            return None
        return 1 if i == 1 else 0
